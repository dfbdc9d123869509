import { commonV1, type scannerV1 } from '@cordon/proto';

const { Severity } = commonV1;

/** URI of the schema this output follows, for SARIF consumers. */
export const SARIF_SCHEMA_URI = 'https://json.schemastore.org/sarif-2.1.0.json';

/** A SARIF 2.1.0 log, kept as plain JSON. */
export type SarifLog = Record<string, unknown> & { version: '2.1.0'; runs: SarifRun[] };

interface SarifRun {
  tool: { driver: Record<string, unknown> & { rules: Record<string, unknown>[] } };
  results: Record<string, unknown>[];
  columnKind: 'utf16CodeUnits';
}

function level(severity: commonV1.Severity): 'error' | 'warning' | 'note' {
  if (severity >= Severity.SEVERITY_HIGH) return 'error';
  if (severity === Severity.SEVERITY_MEDIUM) return 'warning';
  return 'note';
}

/** GitHub code scanning ranks results by this property (0.0 to 10.0). */
const SECURITY_SEVERITY: Readonly<Record<number, string>> = {
  [Severity.SEVERITY_CRITICAL]: '9.5',
  [Severity.SEVERITY_HIGH]: '8.0',
  [Severity.SEVERITY_MEDIUM]: '5.5',
  [Severity.SEVERITY_LOW]: '3.0',
  [Severity.SEVERITY_INFO]: '0.0',
};

function severityName(severity: commonV1.Severity): string {
  return commonV1.severityToJSON(severity).replace(/^SEVERITY_/, '');
}

function confidenceName(confidence: commonV1.Confidence): string {
  return commonV1
    .confidenceToJSON(confidence)
    .replace(/^CONFIDENCE_/, '')
    .toLowerCase();
}

function sarifRule(rule: scannerV1.Rule): Record<string, unknown> {
  return {
    id: rule.id,
    name: rule.title,
    shortDescription: { text: rule.title },
    fullDescription: { text: rule.description || rule.title },
    help: { text: rule.fixHint || rule.title },
    defaultConfiguration: { level: level(rule.severity) },
    properties: {
      tags: ['security', ...(rule.cwe === '' ? [] : [rule.cwe])],
      precision:
        confidenceName(rule.confidence) === 'unspecified'
          ? 'medium'
          : confidenceName(rule.confidence),
      'security-severity': SECURITY_SEVERITY[rule.severity] ?? '0.0',
    },
  };
}

/** Builds a rule for a finding whose rule the caller did not list, so every result has one. */
function ruleOfFinding(finding: commonV1.Finding): scannerV1.Rule {
  return {
    id: finding.ruleId,
    title: finding.title,
    cwe: finding.cwe,
    severity: finding.severity,
    confidence: finding.confidence,
    languages: [],
    description: finding.message,
    fixHint: finding.fixHint,
  };
}

function sarifResult(finding: commonV1.Finding, ruleIndex: number): Record<string, unknown> {
  const region =
    finding.startLine === 0
      ? undefined
      : {
          startLine: finding.startLine,
          startColumn: Math.max(1, finding.startColumn),
          endLine: Math.max(finding.endLine, finding.startLine),
          // SARIF's endColumn points just past the region; the proto's is inclusive.
          endColumn: Math.max(1, finding.endColumn) + 1,
          ...(finding.snippet === '' ? {} : { snippet: { text: finding.snippet } }),
        };
  return {
    ruleId: finding.ruleId,
    ruleIndex,
    level: level(finding.severity),
    message: {
      text: finding.fixHint === '' ? finding.message : `${finding.message} Fix: ${finding.fixHint}`,
    },
    locations: [
      {
        physicalLocation: {
          artifactLocation: { uri: encodeURI(finding.file) },
          ...(region === undefined ? {} : { region }),
        },
      },
    ],
    properties: {
      severity: severityName(finding.severity),
      confidence: confidenceName(finding.confidence),
      ...(finding.cwe === '' ? {} : { cwe: finding.cwe }),
    },
  };
}

/**
 * Writes a scan report as a SARIF 2.1.0 log with one run. `rules` is what
 * ListRules returned; rules that no finding uses are listed too, so a
 * viewer can show what was checked.
 */
export function toSarif(report: scannerV1.ScanReport, rules: readonly scannerV1.Rule[]): SarifLog {
  const all = [...rules];
  const indexById = new Map(all.map((rule, index) => [rule.id, index]));
  for (const finding of report.findings) {
    if (!indexById.has(finding.ruleId)) {
      indexById.set(finding.ruleId, all.length);
      all.push(ruleOfFinding(finding));
    }
  }
  const [name, version] = report.engineVersion.split(' ');
  return {
    $schema: SARIF_SCHEMA_URI,
    version: '2.1.0',
    runs: [
      {
        tool: {
          driver: {
            name: name ?? 'cordon-scanner',
            ...(version === undefined ? {} : { version }),
            fullName: report.engineVersion,
            rules: all.map(sarifRule),
            properties: { rulesVersion: report.rulesVersion },
          },
        },
        results: report.findings.map((finding) =>
          sarifResult(finding, indexById.get(finding.ruleId) ?? 0),
        ),
        columnKind: 'utf16CodeUnits',
      },
    ],
  };
}

import { commonV1, type scannerV1 } from '@cordon/proto';

const LEVELS: Readonly<Record<number, 'error' | 'warning' | 'note'>> = {
  [commonV1.Severity.SEVERITY_CRITICAL]: 'error',
  [commonV1.Severity.SEVERITY_HIGH]: 'error',
  [commonV1.Severity.SEVERITY_MEDIUM]: 'warning',
  [commonV1.Severity.SEVERITY_LOW]: 'note',
  [commonV1.Severity.SEVERITY_INFO]: 'note',
};

/**
 * Builds a SARIF 2.1.0 log with one run for the scanner's findings, as
 * GitHub code scanning and most SARIF viewers read it.
 */
export function toSarif(reports: readonly scannerV1.ScanReport[]): object {
  const findings = reports.flatMap((report) => report.findings);
  const rules = new Map<string, commonV1.Finding>();
  for (const finding of findings) {
    if (!rules.has(finding.ruleId)) rules.set(finding.ruleId, finding);
  }
  const ruleIds = [...rules.keys()].sort();
  const engineVersion = reports[0]?.engineVersion ?? '';

  return {
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [
      {
        tool: {
          driver: {
            name: 'cordon-scanner',
            ...(engineVersion === '' ? {} : { version: engineVersion }),
            rules: ruleIds.map((id) => {
              const finding = rules.get(id);
              return {
                id,
                shortDescription: { text: finding?.title ?? id },
                ...(finding?.fixHint === undefined || finding.fixHint === ''
                  ? {}
                  : { help: { text: finding.fixHint } }),
                properties: {
                  ...(finding?.cwe === undefined || finding.cwe === ''
                    ? {}
                    : { tags: [finding.cwe] }),
                  severity: commonV1.severityToJSON(
                    finding?.severity ?? commonV1.Severity.SEVERITY_UNSPECIFIED,
                  ),
                },
              };
            }),
          },
        },
        results: findings.map((finding) => ({
          ruleId: finding.ruleId,
          ruleIndex: ruleIds.indexOf(finding.ruleId),
          level: LEVELS[finding.severity] ?? 'note',
          message: { text: finding.message === '' ? finding.title : finding.message },
          locations: [
            {
              physicalLocation: {
                artifactLocation: { uri: finding.file },
                region: {
                  startLine: finding.startLine,
                  startColumn: finding.startColumn,
                  endLine: finding.endLine,
                  // SARIF's endColumn is exclusive; the scanner's is inclusive.
                  endColumn: finding.endColumn + 1,
                  ...(finding.snippet === '' ? {} : { snippet: { text: finding.snippet } }),
                },
              },
            },
          ],
        })),
      },
    ],
  };
}

import { commonV1, scannerV1 } from '@cordon/proto';
import { PARSE_ERROR_RULE_ID } from './findings.js';
import type { Rule } from './rule-types.js';
import { ruleLanguages } from './rule-types.js';

const { Severity, Confidence } = commonV1;

/** Id of the INFO finding that reports how many findings a report left out. */
export const TRUNCATED_RULE_ID = 'scan.findings-truncated';

/** Rules the engine itself reports, besides those of the rule files. */
export const BUILT_IN_RULES: readonly scannerV1.Rule[] = [
  scannerV1.Rule.fromPartial({
    id: PARSE_ERROR_RULE_ID,
    title: 'Code that does not parse',
    severity: Severity.SEVERITY_INFO,
    confidence: Confidence.CONFIDENCE_HIGH,
    languages: ['python', 'javascript', 'typescript', 'java', 'csharp'],
    description:
      'The parser recovered from a syntax error here; the rest of the file was still scanned.',
    fixHint:
      'Fix the syntax error; rules did not see this part of the code as the language defines it.',
  }),
  scannerV1.Rule.fromPartial({
    id: TRUNCATED_RULE_ID,
    title: 'Findings left out of the report',
    severity: Severity.SEVERITY_INFO,
    confidence: Confidence.CONFIDENCE_HIGH,
    languages: ['python', 'javascript', 'typescript', 'java', 'csharp'],
    description:
      'The scan found more than CORDON_SCANNER_MAX_FINDINGS findings; the least severe were left out, and the counts still include them.',
    fixHint: 'Scan fewer files at a time, or raise CORDON_SCANNER_MAX_FINDINGS.',
  }),
];

/** Converts a rule file's rule to its proto form. */
export function toProtoRule(rule: Rule): scannerV1.Rule {
  return scannerV1.Rule.fromPartial({
    id: rule.id,
    title: rule.title,
    cwe: rule.cwe,
    severity: rule.severity,
    confidence: rule.confidence,
    languages: ruleLanguages(rule),
    description: rule.message,
    fixHint: rule.fixHint,
  });
}

/** Counts findings per severity. */
export function countBySeverity(findings: readonly commonV1.Finding[]): commonV1.SeverityCounts {
  const counts = commonV1.SeverityCounts.fromPartial({});
  for (const finding of findings) {
    switch (finding.severity) {
      case Severity.SEVERITY_INFO:
        counts.info += 1;
        break;
      case Severity.SEVERITY_LOW:
        counts.low += 1;
        break;
      case Severity.SEVERITY_MEDIUM:
        counts.medium += 1;
        break;
      case Severity.SEVERITY_HIGH:
        counts.high += 1;
        break;
      case Severity.SEVERITY_CRITICAL:
        counts.critical += 1;
        break;
      default:
        break;
    }
  }
  return counts;
}

/**
 * Orders findings most severe first, then by file and position, and keeps
 * at most `maxFindings` of them. When some are left out, the last kept
 * slot gives how many, so a reader never mistakes a cut report for a
 * complete one.
 */
export function limitFindings(
  findings: readonly commonV1.Finding[],
  maxFindings: number,
): commonV1.Finding[] {
  const ordered = [...findings].sort(
    (a, b) =>
      b.severity - a.severity ||
      a.file.localeCompare(b.file) ||
      a.startLine - b.startLine ||
      a.startColumn - b.startColumn,
  );
  if (ordered.length <= maxFindings) return ordered;
  const kept = ordered.slice(0, Math.max(0, maxFindings - 1));
  const omitted = ordered.length - kept.length;
  kept.push(
    commonV1.Finding.fromPartial({
      ruleId: TRUNCATED_RULE_ID,
      title: 'Findings left out of the report',
      severity: Severity.SEVERITY_INFO,
      confidence: Confidence.CONFIDENCE_HIGH,
      file: ordered[kept.length]?.file ?? '',
      message: `${omitted} less severe findings were left out of this report (CORDON_SCANNER_MAX_FINDINGS is ${maxFindings}); the severity counts include them.`,
      fixHint: 'Scan fewer files at a time, or raise CORDON_SCANNER_MAX_FINDINGS.',
    }),
  );
  return kept;
}

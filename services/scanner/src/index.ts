export {
  AUDITING_OFF,
  GrpcAuditSink,
  type AuditSink,
  type ScanAuditEvent,
  type ScannerAction,
} from './audit-sink.js';
export { PARSE_ERROR_RULE_ID } from './findings.js';
export {
  ACCEPTED_LANGUAGE_NAMES,
  LANGUAGE_IDS,
  languageOfFile,
  languageOfName,
  type LanguageId,
} from './languages/language-ids.js';
export { DEFAULT_RULES_DIR, loadRules, RuleFileError, type LoadedRules } from './rule-loader.js';
export type { Rule, RulePattern, RuleSamples } from './rule-types.js';
export { ScanDeadlineError, ScanEngine, type SourceFile } from './scan-engine.js';
export { PoolDeadlineError, ScanPool } from './scan-pool.js';
export { parseScanRequest, type ParsedScan } from './scan-request.js';
export { BUILT_IN_RULES, TRUNCATED_RULE_ID, toProtoRule } from './scan-report.js';
export {
  compileScannerOptions,
  scannerConfigSpec,
  type ScanLimits,
  type ScannerOptions,
} from './scanner-options.js';
export { createScannerService, type ScannerServiceDependencies } from './scanner-service.js';

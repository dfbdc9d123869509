import { status } from '@grpc/grpc-js';
import { auditV1, commonV1, scannerV1 } from '@cordon/proto';
import {
  AUTH_DENIED_ACTION,
  codeSha256,
  CordonError,
  defineService,
  denialAttributes,
  type ServiceRegistration,
} from '@cordon/service-kit';
import type { AuditSink } from './audit-sink.js';
import { ACCEPTED_LANGUAGE_NAMES, languageOfName } from './languages/language-ids.js';
import { BUILT_IN_RULES, countBySeverity, limitFindings, toProtoRule } from './scan-report.js';
import type { ScanEngine } from './scan-engine.js';
import { PoolDeadlineError, type ScanPool } from './scan-pool.js';
import { parseScanRequest, type ParsedScan } from './scan-request.js';
import type { ScanLimits } from './scanner-options.js';

/** ListRules carries one short language name; anything larger is not a ListRules request. */
const MAX_LIST_RULES_REQUEST_BYTES = 1024;
/** Maximum length of the rule id list in an audit attribute; the audit service rejects strings above 8 KiB. */
const MAX_RULE_IDS_CHARS = 4_000;

export interface ScannerServiceDependencies {
  /** Holds the rules and versions; the pool's workers each load the same rules. */
  readonly engine: ScanEngine;
  readonly pool: ScanPool;
  readonly audit: AuditSink;
  readonly limits: ScanLimits;
}

function deadlineError(path: string, limits: ScanLimits): CordonError {
  return new CordonError(
    status.DEADLINE_EXCEEDED,
    `the scan did not finish within ${limits.scanTimeoutMs} ms (CORDON_SCANNER_SCAN_TIMEOUT_MS); it stopped in ${path}. Send fewer or smaller files`,
  );
}

/** Scans the request's files on the pool's workers within the scan timeout. */
async function scanAll(
  pool: ScanPool,
  scan: ParsedScan,
  limits: ScanLimits,
  signal: AbortSignal,
): Promise<commonV1.Finding[]> {
  try {
    const findings = await pool.scan(scan.sources, limits.scanTimeoutMs);
    signal.throwIfAborted();
    return findings;
  } catch (error) {
    if (error instanceof PoolDeadlineError) throw deadlineError(error.path, limits);
    throw error;
  }
}

function auditAttributes(
  scan: ParsedScan,
  report: scannerV1.ScanReport,
  findings: readonly commonV1.Finding[],
): Record<string, string | number | boolean> {
  const counts = report.counts ?? commonV1.SeverityCounts.fromPartial({});
  const ruleIds = [...new Set(findings.map((finding) => finding.ruleId))].sort().join(',');
  return {
    'scan.language': scan.language ?? '',
    'scan.files': scan.files.length,
    'scan.files_scanned': report.filesScanned,
    'scan.findings.info': counts.info,
    'scan.findings.low': counts.low,
    'scan.findings.medium': counts.medium,
    'scan.findings.high': counts.high,
    'scan.findings.critical': counts.critical,
    'scan.rule_ids': ruleIds.slice(0, MAX_RULE_IDS_CHARS),
    'scan.duration_ms': report.durationMs,
    'scan.rules_version': report.rulesVersion,
    'scan.engine_version': report.engineVersion,
  };
}

/** Builds the ScannerService handlers: validate, scan file by file, report, audit. */
export function createScannerService(
  dependencies: ScannerServiceDependencies,
): ServiceRegistration {
  const { engine, pool, audit, limits } = dependencies;
  const rules = [...engine.rules.map(toProtoRule), ...BUILT_IN_RULES];

  return defineService(
    scannerV1.ScannerServiceService,
    {
      scan: async (request, context) => {
        const startedAt = performance.now();
        const scan = parseScanRequest(request, limits);

        const findings = await scanAll(pool, scan, limits, context.signal);

        const report = scannerV1.ScanReport.fromPartial({
          findings: limitFindings(findings, limits.maxFindings),
          counts: countBySeverity(findings),
          engineVersion: engine.engineVersion,
          rulesVersion: engine.rulesVersion,
          durationMs: Math.round(performance.now() - startedAt),
          filesScanned: scan.sources.length,
        });
        audit.record({
          agentId: context.caller.agentId,
          action: 'scan.completed',
          outcome: auditV1.AuditOutcome.AUDIT_OUTCOME_SUCCESS,
          runId: scan.runId || context.caller.runId,
          codeSha256: codeSha256(scan.files),
          attributes: auditAttributes(scan, report, findings),
        });
        context.logger.info(
          {
            files: scan.files.length,
            files_scanned: report.filesScanned,
            findings: findings.length,
            counts: report.counts,
            run_id: scan.runId || undefined,
          },
          'scan finished',
        );
        return { report };
      },

      listRules: (request) => {
        const language = request.language === '' ? undefined : languageOfName(request.language);
        if (request.language !== '' && language === undefined) {
          return Promise.reject(
            CordonError.invalidArgument(
              'language',
              `"${request.language.slice(0, 64)}" is not supported; use one of ${ACCEPTED_LANGUAGE_NAMES.join(', ')}, or leave it empty for every rule`,
            ),
          );
        }
        const selected =
          language === undefined
            ? rules
            : rules.filter((rule) => rule.languages.includes(language));
        return Promise.resolve({ rules: selected, rulesVersion: engine.rulesVersion });
      },
    },
    {
      // The executor scans as role service, for the agent its acting-for token names.
      roles: {
        scan: ['agent', 'service', 'admin'],
        listRules: ['agent', 'service', 'auditor', 'admin'],
      },
      maxRequestBytes: { listRules: MAX_LIST_RULES_REQUEST_BYTES },
      onAuthDenied: (denial) => {
        audit.record({
          agentId: denial.claimedSubject,
          action: AUTH_DENIED_ACTION,
          outcome: auditV1.AuditOutcome.AUDIT_OUTCOME_DENIED,
          runId: '',
          codeSha256: '',
          attributes: denialAttributes(denial),
        });
      },
    },
  );
}

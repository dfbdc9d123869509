import { status, type Client, type ServiceError } from '@grpc/grpc-js';
import { commonV1, executorV1, scannerV1 } from '@cordon/proto';
import {
  callUnary,
  CordonError,
  createServiceClient,
  meshCredentials,
  type Logger,
  type VarSpec,
} from '@cordon/service-kit';
import type { RunPlan } from './run-request.js';

const { Severity } = commonV1;

/** The executor's handling of the scanner's findings before a run. */
export type ScanPolicy =
  | { readonly mode: 'off' }
  | { readonly mode: 'report' }
  | { readonly mode: 'block'; readonly threshold: commonV1.Severity };

const BLOCK_THRESHOLDS: Record<string, commonV1.Severity> = {
  LOW: Severity.SEVERITY_LOW,
  MEDIUM: Severity.SEVERITY_MEDIUM,
  HIGH: Severity.SEVERITY_HIGH,
  CRITICAL: Severity.SEVERITY_CRITICAL,
};

function parsePolicy(text: string): ScanPolicy | undefined {
  if (text === 'off' || text === 'report') return { mode: text };
  const match = /^block:([A-Za-z]+)$/.exec(text);
  const threshold = match === null ? undefined : BLOCK_THRESHOLDS[match[1]?.toUpperCase() ?? ''];
  return threshold === undefined ? undefined : { mode: 'block', threshold };
}

/** Names a policy the way CORDON_SCAN_POLICY spells it, e.g. "block:HIGH". */
export function describePolicy(policy: ScanPolicy): string {
  if (policy.mode !== 'block') return policy.mode;
  const name = Object.entries(BLOCK_THRESHOLDS).find(([, value]) => value === policy.threshold);
  return `block:${name?.[0] ?? 'UNKNOWN'}`;
}

export const scanPolicyVar: VarSpec<ScanPolicy> = {
  name: 'CORDON_SCAN_POLICY',
  description:
    'off; report: findings reach the client before the run starts; block:<severity>: a run with a finding at or above it never starts.',
  defaultValue: { mode: 'report' },
  allowed: 'off, report, or block:LOW, block:MEDIUM, block:HIGH or block:CRITICAL',
  parse: parsePolicy,
};

/** Findings at or above a severity, counted from the report's counts, which include findings cut from its list. */
function countAtOrAbove(counts: commonV1.SeverityCounts, threshold: commonV1.Severity): number {
  const bySeverity: [commonV1.Severity, number][] = [
    [Severity.SEVERITY_INFO, counts.info],
    [Severity.SEVERITY_LOW, counts.low],
    [Severity.SEVERITY_MEDIUM, counts.medium],
    [Severity.SEVERITY_HIGH, counts.high],
    [Severity.SEVERITY_CRITICAL, counts.critical],
  ];
  return bySeverity
    .filter(([severity]) => severity >= threshold)
    .reduce((sum, [, count]) => sum + count, 0);
}

type ScannerClient = Client & Pick<scannerV1.ScannerServiceClient, 'scan'>;

/** A run the policy refused, with what the scanner found. */
export interface ScanBlock {
  readonly error: CordonError;
  readonly counts: commonV1.SeverityCounts;
}

export interface ScanOutcome {
  /** The event for the client, under the report policy. */
  readonly reported?: executorV1.ScanReported;
  /** Set when the block policy refuses the run. */
  readonly blocked?: ScanBlock;
}

/**
 * Enforces CORDON_SCAN_POLICY before a run: scans its files as the run's
 * agent and either reports the findings, or refuses the run when one is at
 * or above the block threshold. Under a block policy a scan that cannot be
 * made refuses the run too (fail closed); under report the run goes on and
 * the event says the scan was skipped.
 */
export class ScanGate {
  private readonly client: ScannerClient | undefined;

  constructor(
    readonly policy: ScanPolicy,
    address: string,
    private readonly deadlineMs: number,
    private readonly logger: Logger,
  ) {
    this.client =
      policy.mode === 'off'
        ? undefined
        : createServiceClient<ScannerClient>(scannerV1.ScannerServiceService, address);
  }

  async check(plan: RunPlan, runId: string, agentId: string): Promise<ScanOutcome> {
    if (this.client === undefined) return {};
    const client = this.client;
    let report: scannerV1.ScanReport;
    try {
      const actingFor = await meshCredentials().identity?.actingForMetadata(agentId, runId);
      const response = await callUnary(
        client.scan.bind(client),
        scannerV1.ScanRequest.fromPartial({
          language: plan.runtime.id,
          files: plan.files.map((file) => ({ path: file.path, content: file.content })),
          runId,
        }),
        {
          deadlineMs: this.deadlineMs,
          ...(actingFor === undefined ? {} : { metadata: actingFor }),
        },
      );
      report = response.report ?? scannerV1.ScanReport.fromPartial({});
    } catch (error) {
      return this.scanFailed(error as ServiceError, runId);
    }

    const { policy } = this;
    const counts = report.counts ?? commonV1.SeverityCounts.fromPartial({});
    if (policy.mode === 'block') {
      const blocking = countAtOrAbove(counts, policy.threshold);
      if (blocking > 0) {
        const error = new CordonError(
          status.FAILED_PRECONDITION,
          `the scan policy ${describePolicy(policy)} blocked this run: ${blocking} finding(s) at or above ${describePolicy(policy).slice('block:'.length)}; no sandbox was started`,
          { details: { findings: report.findings } },
        );
        return { blocked: { error, counts } };
      }
      return {};
    }
    return { reported: executorV1.ScanReported.fromPartial({ report }) };
  }

  close(): void {
    this.client?.close();
  }

  private scanFailed(error: ServiceError, runId: string): ScanOutcome {
    const unreachable =
      error.code === status.UNAVAILABLE || error.code === status.DEADLINE_EXCEEDED;
    const reason = unreachable
      ? 'the scanner could not be reached'
      : `the scanner refused the files: ${error.details}`;
    this.logger.warn({ run_id: runId, code: error.code, reason }, 'scan before the run failed');
    if (this.policy.mode === 'block') {
      throw new CordonError(
        unreachable ? status.UNAVAILABLE : status.FAILED_PRECONDITION,
        `${reason}, and the scan policy ${describePolicy(this.policy)} runs nothing unscanned; no sandbox was started`,
        { cause: error },
      );
    }
    return {
      reported: executorV1.ScanReported.fromPartial({ skipped: true, skippedReason: reason }),
    };
  }
}

import { randomUUID } from 'node:crypto';
import { Metadata, status, type Client, type ServiceError } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';
import { auditV1, type commonV1, executorV1 } from '@cordon/proto';
import {
  AuditAppender,
  AUTH_DENIED_ACTION,
  callUnary,
  codeSha256,
  CordonError,
  createServiceClient,
  denialAttributes,
  meshCredentials,
  type AppendError,
  type AuthDenial,
  type Logger,
} from '@cordon/service-kit';
import type { AuditSpool } from './audit-spool.js';
import type { RunPlan } from './run-request.js';

const APPEND_DEADLINE_MS = 5000;
const REPLAY_INTERVAL_MS = 2000;
/**
 * Failed streams in a row before the appender fails the waiting records,
 * and its longest wait between them. While the audit service is down, a
 * run's end is spooled after 0.1 to 0.5 s instead of holding the run's
 * slot until APPEND_DEADLINE_MS.
 */
const REOPEN_ATTEMPTS = 2;
const MAX_REOPEN_DELAY_MS = 500;
/** Time close() gives the appender to deliver records still in flight. */
const CLOSE_FLUSH_MS = 3000;

type AuditClient = Client & Pick<auditV1.AuditServiceClient, 'append' | 'appendStream'>;
type AttributeMap = Record<string, auditV1.AttributeValue>;

/** Facts of a run's start that the audit log records besides the plan. */
export interface RunStart {
  readonly runId: string;
  readonly agentId: string;
  readonly image: { tag: string; digest: string };
  readonly isolation: string;
}

/** The first bytes of a run's output, kept for the audit log. */
export interface OutputExcerpt {
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  readonly stdoutTruncated: boolean;
  readonly stderrTruncated: boolean;
}

function text(value: string): auditV1.AttributeValue {
  return { value: { $case: 'stringValue', value } };
}

function integer(value: number): auditV1.AttributeValue {
  return { value: { $case: 'intValue', value } };
}

function currentIds(): { traceId: string; spanId: string } {
  const context = trace.getActiveSpan()?.spanContext();
  return { traceId: context?.traceId ?? '', spanId: context?.spanId ?? '' };
}

function event(fields: Partial<auditV1.AuditEvent>): auditV1.AuditEvent {
  return auditV1.AuditEvent.fromPartial({
    id: randomUUID(),
    service: 'executor',
    occurredTime: new Date(),
    ...currentIds(),
    ...fields,
  });
}

/**
 * Writes a run's start and end to the audit service. The start must be
 * acknowledged or the run does not start (fail closed). An end that cannot
 * be appended at once is kept in a durable spool and replayed in order; the
 * audit service ignores a replayed id it already stored.
 *
 * The start goes by unary Append, because that call carries the acting-for
 * token that proves whom the run is for, and it runs in the run's trace.
 * Every other record goes over one AppendStream, which has neither per record.
 */
export class AuditTrail {
  private readonly client: AuditClient;
  private readonly appender: AuditAppender;
  private replayTimer: NodeJS.Timeout | undefined;
  private replaying = false;

  constructor(
    address: string,
    private readonly spool: AuditSpool,
    private readonly logger: Logger,
  ) {
    // The client sends the executor's own service token, which Append and AppendStream require.
    this.client = createServiceClient<AuditClient>(auditV1.AuditServiceService, address);
    this.appender = new AuditAppender(this.client, {
      logger,
      ackTimeoutMs: APPEND_DEADLINE_MS,
      maxReopenAttempts: REOPEN_ATTEMPTS,
      maxReopenDelayMs: MAX_REOPEN_DELAY_MS,
    });
  }

  startReplay(): void {
    this.replayTimer = setInterval(() => void this.replay(), REPLAY_INTERVAL_MS);
    void this.replay();
  }

  /** Stops replaying, and closes the connection once records in flight are delivered or spooled. */
  close(): void {
    clearInterval(this.replayTimer);
    void this.appender.close(CLOSE_FLUSH_MS).finally(() => {
      this.client.close();
    });
  }

  /** Appends execution.started; throws UNAVAILABLE when the audit service does not acknowledge it. */
  async recordStart(plan: RunPlan, start: RunStart): Promise<void> {
    const attributes: AttributeMap = {
      runtime: text(plan.runtime.id),
      'image.tag': text(start.image.tag),
      'image.digest': text(start.image.digest),
      isolation: text(start.isolation),
      'files.count': integer(plan.files.length),
      client_request_id: text(plan.clientRequestId),
    };
    for (const [name, value] of Object.entries(plan.limits)) {
      attributes[`limits.${name}`] = integer(value);
    }
    const request = auditV1.AppendRequest.fromPartial({
      event: event({
        agentId: start.agentId,
        action: 'execution.started',
        outcome: auditV1.AuditOutcome.AUDIT_OUTCOME_SUCCESS,
        runId: start.runId,
        attributes,
        codeSha256: codeSha256(plan.files),
      }),
      files: plan.files.map((file) => ({ path: file.path, content: file.content })),
    });

    try {
      // The start record also proves whom the run is for, so the audit service can check its agent id.
      const actingFor = await meshCredentials().identity?.actingForMetadata(
        start.agentId,
        start.runId,
      );
      await callUnary(this.client.append.bind(this.client), request, {
        deadlineMs: APPEND_DEADLINE_MS,
        metadata: actingFor ?? new Metadata(),
      });
    } catch (error) {
      const code = (error as Partial<ServiceError>).code;
      if (code === status.UNAVAILABLE || code === status.DEADLINE_EXCEEDED) {
        throw new CordonError(
          status.UNAVAILABLE,
          'the audit service did not acknowledge the start of the run, so the run was not started; try again when it is back',
          { cause: error },
        );
      }
      // A rejected record is a fault of this executor, not of the caller's request.
      throw new Error('the audit service rejected execution.started', { cause: error });
    }
  }

  /** Appends execution.finished, or spools it durably when the audit service does not respond. */
  async recordFinish(
    runId: string,
    agentId: string,
    exited: executorV1.RunExited,
    excerpt: OutputExcerpt,
  ): Promise<void> {
    const attributes: AttributeMap = {
      status: text(executorV1.runStatusToJSON(exited.status)),
      phase: text(executorV1.runPhaseToJSON(exited.phase)),
      wall_time_ms: integer(exited.wallTimeMs),
      cpu_time_ms: integer(exited.cpuTimeMs),
      peak_memory_bytes: integer(exited.peakMemoryBytes),
      stdout_bytes: integer(exited.stdoutBytes),
      stderr_bytes: integer(exited.stderrBytes),
      output_truncated: { value: { $case: 'boolValue', value: exited.outputTruncated } },
      message: text(exited.message),
    };
    if (exited.exitCode !== undefined) attributes['exit_code'] = integer(exited.exitCode);
    if (exited.signal !== undefined) attributes['signal'] = integer(exited.signal);
    const ok = exited.status === executorV1.RunStatus.RUN_STATUS_OK;
    const request = auditV1.AppendRequest.fromPartial({
      event: event({
        agentId,
        action: 'execution.finished',
        outcome: ok
          ? auditV1.AuditOutcome.AUDIT_OUTCOME_SUCCESS
          : auditV1.AuditOutcome.AUDIT_OUTCOME_FAILURE,
        runId,
        attributes,
      }),
      stdoutExcerpt: excerpt.stdout,
      stderrExcerpt: excerpt.stderr,
      stdoutTruncated: excerpt.stdoutTruncated,
      stderrTruncated: excerpt.stderrTruncated,
    });

    await this.appendOrSpool(request);
  }

  /**
   * Appends policy.blocked with the code that was refused and its finding
   * counts, or spools it; no container was created for the run.
   */
  async recordBlocked(
    plan: RunPlan,
    start: Pick<RunStart, 'runId' | 'agentId'>,
    policy: string,
    counts: commonV1.SeverityCounts,
  ): Promise<void> {
    const request = auditV1.AppendRequest.fromPartial({
      event: event({
        agentId: start.agentId,
        action: 'policy.blocked',
        outcome: auditV1.AuditOutcome.AUDIT_OUTCOME_DENIED,
        runId: start.runId,
        attributes: {
          runtime: text(plan.runtime.id),
          // The scanner's own scan.completed record uses the same names.
          'scan.policy': text(policy),
          'scan.findings.critical': integer(counts.critical),
          'scan.findings.high': integer(counts.high),
          'scan.findings.medium': integer(counts.medium),
          'scan.findings.low': integer(counts.low),
          'scan.findings.info': integer(counts.info),
          client_request_id: text(plan.clientRequestId),
        },
        codeSha256: codeSha256(plan.files),
      }),
      files: plan.files.map((file) => ({ path: file.path, content: file.content })),
    });
    await this.appendOrSpool(request);
  }

  private async appendOrSpool(request: auditV1.AppendRequest): Promise<void> {
    // Earlier spooled records go first, so the log keeps the order runs ended in.
    if (this.spool.pending().length === 0) {
      try {
        await this.appender.append(request);
        return;
      } catch (error) {
        this.logger.warn(
          { err: error, run_id: request.event?.runId, action: request.event?.action },
          'could not append an audit record; spooled it for replay',
        );
      }
    }
    this.spool.write(request);
  }

  private async replay(): Promise<void> {
    if (this.replaying) return;
    this.replaying = true;
    try {
      for (const { file, request } of this.spool.pending()) {
        await this.appender.append(request);
        this.spool.remove(file);
        this.logger.info({ run_id: request.event?.runId }, 'replayed a spooled audit record');
      }
    } catch (error) {
      this.logger.debug(
        { code: (error as Partial<AppendError>).code },
        'audit service still unavailable; spool kept',
      );
    } finally {
      this.replaying = false;
    }
  }

  /** Sends a call this executor rejected to the audit log in the background; a failure is only logged. */
  recordDenial(denial: AuthDenial): void {
    const attributes: AttributeMap = {};
    for (const [name, value] of Object.entries(denialAttributes(denial))) {
      attributes[name] = text(value);
    }
    const request = auditV1.AppendRequest.fromPartial({
      event: event({
        agentId: denial.claimedSubject,
        action: AUTH_DENIED_ACTION,
        outcome: auditV1.AuditOutcome.AUDIT_OUTCOME_DENIED,
        attributes,
      }),
    });
    this.appender.append(request).catch((error: unknown) => {
      this.logger.warn({ err: error, rpc: denial.method }, 'could not record a denied call');
    });
  }
}

import { randomUUID } from 'node:crypto';
import { status, type ServiceError } from '@grpc/grpc-js';
import { auditV1 } from '@cordon/proto';
import { callUnary, createServiceClient } from './client.js';
import type { Logger } from 'pino';
import { activeTraceId } from './telemetry.js';

/** An event a service records in the audit log, before it gets its id, time and trace. */
export interface AuditEventInput<A extends string = string> {
  /** Empty when the caller proved no agent id; for auth.denied, the id the rejected token claimed. */
  readonly agentId: string;
  readonly action: A;
  readonly outcome: auditV1.AuditOutcome;
  readonly attributes: Readonly<Record<string, string | number | boolean>>;
  /** Empty or absent when the event concerns no run. */
  readonly runId?: string;
  /** Empty or absent when the event concerns no code. */
  readonly codeSha256?: string;
}

/** Destination of a service's audit events. `record` only queues the event, so it never blocks a call. */
export interface AuditSink<A extends string = string> {
  record(event: AuditEventInput<A>): void;
  /** Sends what is still queued, for a bounded time, and closes the connection. */
  close(): Promise<void>;
}

/** The sink used when a service has no audit address: events are dropped. */
export const AUDITING_OFF: AuditSink<never> = {
  record: () => undefined,
  close: () => Promise.resolve(),
};

const APPEND_DEADLINE_MS = 5_000;
/** Events waiting to be sent; beyond this, new events are dropped and counted. */
const MAX_QUEUED_EVENTS = 10_000;
const MAX_APPENDS_IN_FLIGHT = 4;
const MAX_RETRY_DELAY_MS = 5_000;
const CLOSE_FLUSH_MS = 3_000;
/** Append failures worth retrying: the record was not stored, and Append is idempotent by event id. */
const RETRYABLE_CODES = new Set<number>([
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.RESOURCE_EXHAUSTED,
  status.CANCELLED,
]);

function attributeValue(value: string | number | boolean): auditV1.AttributeValue {
  if (typeof value === 'string') return { value: { $case: 'stringValue', value } };
  if (typeof value === 'number') return { value: { $case: 'intValue', value } };
  return { value: { $case: 'boolValue', value } };
}

/** Builds the Append request of an event, stamped with the current time and trace. */
export function toAppendRequest(service: string, event: AuditEventInput): auditV1.AppendRequest {
  const attributes: Record<string, auditV1.AttributeValue> = {};
  for (const [name, value] of Object.entries(event.attributes)) {
    attributes[name] = attributeValue(value);
  }
  return auditV1.AppendRequest.fromPartial({
    event: {
      id: randomUUID(),
      service,
      agentId: event.agentId,
      action: event.action,
      outcome: event.outcome,
      runId: event.runId ?? '',
      codeSha256: event.codeSha256 ?? '',
      traceId: activeTraceId() ?? '',
      attributes,
      occurredTime: new Date(),
    },
  });
}

/**
 * Sends events to the audit service over gRPC in the background, a few at
 * a time, and retries them while the audit service is unavailable.
 *
 * NOTE: the queue lives in memory. Events still queued when the process
 * dies, and events beyond MAX_QUEUED_EVENTS during a long audit outage,
 * are lost; the log counts the dropped ones.
 */
export class GrpcAuditSink<A extends string = string> implements AuditSink<A> {
  private readonly client: auditV1.AuditServiceClient;
  private readonly queue: auditV1.AppendRequest[] = [];
  private inFlight = 0;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private dropped = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly service: string,
    address: string,
    private readonly logger: Logger,
  ) {
    this.client = createServiceClient<auditV1.AuditServiceClient>(
      auditV1.AuditServiceService,
      address,
    );
  }

  record(event: AuditEventInput<A>): void {
    if (this.queue.length >= MAX_QUEUED_EVENTS) {
      this.dropped += 1;
      if (this.dropped === 1 || this.dropped % 1000 === 0) {
        this.logger.error(
          { dropped: this.dropped, queued: this.queue.length },
          'audit queue full; dropping audit events',
        );
      }
      return;
    }
    this.queue.push(toAppendRequest(this.service, event));
    this.pump();
  }

  async close(): Promise<void> {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.pump();
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<void>((resolve) => {
      if (this.queue.length === 0 && this.inFlight === 0) resolve();
      else this.idleWaiters.push(resolve);
    });
    await Promise.race([
      idle,
      new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_FLUSH_MS))),
    ]);
    clearTimeout(timer);
    const unsent = this.queue.length + this.inFlight;
    if (unsent > 0) {
      this.logger.error({ unsent }, 'audit events not sent before shutdown');
    }
    this.client.close();
  }

  private pump(): void {
    while (
      this.retryTimer === undefined &&
      this.inFlight < MAX_APPENDS_IN_FLIGHT &&
      this.queue.length > 0
    ) {
      const request = this.queue.shift();
      if (request !== undefined) {
        this.inFlight += 1;
        void this.send(request);
      }
    }
    if (this.queue.length === 0 && this.inFlight === 0) {
      this.idleWaiters.splice(0).forEach((resolve) => resolve());
    }
  }

  private async send(request: auditV1.AppendRequest): Promise<void> {
    try {
      // The client sends this service's own token (role service), which Append requires.
      await callUnary(this.client.append.bind(this.client), request, {
        deadlineMs: APPEND_DEADLINE_MS,
      });
      if (this.failures > 0) {
        this.logger.info({ failures: this.failures }, 'audit service reachable again');
      }
      this.failures = 0;
    } catch (error) {
      this.handleFailure(request, error as ServiceError);
    } finally {
      this.inFlight -= 1;
      this.pump();
    }
  }

  private handleFailure(request: auditV1.AppendRequest, error: ServiceError): void {
    if (!RETRYABLE_CODES.has(error.code)) {
      this.logger.error(
        { err: error, action: request.event?.action, event_id: request.event?.id },
        'audit service rejected an event; dropping it',
      );
      return;
    }

    this.queue.unshift(request);
    this.failures += 1;
    if (this.failures === 1) {
      this.logger.warn(
        { err: error, queued: this.queue.length },
        'audit service unavailable; retrying',
      );
    }
    if (this.retryTimer === undefined) {
      const delayMs = Math.min(100 * 2 ** Math.min(this.failures, 10), MAX_RETRY_DELAY_MS);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.pump();
      }, delayMs);
      this.retryTimer.unref();
    }
  }
}

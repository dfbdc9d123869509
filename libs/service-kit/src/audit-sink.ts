import { randomUUID } from 'node:crypto';
import { auditV1 } from '@cordon/proto';
import type { Logger } from 'pino';
import { isRetryableAppendError } from './append-error.js';
import { AuditAppender, waitAtMost } from './audit-appender.js';
import { createServiceClient } from './client.js';
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

/** Events recorded and not yet stored or dropped. Beyond this, new events are dropped and counted. */
const MAX_QUEUED_EVENTS = 10_000;
const CLOSE_FLUSH_MS = 3_000;

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
 * Sends events to the audit service in the background over one
 * AppendStream, and appends an event again while the audit service is
 * unavailable.
 *
 * NOTE: the queue lives in memory. Events still queued when the process
 * dies, and events beyond MAX_QUEUED_EVENTS during a long audit outage,
 * are lost; the log counts the dropped ones. An event appended again
 * after an outage goes behind the events recorded meanwhile.
 */
export class GrpcAuditSink<A extends string = string> implements AuditSink<A> {
  private readonly client: auditV1.AuditServiceClient;
  private readonly appender: AuditAppender;
  private queued = 0;
  private dropped = 0;
  private unsent = 0;
  private closing = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly service: string,
    address: string,
    private readonly logger: Logger,
  ) {
    // The client sends this service's own token (role service), which AppendStream requires.
    this.client = createServiceClient<auditV1.AuditServiceClient>(
      auditV1.AuditServiceService,
      address,
    );
    this.appender = new AuditAppender(this.client, { logger });
  }

  record(event: AuditEventInput<A>): void {
    if (this.queued >= MAX_QUEUED_EVENTS) {
      this.dropped += 1;
      if (this.dropped === 1 || this.dropped % 1000 === 0) {
        this.logger.error(
          { dropped: this.dropped, queued: this.queued },
          'audit queue full; dropping audit events',
        );
      }
      return;
    }
    this.queued += 1;
    void this.deliver(toAppendRequest(this.service, event));
  }

  async close(): Promise<void> {
    await waitAtMost(this.whenIdle(), CLOSE_FLUSH_MS);

    // Events still queued now fail at once, and their delivery loops end.
    this.closing = true;
    await this.appender.close(0);
    await this.whenIdle();
    if (this.unsent > 0) {
      this.logger.error({ unsent: this.unsent }, 'audit events not sent before shutdown');
    }
    this.client.close();
  }

  private whenIdle(): Promise<void> {
    if (this.queued === 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Appends one event until it is stored, rejected, or the sink closes. */
  private async deliver(request: auditV1.AppendRequest): Promise<void> {
    try {
      for (;;) {
        try {
          await this.appender.append(request);
          return;
        } catch (error) {
          if (this.closing) {
            this.unsent += 1;
            return;
          }
          if (!isRetryableAppendError(error)) {
            this.logger.error(
              { err: error, action: request.event?.action, event_id: request.event?.id },
              'audit service rejected an event; dropping it',
            );
            return;
          }
        }
      }
    } finally {
      this.queued -= 1;
      if (this.queued === 0) {
        this.idleWaiters.splice(0).forEach((resolve) => resolve());
      }
    }
  }
}

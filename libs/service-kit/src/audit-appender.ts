import { Metadata, status, type StatusObject } from '@grpc/grpc-js';
import type { auditV1 } from '@cordon/proto';
import type { Logger } from 'pino';
import { AppendError, EVENT_REJECTIONS, STREAM_REJECTIONS } from './append-error.js';
import {
  AppendStreamCall,
  type AppendStreamClient,
  type PendingEvent,
} from './append-stream-call.js';

/** Waits until `promise` settles or `timeoutMs` passes, whichever comes first. */
export async function waitAtMost(promise: Promise<void>, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    promise,
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    }),
  ]);
  clearTimeout(timer);
}

export interface AuditAppenderOptions {
  readonly logger: Logger;
  /** Events written to the stream and not acknowledged yet, at most. Default 64. */
  readonly maxInFlight?: number;
  /** Time from append() until an unacknowledged event fails with DEADLINE_EXCEEDED. Default 5 s. */
  readonly ackTimeoutMs?: number;
  /**
   * Streams in a row that may end before any acknowledgement. At the next
   * such failure, every waiting event fails with that stream's status. Default 3.
   */
  readonly maxReopenAttempts?: number;
  /** Maximum wait before reopening a stream after failures. Default 2 s. */
  readonly maxReopenDelayMs?: number;
  /**
   * Returns the metadata of a new stream, at every opening. Default: none,
   * because a client from createServiceClient adds the service's current token.
   */
  readonly streamMetadata?: () => Metadata;
}

const DEFAULT_MAX_IN_FLIGHT = 64;
const DEFAULT_ACK_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_REOPEN_ATTEMPTS = 3;
const DEFAULT_MAX_REOPEN_DELAY_MS = 2_000;
const FIRST_REOPEN_DELAY_MS = 100;

/**
 * Appends audit events over one AppendStream, with up to maxInFlight
 * events on the wire. Each append() resolves with the event's seq and hash
 * once the audit service acknowledged it, which it does only after the
 * record committed, in the order events were appended.
 *
 * When a stream ends with an error (the service restarted, the token
 * expired), the appender opens a new one and writes again every event that
 * got no response. The service returns the stored record for an id it
 * already has. INVALID_ARGUMENT or ALREADY_EXISTS fail only the oldest
 * unacknowledged event, which the service ended the stream for.
 * PERMISSION_DENIED and UNIMPLEMENTED fail every waiting event. Every
 * promise settles within ackTimeoutMs.
 */
export class AuditAppender {
  private readonly maxInFlight: number;
  private readonly ackTimeoutMs: number;
  private readonly maxReopenAttempts: number;
  private readonly maxReopenDelayMs: number;
  private readonly logger: Logger;
  /** Events not written on the current stream, oldest first; timed-out ones are skipped. */
  private unsent: PendingEvent[] = [];
  /**
   * Events that timed out since settled events were last removed from
   * `unsent`. Once they are more than half its length, one pass removes them.
   */
  private expiredSinceCompaction = 0;
  private stream: AppendStreamCall | undefined;
  private unsettled = 0;
  /** Streams in a row that ended with an error before any acknowledgement. */
  private failures = 0;
  /** Whether the service was logged as unavailable, so that the next acknowledgement logs its return. */
  private reportedUnavailable = false;
  private nextOpenAtMs = 0;
  private reopenTimer: NodeJS.Timeout | undefined;
  private closing = false;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly client: AppendStreamClient,
    private readonly options: AuditAppenderOptions,
  ) {
    this.logger = options.logger;
    this.maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    this.ackTimeoutMs = options.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS;
    this.maxReopenAttempts = options.maxReopenAttempts ?? DEFAULT_MAX_REOPEN_ATTEMPTS;
    this.maxReopenDelayMs = options.maxReopenDelayMs ?? DEFAULT_MAX_REOPEN_DELAY_MS;
  }

  /** Resolves with the event's seq and hash once it is stored, or rejects with an AppendError. */
  append(request: auditV1.AppendRequest): Promise<auditV1.AppendResponse> {
    if (this.closing) {
      return Promise.reject(
        new AppendError(
          status.CANCELLED,
          'the audit appender is closed, so it takes no more events',
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const event: PendingEvent = {
        request,
        resolve,
        reject,
        settled: false,
        timer: setTimeout(() => {
          this.expire(event);
        }, this.ackTimeoutMs),
      };
      this.unsettled += 1;
      this.unsent.push(event);
      this.pump();
    });
  }

  /**
   * Waits up to timeoutMs for every appended event to settle, then fails the
   * rest with CANCELLED and ends the stream. The caller closes the client.
   */
  async close(timeoutMs = 3_000): Promise<void> {
    this.closing = true;
    await waitAtMost(this.whenIdle(), timeoutMs);

    this.closed = true;
    clearTimeout(this.reopenTimer);
    const stream = this.stream;
    this.failAll(
      new AppendError(
        status.CANCELLED,
        'the audit appender closed before the audit service acknowledged the event',
      ),
      stream?.sent ?? [],
    );
    await stream?.end();
  }

  private whenIdle(): Promise<void> {
    if (this.unsettled === 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private settle(
    event: PendingEvent,
    outcome: { response: auditV1.AppendResponse } | { error: AppendError },
  ): void {
    if (event.settled) {
      return;
    }
    event.settled = true;
    clearTimeout(event.timer);
    if ('response' in outcome) {
      event.resolve(outcome.response);
    } else {
      event.reject(outcome.error);
    }
    this.unsettled -= 1;
    if (this.unsettled === 0) {
      this.idleWaiters.splice(0).forEach((resolve) => {
        resolve();
      });
    }
  }

  private expire(event: PendingEvent): void {
    this.settle(event, {
      error: new AppendError(
        status.DEADLINE_EXCEEDED,
        `the audit service did not acknowledge event ${event.request.event?.id ?? ''} within ${this.ackTimeoutMs} ms`,
      ),
    });
    this.expiredSinceCompaction += 1;
    if (this.expiredSinceCompaction * 2 > this.unsent.length) {
      this.unsent = this.unsent.filter((waiting) => !waiting.settled);
      this.expiredSinceCompaction = 0;
    }
  }

  /** Fails every unsettled event, those waiting and those of `sent`. */
  private failAll(error: AppendError, sent: readonly PendingEvent[]): void {
    const waiting = [...sent, ...this.unsent];
    this.unsent = [];
    waiting.forEach((event) => {
      this.settle(event, { error });
    });
  }

  /** Writes waiting events while the window has room, opening a stream when there is none. */
  private pump(): void {
    const stream = this.stream;
    if (stream === undefined) {
      this.openWhenDue();
      return;
    }
    while (stream.canWrite(this.maxInFlight)) {
      const event = this.unsent.shift();
      if (event === undefined) {
        return;
      }
      if (event.settled) {
        continue;
      }
      stream.write(event);
    }
  }

  private openWhenDue(): void {
    const hasWaiting = this.unsent.some((event) => !event.settled);
    if (this.closed || this.reopenTimer !== undefined || !hasWaiting) {
      return;
    }
    const waitMs = this.nextOpenAtMs - Date.now();
    if (waitMs > 0) {
      this.reopenTimer = setTimeout(() => {
        this.reopenTimer = undefined;
        this.openWhenDue();
      }, waitMs);
      this.reopenTimer.unref();
      return;
    }

    const stream: AppendStreamCall = new AppendStreamCall(
      this.client,
      this.options.streamMetadata?.() ?? new Metadata(),
      {
        onResponse: (response) => {
          this.onResponse(stream, response);
        },
        onDrain: () => {
          this.pump();
        },
        onEnd: (ended) => {
          this.onStreamEnd(stream, ended);
        },
      },
    );
    this.stream = stream;
    this.pump();
  }

  private onResponse(stream: AppendStreamCall, response: auditV1.AppendResponse): void {
    const event = stream.sent.shift();
    if (event === undefined) {
      this.logger.error('the audit service sent a response for no event; reopening the stream');
      stream.cancel();
      return;
    }
    stream.acknowledged += 1;
    if (this.reportedUnavailable) {
      this.logger.info({ failures: this.failures }, 'audit service reachable again');
      this.reportedUnavailable = false;
    }
    this.failures = 0;
    this.settle(event, { response });
    this.pump();
  }

  private onStreamEnd(stream: AppendStreamCall, ended: StatusObject): void {
    if (this.stream !== stream) {
      return;
    }
    this.stream = undefined;
    const error = new AppendError(ended.code, ended.details, ended.metadata);

    if (this.closed) {
      this.failAll(error, stream.sent);
      return;
    }
    if (ended.code === status.OK) {
      this.retry(stream.sent);
    } else if (EVENT_REJECTIONS.has(ended.code)) {
      // The service acknowledged every event before the one it rejected.
      const [rejected, ...rest] = stream.sent;
      if (rejected !== undefined) {
        this.settle(rejected, { error });
      }
      this.retry(rest);
    } else if (STREAM_REJECTIONS.has(ended.code)) {
      this.logger.error({ err: error }, 'the audit service rejected the append stream');
      this.failAll(error, stream.sent);
    } else {
      this.retryAfterFailure(stream, error);
    }
    this.pump();
  }

  /** Puts events without a response back at the head of the queue, in their order. */
  private retry(sent: readonly PendingEvent[]): void {
    this.unsent = [...sent.filter((event) => !event.settled), ...this.unsent];
  }

  private retryAfterFailure(stream: AppendStreamCall, error: AppendError): void {
    const waiting = [...stream.sent, ...this.unsent].filter((event) => !event.settled).length;
    if (stream.acknowledged > 0) {
      // A stream that worked ended, as at a token's expiry: reopen at once.
      this.failures = 1;
      this.logger.info(
        { code: status[error.code], message: error.details, waiting },
        'audit stream ended; reopening',
      );
    } else {
      this.failures += 1;
      if (!this.reportedUnavailable) {
        this.reportedUnavailable = true;
        this.logger.warn({ err: error, waiting }, 'audit service unavailable; retrying');
      }
    }
    const delayMs =
      this.failures <= 1
        ? 0
        : Math.min(FIRST_REOPEN_DELAY_MS * 2 ** (this.failures - 2), this.maxReopenDelayMs);
    this.nextOpenAtMs = Date.now() + delayMs;

    if (this.failures > this.maxReopenAttempts) {
      this.logger.warn(
        { err: error, waiting, failures: this.failures },
        'audit service unavailable; failing the waiting events',
      );
      this.failAll(error, stream.sent);
      return;
    }
    this.retry(stream.sent);
  }
}

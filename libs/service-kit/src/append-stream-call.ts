import { type Metadata, type ClientDuplexStream, type StatusObject } from '@grpc/grpc-js';
import { context, ROOT_CONTEXT } from '@opentelemetry/api';
import type { auditV1 } from '@cordon/proto';
import type { AppendError } from './append-error.js';

/** The audit client method the appender calls. */
export type AppendStreamClient = Pick<auditV1.AuditServiceClient, 'appendStream'>;

/** An appended event and the settlement of its promise. */
export interface PendingEvent {
  readonly request: auditV1.AppendRequest;
  readonly resolve: (response: auditV1.AppendResponse) => void;
  readonly reject: (error: AppendError) => void;
  readonly timer: NodeJS.Timeout;
  settled: boolean;
}

/** Time a half-closed stream gets to end by itself before it is cancelled. */
const STREAM_CLOSE_MS = 1_000;

/**
 * One AppendStream call and the events written on it that got no response
 * yet. It counts as ended once both its status and the end of its
 * responses came, because a response may still be buffered when the
 * status arrives.
 */
export class AppendStreamCall {
  /**
   * Events written on this stream, oldest first, until their response
   * comes. An event that timed out stays, so responses still match.
   */
  readonly sent: PendingEvent[] = [];
  acknowledged = 0;
  private readonly call: ClientDuplexStream<auditV1.AppendRequest, auditV1.AppendResponse>;
  private waitingForDrain = false;
  private endStatus: StatusObject | undefined;
  private readEnded = false;

  constructor(
    client: AppendStreamClient,
    metadata: Metadata,
    listener: {
      readonly onResponse: (response: auditV1.AppendResponse) => void;
      readonly onDrain: () => void;
      readonly onEnd: (status: StatusObject) => void;
    },
  ) {
    // The stream outlives the call that opened it, so it joins no caller's trace.
    this.call = context.with(ROOT_CONTEXT, () => client.appendStream(metadata));
    this.call.on('data', listener.onResponse);
    // The status event carries the same status, and an error event without a listener would throw.
    this.call.on('error', () => undefined);
    this.call.on('drain', () => {
      this.waitingForDrain = false;
      listener.onDrain();
    });
    const endOnce = (): void => {
      if (this.endStatus !== undefined && this.readEnded) {
        listener.onEnd(this.endStatus);
      }
    };
    this.call.on('status', (status: StatusObject) => {
      this.endStatus = status;
      endOnce();
    });
    this.call.on('end', () => {
      this.readEnded = true;
      endOnce();
    });
  }

  /** Returns whether another event may be written now: the window has room and no status came. */
  canWrite(maxInFlight: number): boolean {
    return this.endStatus === undefined && !this.waitingForDrain && this.sent.length < maxInFlight;
  }

  write(event: PendingEvent): void {
    this.sent.push(event);
    if (!this.call.write(event.request)) {
      this.waitingForDrain = true;
    }
  }

  /** Cancels the call at once, so its status comes as CANCELLED. */
  cancel(): void {
    this.call.cancel();
  }

  /** Half-closes the stream and waits for its status, or cancels it when none comes in time. */
  async end(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const ended = new Promise<boolean>((resolve) => {
      if (this.endStatus !== undefined) {
        resolve(true);
        return;
      }
      this.call.once('status', () => resolve(true));
      timer = setTimeout(() => resolve(false), STREAM_CLOSE_MS);
    });
    this.call.end();
    if (!(await ended)) {
      this.call.cancel();
    }
    clearTimeout(timer);
  }
}

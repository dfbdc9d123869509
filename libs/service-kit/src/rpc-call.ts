/**
 * The life of one call inside the service kit, shared by every kind of
 * RPC: admission of the verified caller, the call's scope (abort signal,
 * logger, tracking for shutdown), its one log line, and the writing of
 * streamed responses.
 */
import {
  status,
  type Metadata,
  type ServerDuplexStream,
  type ServerWritableStream,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { verifiedCallerOf, type VerifiedCaller } from './auth-interceptor.js';
import { CordonError, toBoundaryStatus, type BoundaryStatus } from './errors.js';
import type { CallContext, CallTracker } from './rpc.js';
import { activeTraceId } from './telemetry.js';

/** Abort reason for a call its client cancelled or let expire; nothing is sent back. */
export const CLIENT_CANCELLED = new CordonError(status.CANCELLED, 'the client cancelled the call');

/** Successful calls per second whose line is logged at info; the rest of that second log at debug. */
const OK_LINES_PER_SECOND = 100;

/**
 * Rate limit of the info lines of successful calls. Writing each line
 * synchronously cost about 25 µs of server CPU per call, as much as 40% of
 * what grpc-js itself spends on a call (bench/memory, 2 cores). Below the
 * limit every call keeps its line; above it the next info line reports how
 * many calls went to debug in between.
 */
class OkLineBudget {
  private windowStartMs = 0;
  private usedInWindow = 0;
  private unlogged = 0;

  /** Returns how many calls went unlogged at info since the last line, or undefined when this one must go to debug. */
  take(nowMs: number): number | undefined {
    if (nowMs - this.windowStartMs >= 1000) {
      this.windowStartMs = nowMs;
      this.usedInWindow = 0;
    }
    if (this.usedInWindow >= OK_LINES_PER_SECOND) {
      this.unlogged += 1;
      return undefined;
    }
    this.usedInWindow += 1;
    const unlogged = this.unlogged;
    this.unlogged = 0;
    return unlogged;
  }
}

const okLineBudget = new OkLineBudget();

export interface CallScope {
  readonly context: CallContext;
  readonly controller: AbortController;
  readonly startedAt: number;
  readonly logger: Logger;
}

export interface IncomingCall {
  metadata: Metadata;
  getDeadline(): Date | number;
  on(event: 'cancelled', listener: () => void): unknown;
}

function deadlineOf(call: IncomingCall): number | undefined {
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(ms) ? ms : undefined;
}

/** Marks a request whose encoded size is above its method's maximum, so it is never decoded. */
export class OversizeRequest {
  constructor(
    readonly sizeBytes: number,
    readonly maxBytes: number,
  ) {}
}

/**
 * Returns the verified caller of a call its handler may see, or the error
 * to send instead: the request is oversize, or no caller was verified. A
 * bidi call has no request here, because its reader checks each request's size.
 */
export function admit(
  method: string,
  call: IncomingCall & { request?: unknown },
): VerifiedCaller | CordonError {
  const caller = verifiedCallerOf(call.metadata);
  if (caller === undefined) {
    // Every adapted method has an auth policy, so this means the server was built without one.
    return new CordonError(status.UNAUTHENTICATED, 'this server could not verify the caller');
  }
  if (call.request instanceof OversizeRequest) {
    return new CordonError(
      status.INVALID_ARGUMENT,
      `the request is ${call.request.sizeBytes} bytes, above the maximum of ${call.request.maxBytes} bytes for ${method}; send a smaller request`,
    );
  }
  return caller;
}

export function logRefusal(logger: Logger, method: string, refusal: CordonError): void {
  logger.info({ rpc: method, code: status[refusal.code], message: refusal.message }, 'rpc refused');
}

export function openCall(
  method: string,
  call: IncomingCall,
  logger: Logger,
  tracker: CallTracker,
  caller: VerifiedCaller,
): CallScope {
  const controller = new AbortController();
  tracker.add(controller);
  call.on('cancelled', () => controller.abort(CLIENT_CANCELLED));
  const callLogger = logger.child({ rpc: method, caller: caller.subject, role: caller.role });
  return {
    context: {
      method,
      metadata: call.metadata,
      caller,
      deadlineMs: deadlineOf(call),
      signal: controller.signal,
      logger: callLogger,
    },
    controller,
    startedAt: performance.now(),
    logger: callLogger,
  };
}

/**
 * Logs the one line each RPC gets, at a level chosen by its outcome, and
 * returns the status to send for a failure (none when the client is gone).
 * Successful calls beyond OK_LINES_PER_SECOND log at debug.
 */
export function closeCall(
  scope: CallScope,
  tracker: CallTracker,
  error?: unknown,
): BoundaryStatus | undefined {
  tracker.delete(scope.controller);
  const finishedAt = performance.now();
  const durationMs = Math.round(finishedAt - scope.startedAt);

  if (error === undefined) {
    const unlogged = okLineBudget.take(finishedAt);
    if (unlogged === undefined) {
      scope.logger.debug({ code: 'OK', duration_ms: durationMs }, 'rpc finished');
    } else if (unlogged === 0) {
      scope.logger.info({ code: 'OK', duration_ms: durationMs }, 'rpc finished');
    } else {
      scope.logger.info(
        { code: 'OK', duration_ms: durationMs, calls_logged_at_debug: unlogged },
        'rpc finished',
      );
    }
    return undefined;
  }
  const { signal } = scope.controller;
  if (signal.aborted && signal.reason === CLIENT_CANCELLED) {
    scope.logger.info({ code: 'CANCELLED', duration_ms: durationMs }, 'rpc cancelled by client');
    return undefined;
  }

  const boundary = toBoundaryStatus(signal.aborted ? signal.reason : error, activeTraceId());
  const code = status[boundary.status.code];
  if (boundary.expected) {
    scope.logger.info(
      { code, duration_ms: durationMs, message: boundary.status.details },
      'rpc failed',
    );
  } else {
    scope.logger.error({ code, duration_ms: durationMs, err: error }, 'rpc failed unexpectedly');
  }
  return boundary;
}

/** The writable side of a server-streaming or bidi-streaming call. */
type ResponseStream = ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>;

/**
 * Opens the scope of a streaming call, or sends the status of its refusal
 * and returns undefined.
 */
export function openStreamingCall(
  method: string,
  call: ResponseStream,
  logger: Logger,
  tracker: CallTracker,
): CallScope | undefined {
  const caller = admit(method, call);
  if (caller instanceof CordonError) {
    logRefusal(logger, method, caller);
    call.emit('error', toBoundaryStatus(caller, undefined).status);
    return undefined;
  }
  return openCall(method, call, logger, tracker, caller);
}

/**
 * Writes a streaming handler's responses, then ends the call with OK, or
 * with the status of the handler's error. `onClose` runs first either way.
 */
export function finishStreamingCall(
  call: ResponseStream,
  scope: CallScope,
  tracker: CallTracker,
  responses: AsyncIterable<unknown>,
  onClose?: () => void,
): void {
  streamResponses(call, responses, scope.controller.signal).then(
    () => {
      onClose?.();
      closeCall(scope, tracker);
      if (!call.cancelled) {
        call.end();
      }
    },
    (error: unknown) => {
      onClose?.();
      const boundary = closeCall(scope, tracker, error);
      if (boundary !== undefined && !call.cancelled) {
        call.emit('error', boundary.status);
      }
    },
  );
}

/**
 * Writes each response as the handler yields it, waiting for the transport
 * to drain when its buffer is full, so a slow client slows the handler down
 * instead of growing the server's memory.
 */
async function streamResponses(
  call: ResponseStream,
  responses: AsyncIterable<unknown>,
  signal: AbortSignal,
): Promise<void> {
  for await (const response of responses) {
    signal.throwIfAborted();
    if (!call.write(response)) {
      await waitForDrain(call, signal);
    }
  }
  signal.throwIfAborted();
}

function waitForDrain(call: ResponseStream, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = (): void => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    };
    const onAbort = (): void => {
      call.off('drain', onDrain);
      reject(signal.reason as Error);
    };
    call.once('drain', onDrain);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

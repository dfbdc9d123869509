import {
  status,
  type Metadata,
  type ServerDuplexStream,
  type UntypedHandleCall,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { tokenExpiryOf } from './auth-interceptor.js';
import { CordonError } from './errors.js';
import type { BidiStreamHandler, CallTracker } from './rpc.js';
import { finishStreamingCall, openStreamingCall, OversizeRequest } from './rpc-call.js';

/**
 * Time a bidi handler gets, after its caller's token expired, to send the
 * responses for requests it read before. Then the kit aborts the call.
 */
const EXPIRY_GRACE_MS = 2_000;

/** Maximum delay setTimeout accepts (about 24.8 days), while a token may live up to 366 days. */
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/**
 * Watches the expiry of the tokens a stream was opened with. At expiry,
 * `reading` aborts with UNAUTHENTICATED, so the request reader reads no
 * further request, and EXPIRY_GRACE_MS later the call itself is aborted.
 * Returns the function that stops watching.
 */
function watchTokenExpiry(
  metadata: Metadata,
  call: AbortController,
  reading: AbortController,
): () => void {
  const expiresAtMs = tokenExpiryOf(metadata);
  let timer: NodeJS.Timeout | undefined;

  const expire = (): void => {
    const expired = new CordonError(
      status.UNAUTHENTICATED,
      'the token this stream was opened with has expired; open a new stream with a fresh token',
    );
    reading.abort(expired);
    timer = setTimeout(() => call.abort(expired), EXPIRY_GRACE_MS);
    timer.unref();
  };
  const arm = (): void => {
    if (expiresAtMs === undefined) {
      return;
    }
    const delayMs = expiresAtMs - Date.now();
    timer =
      delayMs > MAX_TIMER_DELAY_MS
        ? setTimeout(arm, MAX_TIMER_DELAY_MS)
        : setTimeout(expire, Math.max(0, delayMs));
    timer.unref();
  };

  arm();
  return () => {
    clearTimeout(timer);
  };
}

/**
 * Reads the requests of a bidi call one at a time, only when the handler
 * pulls the next one. grpc-js reads a stream's next message only when its
 * duplex stream wants more (16 decoded messages, its objectMode
 * highWaterMark), so a handler that stops reading leaves the rest in HTTP/2
 * flow control and slows the client down.
 *
 * Throws the abort reason of either signal: a cancelled call, or an expired
 * token. Throws INVALID_ARGUMENT for a request above the method's maximum.
 */
async function* readRequests(
  method: string,
  call: ServerDuplexStream<unknown, unknown>,
  signals: readonly AbortSignal[],
): AsyncGenerator<unknown, void, undefined> {
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  call.on('readable', notify);
  call.on('end', notify);
  signals.forEach((signal) => {
    signal.addEventListener('abort', notify);
  });

  try {
    for (let index = 0; ; index += 1) {
      let request: unknown = null;
      for (;;) {
        signals.forEach((signal) => {
          signal.throwIfAborted();
        });
        request = call.read();
        if (request !== null || call.readableEnded) {
          break;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
      if (request === null) {
        return;
      }

      if (request instanceof OversizeRequest) {
        throw new CordonError(
          status.INVALID_ARGUMENT,
          `request ${index} on the stream is ${request.sizeBytes} bytes, above the maximum of ${request.maxBytes} bytes for ${method}; send a smaller request`,
        );
      }
      yield request;
    }
  } finally {
    call.off('readable', notify);
    call.off('end', notify);
    signals.forEach((signal) => {
      signal.removeEventListener('abort', notify);
    });
  }
}

/**
 * Serves a bidi-streaming method with the same admission, call scope, log
 * line and error mapping as the other kinds. The handler reads no further
 * request once the caller's token expires (UNAUTHENTICATED) or the server
 * starts to shut down (UNAVAILABLE).
 */
export function adaptBidiStream(
  method: string,
  handler: BidiStreamHandler<unknown, unknown>,
  logger: Logger,
  tracker: CallTracker,
): UntypedHandleCall {
  return (call: ServerDuplexStream<unknown, unknown>) => {
    const scope = openStreamingCall(method, call, logger, tracker);
    if (scope === undefined) {
      return;
    }
    const reading = new AbortController();
    tracker.addReader(reading);
    const stopWatching = watchTokenExpiry(call.metadata, scope.controller, reading);
    const requests = readRequests(method, call, [scope.controller.signal, reading.signal]);
    finishStreamingCall(call, scope, tracker, handler(requests, scope.context), () => {
      stopWatching();
      tracker.deleteReader(reading);
    });
  };
}

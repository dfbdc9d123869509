import type {
  Metadata,
  ServiceDefinition as GrpcServiceDefinition,
  sendUnaryData,
  ServerUnaryCall,
  ServerWritableStream,
  UntypedHandleCall,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { CordonError, toBoundaryStatus, type BoundaryStatus } from './errors.js';
import { activeTraceId } from './telemetry.js';

/** Context a handler gets besides the request. */
export interface CallContext {
  /** Full method name, e.g. "cordon.v1.ExecutorService/Execute". */
  readonly method: string;
  readonly metadata: Metadata;
  /**
   * Aborted when the client cancels, the deadline passes, or the server
   * stops waiting for in-flight calls at shutdown.
   */
  readonly signal: AbortSignal;
  /** Logger bound to this call; trace and span ids are added per line. */
  readonly logger: Logger;
}

export type UnaryHandler<Request, Response> = (
  request: Request,
  context: CallContext,
) => Promise<Response>;

export type ServerStreamHandler<Request, Response> = (
  request: Request,
  context: CallContext,
) => AsyncIterable<Response>;

/** A grpc-js service definition, as ts-proto writes it. */
export type ServiceDefinition = GrpcServiceDefinition;

type RequestOf<M> = M extends { requestDeserialize: (bytes: Buffer) => infer Request }
  ? Request
  : never;
type ResponseOf<M> = M extends { responseSerialize: (value: infer Response) => Buffer }
  ? Response
  : never;

/** Async handlers for every method of a service; client-streaming RPCs are not used by Cordon. */
export type ServiceHandlers<D extends ServiceDefinition> = {
  [K in keyof D]: D[K]['requestStream'] extends true
    ? never
    : D[K]['responseStream'] extends true
      ? ServerStreamHandler<RequestOf<D[K]>, ResponseOf<D[K]>>
      : UnaryHandler<RequestOf<D[K]>, ResponseOf<D[K]>>;
};

/** The calls a server is running, so shutdown can wait for them and then cancel them. */
export class CallTracker {
  private readonly active = new Set<AbortController>();
  private readonly idleWaiters: (() => void)[] = [];

  get size(): number {
    return this.active.size;
  }

  add(controller: AbortController): void {
    this.active.add(controller);
  }

  delete(controller: AbortController): void {
    this.active.delete(controller);
    if (this.active.size === 0) {
      this.idleWaiters.splice(0).forEach((resolve) => resolve());
    }
  }

  /** Resolves when no call is running. */
  whenIdle(): Promise<void> {
    if (this.active.size === 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Aborts every running call; the reason is what their clients receive. */
  abortAll(reason: CordonError): void {
    for (const controller of this.active) {
      controller.abort(reason);
    }
  }
}

/** Abort reason for a call its client cancelled or let expire; nothing is sent back. */
const CLIENT_CANCELLED = new CordonError(status.CANCELLED, 'the client cancelled the call');

interface CallScope {
  readonly context: CallContext;
  readonly controller: AbortController;
  readonly startedAt: number;
  readonly logger: Logger;
}

function openCall(
  method: string,
  call: { metadata: Metadata; on(event: 'cancelled', listener: () => void): unknown },
  logger: Logger,
  tracker: CallTracker,
): CallScope {
  const controller = new AbortController();
  tracker.add(controller);
  call.on('cancelled', () => controller.abort(CLIENT_CANCELLED));
  const callLogger = logger.child({ rpc: method });
  return {
    context: { method, metadata: call.metadata, signal: controller.signal, logger: callLogger },
    controller,
    startedAt: performance.now(),
    logger: callLogger,
  };
}

/**
 * Logs the one line each RPC gets, at a level chosen by its outcome, and
 * returns the status to send for a failure (none when the client is gone).
 */
function closeCall(
  scope: CallScope,
  tracker: CallTracker,
  error?: unknown,
): BoundaryStatus | undefined {
  tracker.delete(scope.controller);
  const durationMs = Math.round(performance.now() - scope.startedAt);

  if (error === undefined) {
    scope.logger.info({ code: 'OK', duration_ms: durationMs }, 'rpc finished');
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

function adaptUnary(
  method: string,
  handler: UnaryHandler<unknown, unknown>,
  logger: Logger,
  tracker: CallTracker,
): UntypedHandleCall {
  return (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
    const scope = openCall(method, call, logger, tracker);
    handler(call.request, scope.context).then(
      (response) => {
        closeCall(scope, tracker);
        callback(null, response);
      },
      (error: unknown) => {
        const boundary = closeCall(scope, tracker, error);
        if (boundary !== undefined) {
          callback(boundary.status);
        }
      },
    );
  };
}

function adaptServerStream(
  method: string,
  handler: ServerStreamHandler<unknown, unknown>,
  logger: Logger,
  tracker: CallTracker,
): UntypedHandleCall {
  return (call: ServerWritableStream<unknown, unknown>) => {
    const scope = openCall(method, call, logger, tracker);
    streamResponses(call, handler(call.request, scope.context), scope.controller.signal).then(
      () => {
        closeCall(scope, tracker);
        if (!call.cancelled) {
          call.end();
        }
      },
      (error: unknown) => {
        const boundary = closeCall(scope, tracker, error);
        if (boundary !== undefined && !call.cancelled) {
          call.emit('error', boundary.status);
        }
      },
    );
  };
}

/**
 * Writes each response as the handler yields it, waiting for the transport
 * to drain when its buffer is full, so a slow client slows the handler down
 * instead of growing the server's memory.
 */
async function streamResponses(
  call: ServerWritableStream<unknown, unknown>,
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

function waitForDrain(
  call: ServerWritableStream<unknown, unknown>,
  signal: AbortSignal,
): Promise<void> {
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

/** Turns async handlers into the callback-style implementation grpc-js expects. */
export function adaptService<D extends ServiceDefinition>(
  definition: D,
  handlers: ServiceHandlers<D>,
  logger: Logger,
  tracker: CallTracker,
): UntypedServiceImplementation {
  const implementation: UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    const handler = handlers[name] as unknown;
    if (typeof handler !== 'function') {
      throw new TypeError(`no handler for ${method.path}`);
    }
    const methodName = method.path.slice(1);
    implementation[name] = method.responseStream
      ? adaptServerStream(
          methodName,
          handler as ServerStreamHandler<unknown, unknown>,
          logger,
          tracker,
        )
      : adaptUnary(methodName, handler as UnaryHandler<unknown, unknown>, logger, tracker);
  }
  return implementation;
}

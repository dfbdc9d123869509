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
import { verifiedCallerOf, type VerifiedCaller } from './auth-interceptor.js';
import { CordonError, toBoundaryStatus, type BoundaryStatus } from './errors.js';
import { activeTraceId } from './telemetry.js';

/** Context a handler gets besides the request. */
export interface CallContext {
  /** Full method name, e.g. "cordon.v1.ExecutorService/Execute". */
  readonly method: string;
  /** Request metadata, without the bearer and acting-for tokens the server already checked. */
  readonly metadata: Metadata;
  /** The caller its token proves; a handler runs only for a verified caller of an allowed role. */
  readonly caller: VerifiedCaller;
  /** When the client's deadline passes, in ms since the epoch; undefined when it set none. */
  readonly deadlineMs: number | undefined;
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

interface CallScope {
  readonly context: CallContext;
  readonly controller: AbortController;
  readonly startedAt: number;
  readonly logger: Logger;
}

interface IncomingCall {
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
class OversizeRequest {
  constructor(
    readonly sizeBytes: number,
    readonly maxBytes: number,
  ) {}
}

/**
 * Returns the verified caller of a call its handler may see, or the error
 * to send instead: the request is oversize, or no caller was verified.
 */
function admit(
  method: string,
  call: IncomingCall & { request: unknown },
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

function logRefusal(logger: Logger, method: string, refusal: CordonError): void {
  logger.info({ rpc: method, code: status[refusal.code], message: refusal.message }, 'rpc refused');
}

function openCall(
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
function closeCall(
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

function adaptUnary(
  method: string,
  handler: UnaryHandler<unknown, unknown>,
  logger: Logger,
  tracker: CallTracker,
): UntypedHandleCall {
  return (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
    const caller = admit(method, call);
    if (caller instanceof CordonError) {
      logRefusal(logger, method, caller);
      callback(toBoundaryStatus(caller, undefined).status);
      return;
    }
    const scope = openCall(method, call, logger, tracker, caller);
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
    const caller = admit(method, call);
    if (caller instanceof CordonError) {
      logRefusal(logger, method, caller);
      call.emit('error', toBoundaryStatus(caller, undefined).status);
      return;
    }
    const scope = openCall(method, call, logger, tracker, caller);
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

/**
 * Returns a copy of a service definition whose request decoders replace a
 * request above its method's maximum with an OversizeRequest marker, so
 * an oversize request costs no decoding and its handler never runs.
 */
export function boundRequestSizes<D extends ServiceDefinition>(
  definition: D,
  maxRequestBytes: Readonly<Partial<Record<keyof D, number>>>,
): D {
  const bounded: Record<string, D[keyof D]> = {};
  for (const [name, method] of Object.entries(definition) as [keyof D & string, D[keyof D]][]) {
    const maxBytes = maxRequestBytes[name];
    bounded[name] =
      maxBytes === undefined
        ? method
        : {
            ...method,
            requestDeserialize: (bytes: Buffer): unknown =>
              bytes.length > maxBytes
                ? new OversizeRequest(bytes.length, maxBytes)
                : method.requestDeserialize(bytes),
          };
  }
  return bounded as unknown as D;
}

import type {
  Metadata,
  ServiceDefinition as GrpcServiceDefinition,
  sendUnaryData,
  ServerUnaryCall,
  ServerWritableStream,
  UntypedHandleCall,
  UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { VerifiedCaller } from './auth-interceptor.js';
import { adaptBidiStream } from './bidi-stream.js';
import { CordonError, toBoundaryStatus } from './errors.js';
import {
  admit,
  closeCall,
  finishStreamingCall,
  logRefusal,
  openCall,
  openStreamingCall,
  OversizeRequest,
} from './rpc-call.js';

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

/**
 * Handler of a bidi-streaming RPC: it reads the requests as they arrive and
 * yields responses. It ends the call with OK by returning, or with a status
 * by throwing. Reading a request after the caller's token expired throws
 * UNAUTHENTICATED, and after the server began to shut down UNAVAILABLE. The
 * kit aborts the call when the handler has not finished shortly after.
 */
export type BidiStreamHandler<Request, Response> = (
  requests: AsyncIterable<Request>,
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

/**
 * Async handlers for every method of a service. Client-streaming RPCs (a
 * request stream with one response) are not used by Cordon, so the kit
 * has no handler type for them.
 */
export type ServiceHandlers<D extends ServiceDefinition> = {
  [K in keyof D]: D[K]['requestStream'] extends true
    ? D[K]['responseStream'] extends true
      ? BidiStreamHandler<RequestOf<D[K]>, ResponseOf<D[K]>>
      : never
    : D[K]['responseStream'] extends true
      ? ServerStreamHandler<RequestOf<D[K]>, ResponseOf<D[K]>>
      : UnaryHandler<RequestOf<D[K]>, ResponseOf<D[K]>>;
};

/** The calls a server is running, so shutdown can wait for them and then cancel them. */
export class CallTracker {
  private readonly active = new Set<AbortController>();
  private readonly idleWaiters: (() => void)[] = [];
  /** Request reading of the running bidi calls. */
  private readonly readers = new Set<AbortController>();
  private readingStopped: CordonError | undefined;

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

  /** Registers the request reading of a bidi call, which stopReading ends. */
  addReader(reader: AbortController): void {
    if (this.readingStopped !== undefined) {
      reader.abort(this.readingStopped);
    }
    this.readers.add(reader);
  }

  deleteReader(reader: AbortController): void {
    this.readers.delete(reader);
  }

  /**
   * Makes every bidi call read no further request, so it sends the
   * responses for what it read and ends with `reason` instead of holding
   * shutdown until the drain deadline.
   */
  stopReading(reason: CordonError): void {
    this.readingStopped = reason;
    for (const reader of this.readers) {
      reader.abort(reason);
    }
  }

  /** Aborts every running call; the reason is what their clients receive. */
  abortAll(reason: CordonError): void {
    for (const controller of this.active) {
      controller.abort(reason);
    }
  }
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
    const scope = openStreamingCall(method, call, logger, tracker);
    if (scope !== undefined) {
      finishStreamingCall(call, scope, tracker, handler(call.request, scope.context));
    }
  };
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
    if (method.requestStream && !method.responseStream) {
      throw new TypeError(
        `${method.path} is client-streaming, which the service kit does not serve`,
      );
    }
    const methodName = method.path.slice(1);
    if (method.requestStream) {
      implementation[name] = adaptBidiStream(
        methodName,
        handler as BidiStreamHandler<unknown, unknown>,
        logger,
        tracker,
      );
    } else if (method.responseStream) {
      implementation[name] = adaptServerStream(
        methodName,
        handler as ServerStreamHandler<unknown, unknown>,
        logger,
        tracker,
      );
    } else {
      implementation[name] = adaptUnary(
        methodName,
        handler as UnaryHandler<unknown, unknown>,
        logger,
        tracker,
      );
    }
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

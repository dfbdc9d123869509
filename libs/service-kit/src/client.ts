import {
  makeGenericClientConstructor,
  Metadata,
  type CallOptions,
  type Client,
  type ClientUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import { bearerTokenInterceptor, channelCredentials, meshCredentials } from './mesh-credentials.js';
import type { ServiceDefinition } from './rpc.js';

export interface ServiceClientOptions {
  /** Largest message either way. Default 16 MiB. */
  maxMessageBytes?: number;
  /** Interval of keepalive pings while calls are open. Default 30 s. */
  keepaliveTimeMs?: number;
}

/**
 * Creates a client for another Cordon service. The constructor is made at
 * call time, after telemetry started, so OpenTelemetry's patched grpc-js
 * wraps it and every call carries the caller's trace context. Inside a
 * service started by runService, the client uses the mesh's TLS files and
 * sends the service's own token on every call that carries none.
 */
// The type parameter names the ts-proto client interface the caller expects;
// grpc-js builds the methods at run time, so nothing can infer it.
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
export function createServiceClient<C extends Client>(
  definition: ServiceDefinition,
  address: string,
  options: ServiceClientOptions = {},
): C {
  const maxMessageBytes = options.maxMessageBytes ?? 16 * 1024 ** 2;
  const Constructor = makeGenericClientConstructor(definition, 'cordon');
  const { identity, tls } = meshCredentials();
  return new Constructor(address, channelCredentials(tls), {
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
    'grpc.keepalive_time_ms': options.keepaliveTimeMs ?? 30_000,
    interceptors: identity === undefined ? [] : [bearerTokenInterceptor(identity)],
  }) as unknown as C;
}

type UnaryMethod<Request, Response> = (
  request: Request,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Response) => void,
) => ClientUnaryCall;

/** Calls a unary method with a deadline and returns its response as a promise. */
export function callUnary<Request, Response>(
  method: UnaryMethod<Request, Response>,
  request: Request,
  options: { deadlineMs: number; metadata?: Metadata },
): Promise<Response> {
  return new Promise((resolve, reject) => {
    method(
      request,
      options.metadata ?? new Metadata(),
      { deadline: Date.now() + options.deadlineMs },
      (error, response) => {
        if (error === null) {
          resolve(response);
        } else {
          reject(error);
        }
      },
    );
  });
}

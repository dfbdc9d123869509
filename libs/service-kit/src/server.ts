import {
  loadFileDescriptorSetFromBuffer,
  loadSync,
  type PackageDefinition,
} from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import {
  Metadata,
  ResponderBuilder,
  Server,
  type ServerCredentials,
  ServerInterceptingCall,
  status,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import type { Logger } from 'pino';
import { descriptorSet } from '@cordon/proto';
import { authInterceptor, type AuthDenial, type MethodPolicy } from './auth-interceptor.js';
import { CordonError } from './errors.js';
import { serverCredentials, type TlsFiles } from './mesh-credentials.js';
import {
  adaptService,
  boundRequestSizes,
  CallTracker,
  type ServiceDefinition,
  type ServiceHandlers,
} from './rpc.js';
import type { TokenKey } from './token-key.js';
import type { CallerRole } from './tokens.js';

/** Who may call a service's methods, how large their requests may be, and where denials go. */
export interface ServiceAccess<D extends ServiceDefinition> {
  /** Roles whose token may call each method; every method must be listed. */
  readonly roles: { readonly [K in keyof D]: readonly CallerRole[] };
  /** Largest encoded request per method; methods not listed get the server-wide maximum. */
  readonly maxRequestBytes?: { readonly [K in keyof D]?: number };
  /** Records a call the auth interceptor rejected; must not throw or block. */
  readonly onAuthDenied?: (denial: AuthDenial) => void;
}

/** A gRPC service definition with its async handlers and access rules. */
export interface ServiceRegistration {
  readonly definition: ServiceDefinition;
  readonly handlers: ServiceHandlers<ServiceDefinition>;
  readonly access: ServiceAccess<ServiceDefinition>;
}

/** Pairs a ts-proto service definition with handlers and access rules checked against it. */
export function defineService<D extends ServiceDefinition>(
  definition: D,
  handlers: ServiceHandlers<D>,
  access: ServiceAccess<D>,
): ServiceRegistration {
  return { definition, handlers, access };
}

export interface ServerOptions {
  /** Listen address as host:port; port 0 picks a free port. */
  address: string;
  logger: Logger;
  services: readonly ServiceRegistration[];
  /** Largest request message accepted. Default 16 MiB. */
  maxReceiveMessageBytes: number;
  /** Largest response message sent. Default 16 MiB. */
  maxSendMessageBytes: number;
  /** Interval of HTTP/2 keepalive pings to idle clients. Default 30 s. */
  keepaliveTimeMs: number;
  /** How long a keepalive ping may go unanswered before the connection is closed. Default 10 s. */
  keepaliveTimeoutMs: number;
  /** How long in-flight calls may run on after shutdown starts. Default 10 s. */
  shutdownDrainMs: number;
  /** The key every call's bearer token must be signed with. */
  tokenKey: TokenKey;
  /** Mutual TLS files; undefined serves plaintext. */
  tls?: TlsFiles | undefined;
  /**
   * Facts every health check returns as trailing metadata, such as what a
   * service's isolation lacks; grpc.health.v1 has no field for text.
   * Keys are lower-case metadata names, values printable ASCII.
   */
  healthDetails?: HealthDetails;
}

const HEALTH_METHOD_PREFIX = '/grpc.health.v1.Health/';

/** Adds the health details to the trailers of every health check. */
/**
 * Facts for health-check trailers by metadata name: a fixed text, or a
 * function read at each check for facts that change, such as a pool's depth.
 */
export type HealthDetails = Readonly<Record<string, string | (() => string)>>;

function healthDetailsInterceptor(details: HealthDetails): ServerInterceptor {
  return (method, call) => {
    if (!method.path.startsWith(HEALTH_METHOD_PREFIX)) {
      return new ServerInterceptingCall(call);
    }
    const responder = new ResponderBuilder()
      .withSendStatus((statusObject, next) => {
        const metadata = statusObject.metadata ?? new Metadata();
        for (const [key, value] of Object.entries(details)) {
          metadata.set(key, typeof value === 'function' ? value() : value);
        }
        next({ ...statusObject, metadata });
      })
      .build();
    return new ServerInterceptingCall(call, responder);
  };
}

/**
 * Shutdown runs once through these states: serving, then draining (no new
 * calls, in-flight calls finish), then cancelling (calls past the drain
 * deadline are aborted), then stopped.
 */
export type ServerState = 'serving' | 'draining' | 'cancelling' | 'stopped';

export interface RunningServer {
  /** The bound port, useful when the address asked for port 0. */
  readonly port: number;
  readonly state: ServerState;
  /** Sets every service's health status; the overall status follows. */
  setServing(serving: boolean): void;
  /**
   * Stops the server: marks it NOT_SERVING, refuses new calls, lets calls
   * in flight run until the drain deadline, then aborts them.
   */
  shutdown(): Promise<void>;
}

/** Time aborted calls get to send their status and close before connections are cut. */
const CANCEL_GRACE_MS = 2_000;

/** Returns "cordon.v1.ExecutorService" for "/cordon.v1.ExecutorService/Execute". */
function serviceNameOf(definition: ServiceDefinition): string {
  const first = Object.values(definition)[0];
  if (first === undefined) {
    throw new TypeError('a service definition has no methods');
  }
  return first.path.split('/')[1] ?? first.path;
}

function reflectionPackage(): PackageDefinition {
  return {
    ...loadFileDescriptorSetFromBuffer(descriptorSet),
    ...loadSync(healthProtoPath),
  };
}

/** Maps each method path ("/cordon.v1.MemoryService/Put") to who may call it. */
function methodPolicies(services: readonly ServiceRegistration[]): Map<string, MethodPolicy> {
  const policies = new Map<string, MethodPolicy>();
  for (const { definition, access } of services) {
    for (const [name, method] of Object.entries(definition)) {
      const roles = access.roles[name];
      if (roles === undefined) {
        throw new TypeError(`no roles are declared for ${method.path}`);
      }
      policies.set(method.path, {
        roles,
        ...(access.onAuthDenied === undefined ? {} : { onDenied: access.onAuthDenied }),
      });
    }
  }
  return policies;
}

function bind(server: Server, address: string, credentials: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (error, port) => {
      if (error === null) {
        resolve(port);
      } else {
        reject(new Error(`could not listen on ${address}: ${error.message}`, { cause: error }));
      }
    });
  });
}

function waitOrTimeout(promise: Promise<void>, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    void promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Starts a grpc-js server with health, reflection and graceful shutdown. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { logger } = options;
  const tracker = new CallTracker();
  const server = new Server({
    'grpc.max_receive_message_length': options.maxReceiveMessageBytes,
    'grpc.max_send_message_length': options.maxSendMessageBytes,
    'grpc.keepalive_time_ms': options.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': options.keepaliveTimeoutMs,
    'grpc.keepalive_permit_without_calls': 1,
    interceptors: [
      authInterceptor(methodPolicies(options.services), options.tokenKey, logger),
      ...(options.healthDetails === undefined
        ? []
        : [healthDetailsInterceptor(options.healthDetails)]),
    ],
  });

  const serviceNames = options.services.map((registration) =>
    serviceNameOf(registration.definition),
  );
  for (const registration of options.services) {
    server.addService(
      boundRequestSizes(registration.definition, registration.access.maxRequestBytes ?? {}),
      adaptService(registration.definition, registration.handlers, logger, tracker),
    );
  }

  const health = new HealthImplementation();
  health.addToServer(server);
  new ReflectionService(reflectionPackage(), {
    services: [...serviceNames, 'grpc.health.v1.Health'],
  }).addToServer(server);

  const setServing = (serving: boolean): void => {
    for (const name of ['', ...serviceNames]) {
      health.setStatus(name, serving ? 'SERVING' : 'NOT_SERVING');
    }
  };

  const port = await bind(server, options.address, serverCredentials(options.tls));
  setServing(true);

  let state: ServerState = 'serving';
  let stopped: Promise<void> | undefined;

  const stop = async (): Promise<void> => {
    state = 'draining';
    setServing(false);
    logger.info({ in_flight: tracker.size, drain_ms: options.shutdownDrainMs }, 'server draining');
    const closed = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    tracker.stopReading(
      new CordonError(
        status.UNAVAILABLE,
        'the server is shutting down; open a new stream to send the rest',
      ),
    );

    const drained = await waitOrTimeout(tracker.whenIdle(), options.shutdownDrainMs);
    if (!drained) {
      state = 'cancelling';
      logger.warn({ in_flight: tracker.size }, 'drain deadline passed; cancelling calls in flight');
      tracker.abortAll(
        new CordonError(
          status.UNAVAILABLE,
          'the server shut down before the call finished; try again',
        ),
      );
    }

    // Aborted calls send a status and then their connections close
    // by themselves; forcing them at once could cut that status off.
    if (!(await waitOrTimeout(closed, CANCEL_GRACE_MS))) {
      logger.warn({ in_flight: tracker.size }, 'connections still open at shutdown; closing them');
      server.forceShutdown();
    }
    state = 'stopped';
    logger.info('server stopped');
  };

  return {
    port,
    get state() {
      return state;
    },
    setServing,
    shutdown: () => (stopped ??= stop()),
  };
}

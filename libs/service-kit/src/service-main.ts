import type { Logger } from 'pino';
import { ConfigError, readConfig, type ConfigSpec, type ConfigValues } from './config.js';
import { addressVariable, kitConfigSpec, type KitConfig, type ServiceName } from './kit-options.js';
import { createLogger, routeGrpcLogs } from './logger.js';
import { ServiceIdentity, setMeshCredentials } from './mesh-credentials.js';
import { loadMeshSecurity, type MeshSecurity } from './mesh-security.js';
import {
  startServer,
  type HealthDetails,
  type RunningServer,
  type ServiceRegistration,
} from './server.js';
import { startTelemetry, type Telemetry } from './telemetry.js';

/** Exit code when configuration is invalid, as for a command-line usage error. */
export const EXIT_CONFIG_ERROR = 2;
/** Exit code when the service could not start for any other reason. */
export const EXIT_START_FAILED = 1;

export interface ServiceContext<S extends ConfigSpec> {
  readonly config: ConfigValues<S>;
  readonly kit: KitConfig;
  readonly logger: Logger;
}

/** Result of a service's factory: its gRPC services and how to release its resources. */
export interface ServiceInstance {
  readonly services: readonly ServiceRegistration[];
  /** Facts every health check returns as trailing metadata; see ServerOptions.healthDetails. */
  readonly healthDetails?: HealthDetails;
  /** Called once the server listens, e.g. to report health from a dependency check. */
  onStarted?(server: RunningServer): void;
  /** Called after the server stopped, to close stores and connections. */
  close?(): Promise<void>;
}

export interface ServiceMainOptions<S extends ConfigSpec> {
  name: ServiceName;
  /** The service's own `CORDON_*` variables. */
  config: S;
  create(context: ServiceContext<S>): Promise<ServiceInstance>;
}

/**
 * Runs one service as a process: validates configuration (exit 2 with one
 * line on stderr when invalid, also when the service's factory throws a
 * ConfigError), starts telemetry and the server, and on
 * SIGTERM or SIGINT drains and exits 0. A second signal skips the drain.
 */
export async function runService<S extends ConfigSpec>(
  options: ServiceMainOptions<S>,
): Promise<void> {
  let kit: KitConfig;
  let config: ConfigValues<S>;
  let security: MeshSecurity;
  try {
    kit = readConfig(kitConfigSpec(options.name));
    config = readConfig(options.config);
    security = loadMeshSecurity(kit, addressVariable(options.name));
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`cordon-${options.name}: ${error.message}\n`);
      process.exit(EXIT_CONFIG_ERROR);
    }
    throw error;
  }

  const logger = createLogger({ service: options.name, level: kit.logLevel });
  routeGrpcLogs(logger);
  const telemetry = startTelemetry({
    serviceName: `cordon-${options.name}`,
    otlpEndpoint: kit.otlpEndpoint,
    traceFile: kit.traceFile,
  });
  if (!telemetry.grpcInstrumented) {
    logger.warn(
      'gRPC calls carry no trace context: start node with --import @cordon/service-kit/register',
    );
  }

  logSecurity(logger, kit, security);
  const identity = await ServiceIdentity.start(security.tokenKey, options.name);
  setMeshCredentials({ identity, tls: security.tls });

  let instance: ServiceInstance;
  let server: RunningServer;
  try {
    instance = await options.create({ config, kit, logger });
    server = await startServer({
      ...kit,
      tokenKey: security.tokenKey,
      tls: security.tls,
      logger,
      services: instance.services,
      ...(instance.healthDetails === undefined ? {} : { healthDetails: instance.healthDetails }),
    });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`cordon-${options.name}: ${error.message}\n`);
      await telemetry.shutdown();
      process.exit(EXIT_CONFIG_ERROR);
    }
    logger.fatal({ err: error }, 'service failed to start');
    await telemetry.shutdown();
    process.exit(EXIT_START_FAILED);
  }

  logger.info({ address: kit.address, port: server.port, pid: process.pid }, 'service started');
  instance.onStarted?.(server);
  handleSignals(logger, server, instance, telemetry);
}

function logSecurity(logger: Logger, kit: KitConfig, security: MeshSecurity): void {
  if (security.createdKeyFile) {
    logger.warn(
      { token_key_file: security.tokenKey.path },
      'created a new token signing key; admins mint tokens with it, and every service of the mesh must use the same file',
    );
  }
  logger.info(
    {
      token_key_file: security.tokenKey.path,
      token_algorithm: security.tokenKey.algorithm,
      tls: security.tls === undefined ? 'off' : 'mutual',
      address: kit.address,
    },
    security.tls === undefined
      ? 'TLS is off: tokens travel in plaintext, so listen on loopback only'
      : 'mutual TLS on: clients need a certificate from CORDON_TLS_CA',
  );
}

function handleSignals(
  logger: Logger,
  server: RunningServer,
  instance: ServiceInstance,
  telemetry: Telemetry,
): void {
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal; exiting without waiting for calls in flight');
      process.exit(0);
    }
    logger.info({ signal }, 'shutdown requested');
    void shutDown(logger, server, instance, telemetry);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

async function shutDown(
  logger: Logger,
  server: RunningServer,
  instance: ServiceInstance,
  telemetry: Telemetry,
): Promise<void> {
  let exitCode = 0;
  try {
    await server.shutdown();
    await instance.close?.();
  } catch (error) {
    logger.error({ err: error }, 'shutdown failed');
    exitCode = 1;
  }
  await telemetry.shutdown().catch((error: unknown) => {
    logger.warn({ err: error }, 'telemetry did not flush at shutdown');
  });
  process.exit(exitCode);
}

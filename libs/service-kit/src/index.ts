export {
  addressVar,
  booleanVar,
  bytesVar,
  ConfigError,
  durationMsVar,
  enumVar,
  formatBytes,
  integerVar,
  parseBytes,
  parseDurationMs,
  readConfig,
  stringVar,
  type ConfigSpec,
  type ConfigValues,
  type VarSpec,
} from './config.js';
export {
  CordonError,
  ERROR_DETAILS_METADATA_KEY,
  findUnreachableCause,
  readErrorDetails,
  toBoundaryStatus,
  type BoundaryStatus,
  type CordonErrorOptions,
} from './errors.js';
export {
  addressVariable,
  DEFAULT_PORTS,
  kitConfigSpec,
  type KitConfig,
  type ServiceName,
} from './kit-options.js';
export {
  createLogger,
  LOG_LEVELS,
  REDACTED_PATHS,
  routeGrpcLogs,
  type Logger,
  type LoggerOptions,
} from './logger.js';
export { defaultStatePath } from './state-path.js';
export { codeSha256, codeSha256FromHashes, type HashedFile } from './code-hash.js';
export { callUnary, createServiceClient, type ServiceClientOptions } from './client.js';
export {
  type CallContext,
  type ServerStreamHandler,
  type ServiceDefinition,
  type ServiceHandlers,
  type UnaryHandler,
} from './rpc.js';
export {
  defineService,
  startServer,
  type RunningServer,
  type ServerOptions,
  type ServerState,
  type ServiceRegistration,
} from './server.js';
export {
  EXIT_CONFIG_ERROR,
  EXIT_START_FAILED,
  runService,
  type ServiceContext,
  type ServiceInstance,
  type ServiceMainOptions,
} from './service-main.js';
export {
  activeTraceId,
  startTelemetry,
  type Telemetry,
  type TelemetryOptions,
} from './telemetry.js';

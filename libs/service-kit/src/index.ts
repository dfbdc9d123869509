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
export { AppendError, isRetryableAppendError } from './append-error.js';
export { type AppendStreamClient } from './append-stream-call.js';
export { AuditAppender, type AuditAppenderOptions } from './audit-appender.js';
export {
  AUDITING_OFF,
  GrpcAuditSink,
  toAppendRequest,
  type AuditEventInput,
  type AuditSink,
} from './audit-sink.js';
export { callUnary, createServiceClient, type ServiceClientOptions } from './client.js';
export {
  AUTH_DENIED_ACTION,
  authInterceptor,
  denialAttributes,
  verifiedCallerOf,
  type AuthDenial,
  type DenialReason,
  type MethodPolicy,
  type VerifiedCaller,
} from './auth-interceptor.js';
export {
  ACTING_FOR_METADATA_KEY,
  AUTHORIZATION_METADATA_KEY,
  channelCredentials,
  meshCredentials,
  readTlsFiles,
  serverCredentials,
  ServiceIdentity,
  setMeshCredentials,
  type MeshCredentials,
  type TlsFiles,
} from './mesh-credentials.js';
export { isLoopbackHost, loadMeshSecurity, type MeshSecurity } from './mesh-security.js';
export {
  createRunLimiter,
  RATE_LIMIT_KEY_PREFIX,
  runLimitConfigSpec,
  type RunLease,
  type RunLimitConfig,
  type RunLimiter,
} from './rate-limit.js';
export {
  createTokenKeyFile,
  MIN_SECRET_BYTES,
  readTokenKey,
  TOKEN_KEY_FILE_VARIABLE,
  type TokenKey,
} from './token-key.js';
export {
  ACTING_FOR_TOKEN_TYPE,
  ACTING_SERVICE_CLAIM,
  BEARER_TOKEN_TYPE,
  CALLER_ROLES,
  createToken,
  MAX_TOKEN_TTL_MS,
  ROLE_CLAIM,
  RUN_ID_CLAIM,
  signActingForToken,
  signBearerToken,
  SUBJECT_PATTERN,
  SUBJECT_RULE,
  TOKEN_ISSUER,
  TokenRejected,
  verifyActingForToken,
  verifyBearerToken,
  type ActingForClaims,
  type CallerRole,
  type CreateTokenOptions,
  type TokenClaims,
  type TokenFailure,
} from './tokens.js';
export {
  type BidiStreamHandler,
  type CallContext,
  type ServerStreamHandler,
  type ServiceDefinition,
  type ServiceHandlers,
  type UnaryHandler,
} from './rpc.js';
export {
  defineService,
  startServer,
  type HealthDetails,
  type RunningServer,
  type ServerOptions,
  type ServerState,
  type ServiceAccess,
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

export {
  createCordonClient,
  type CordonClient,
  type ExecuteInput,
  type ServiceHealth,
} from './cordon-client.js';
export {
  CordonClientError,
  ERROR_DETAILS_METADATA_KEY,
  type CordonClientErrorOptions,
  type ServiceName,
} from './client-error.js';
export {
  defaultTokenFile,
  DEFAULT_DEADLINE_MS,
  DEFAULT_EXECUTE_DEADLINE_MARGIN_MS,
  SERVICE_NAMES,
  STANDARD_PORTS,
  splitAddress,
  type CordonClientOptions,
  type PemSource,
  type RetryOptions,
  type TlsOptions,
} from './client-options.js';
export { type CallOptionsInput } from './calls.js';
export { Execution, type ExecutionEvent, type ExecutionResult } from './execution.js';
export { SARIF_SCHEMA_URI, toSarif, type SarifLog } from './sarif.js';

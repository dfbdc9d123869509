import { type Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { commonV1 } from '@cordon/proto';

/** Trailing metadata entry in which Cordon services send a serialized `cordon.v1.ErrorDetails`. */
export const ERROR_DETAILS_METADATA_KEY = 'cordon-error-details-bin';

/** A service of the mesh. */
export type ServiceName = 'executor' | 'scanner' | 'memory' | 'audit';

export interface CordonClientErrorOptions {
  details?: commonV1.ErrorDetails | undefined;
  service?: ServiceName | undefined;
  /** Method name as in the proto, such as "Execute". */
  method?: string | undefined;
  address?: string | undefined;
  cause?: unknown;
}

/**
 * The one error every client call rejects with: the gRPC status code, the
 * server's message as sent, and the `ErrorDetails` the server attached.
 */
export class CordonClientError extends Error {
  readonly code: status;
  readonly details: commonV1.ErrorDetails | undefined;
  readonly service: ServiceName | undefined;
  readonly method: string | undefined;
  readonly address: string | undefined;

  constructor(code: status, message: string, options: CordonClientErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = 'CordonClientError';
    this.code = code;
    this.details = options.details;
    this.service = options.service;
    this.method = options.method;
    this.address = options.address;
  }

  /** Name of the status code, such as "UNAVAILABLE". */
  get codeName(): string {
    return status[this.code];
  }

  /**
   * True when the call never reached a server: nothing listens at the
   * address, the connection was refused or broke before a response.
   */
  get unreachable(): boolean {
    return this.code === status.UNAVAILABLE && CONNECTION_FAILURE.test(this.message);
  }
}

// grpc-js's own messages when no server answered, as opposed to a server
// that replied UNAVAILABLE itself (such as an audit service that is down).
const CONNECTION_FAILURE =
  /^(No connection established|Connection dropped|Failed to connect|failed to connect|connect ECONNREFUSED|read ECONNRESET|Name resolution failed)/;

function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as Partial<ServiceError>).code === 'number';
}

function readDetails(metadata: Metadata | undefined): commonV1.ErrorDetails | undefined {
  const value = metadata?.get(ERROR_DETAILS_METADATA_KEY)[0];
  if (!(value instanceof Buffer)) {
    return undefined;
  }
  try {
    return commonV1.ErrorDetails.decode(value);
  } catch {
    // Details that do not decode are dropped; the status message still says what failed.
    return undefined;
  }
}

export interface CallSite {
  service: ServiceName;
  method: string;
  address: string;
}

/** Converts whatever a grpc-js call failed with into a CordonClientError. */
export function toClientError(error: unknown, site: CallSite): CordonClientError {
  if (error instanceof CordonClientError) {
    return error;
  }
  if (!isServiceError(error)) {
    const message = error instanceof Error ? error.message : String(error);
    return new CordonClientError(status.UNKNOWN, message, { ...site, cause: error });
  }
  return new CordonClientError(error.code, error.details, {
    ...site,
    details: readDetails(error.metadata),
    cause: error,
  });
}

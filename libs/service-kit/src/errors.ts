import { Metadata, status, type StatusObject } from '@grpc/grpc-js';
import { commonV1 } from '@cordon/proto';

/** Trailing metadata key that carries a serialized `cordon.v1.ErrorDetails`. */
export const ERROR_DETAILS_METADATA_KEY = 'cordon-error-details-bin';

export interface CordonErrorOptions {
  /** Machine-readable details sent to the client beside the message. */
  details?: Partial<commonV1.ErrorDetails>;
  /** The underlying failure; logged, never sent to the client. */
  cause?: unknown;
}

/**
 * The one error type that crosses the RPC boundary: a gRPC status code and a
 * message that is safe to show an agent. The cause stays on the server.
 */
export class CordonError extends Error {
  readonly code: status;
  readonly details: commonV1.ErrorDetails | undefined;

  constructor(code: status, message: string, options: CordonErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = 'CordonError';
    this.code = code;
    this.details =
      options.details === undefined
        ? undefined
        : commonV1.ErrorDetails.fromPartial(options.details);
  }

  static invalidArgument(field: string, description: string): CordonError {
    return new CordonError(status.INVALID_ARGUMENT, `${field}: ${description}`, {
      details: { fieldViolations: [{ field, description }] },
    });
  }
}

/** Error codes of Node.js and its drivers that mean a dependency is not reachable. */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);

/**
 * Walks the `cause` chain and returns the first error code of Node.js or a
 * driver (Docker socket, Redis) that means a dependency is unreachable.
 */
export function findUnreachableCause(error: unknown): string | undefined {
  const seen = new Set<unknown>();
  let current: unknown = error;
  while (current instanceof Error && !seen.has(current)) {
    seen.add(current);
    const code = (current as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && UNREACHABLE_CODES.has(code)) {
      return code;
    }
    current = current.cause;
  }
  return undefined;
}

/** Status the server sends for an error, and whether the error was expected. */
export interface BoundaryStatus {
  status: Partial<StatusObject> & { code: status; details: string };
  /** False for errors the service did not anticipate; those are logged at error with their stack. */
  expected: boolean;
}

/**
 * Maps any error thrown by a handler to the status the client receives.
 * Only a CordonError's own message leaves the server. Everything else
 * becomes a generic INTERNAL (or UNAVAILABLE when a dependency is down),
 * because a sandbox failure's message can contain host paths or secrets.
 */
export function toBoundaryStatus(error: unknown, traceId: string | undefined): BoundaryStatus {
  if (error instanceof CordonError) {
    const metadata = new Metadata();
    if (error.details !== undefined) {
      metadata.set(
        ERROR_DETAILS_METADATA_KEY,
        Buffer.from(commonV1.ErrorDetails.encode(error.details).finish()),
      );
    }
    return { status: { code: error.code, details: error.message, metadata }, expected: true };
  }

  const reference = traceId === undefined ? '' : ` (trace id ${traceId})`;
  const unreachable = findUnreachableCause(error);
  if (unreachable !== undefined) {
    return {
      status: {
        code: status.UNAVAILABLE,
        details: `a service this call depends on is unavailable${reference}; try again later`,
      },
      expected: false,
    };
  }
  return {
    status: {
      code: status.INTERNAL,
      details: `internal error${reference}; the server log has the details`,
    },
    expected: false,
  };
}

/** Reads `cordon.v1.ErrorDetails` from a failed call's trailing metadata. */
export function readErrorDetails(
  metadata: Metadata | undefined,
): commonV1.ErrorDetails | undefined {
  const value = metadata?.get(ERROR_DETAILS_METADATA_KEY)[0];
  if (!(value instanceof Buffer)) {
    return undefined;
  }
  return commonV1.ErrorDetails.decode(value);
}

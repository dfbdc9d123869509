import { status } from '@grpc/grpc-js';
import { CordonError, findUnreachableCause } from '@cordon/service-kit';

/**
 * The store rejected a key outside the calling agent's memory. With Redis,
 * the agent's ACL user stopped a wrongly built key, so the service has a
 * bug. The service records the attempt as a denied access.
 */
export class StoreAccessDenied extends CordonError {
  constructor(cause: unknown) {
    super(
      status.PERMISSION_DENIED,
      "the memory store denied access to a key outside this agent's memory; the attempt was recorded",
      { cause },
    );
    this.name = 'StoreAccessDenied';
  }
}

export function storeUnavailable(cause: unknown): CordonError {
  return new CordonError(status.UNAVAILABLE, 'the memory store is unavailable; try again shortly', {
    cause,
  });
}

/** ioredis messages of a command that failed because the connection is down or too slow. */
const CONNECTION_MESSAGES = [
  'Connection is closed.',
  "Stream isn't writeable",
  'Command timed out',
  'Reached the max retries per request limit',
  'connect ETIMEDOUT',
];

/** Redis error replies of a server that is up but cannot serve now (loading, replica, stuck script, restarted). */
const TRANSIENT_REPLIES = [
  'LOADING',
  'READONLY',
  'MASTERDOWN',
  'BUSY',
  'TRYAGAIN',
  'CLUSTERDOWN',
  'WRONGPASS',
  'NOAUTH',
];

export type RedisFailure = 'unavailable' | 'denied' | 'out-of-memory' | 'unexpected';

/** Classifies a Redis or ioredis failure by walking its `cause` chain. */
export function classifyRedisError(error: unknown): RedisFailure {
  if (findUnreachableCause(error) !== undefined) {
    return 'unavailable';
  }
  const seen = new Set<unknown>();
  let current: unknown = error;
  while (current instanceof Error && !seen.has(current)) {
    seen.add(current);
    const { message } = current;
    if (current.name === 'MaxRetriesPerRequestError') return 'unavailable';
    if (CONNECTION_MESSAGES.some((text) => message.startsWith(text))) return 'unavailable';
    if (TRANSIENT_REPLIES.some((code) => message.startsWith(`${code} `))) return 'unavailable';
    // Inside a script Redis reports an ACL refusal as an ERR, not as NOPERM.
    if (message.startsWith('NOPERM') || message.includes("The user executing the script can't")) {
      return 'denied';
    }
    if (message.startsWith('OOM ')) return 'out-of-memory';
    current = current.cause;
  }
  return 'unexpected';
}

/**
 * Turns a Redis failure into the error the client gets. Unexpected
 * failures stay as they are, so the kit logs them with their stack and
 * sends a generic INTERNAL.
 */
export function toStoreError(error: unknown): unknown {
  if (error instanceof CordonError) {
    return error;
  }
  switch (classifyRedisError(error)) {
    case 'unavailable':
      return storeUnavailable(error);
    case 'denied':
      return new StoreAccessDenied(error);
    case 'out-of-memory':
      return new CordonError(
        status.RESOURCE_EXHAUSTED,
        'the memory store is full (Redis reached its maxmemory); delete keys or ask the operator to raise maxmemory',
        { cause: error },
      );
    case 'unexpected':
      return error;
  }
}

import { Metadata, status } from '@grpc/grpc-js';

/** A failed append, with the status the stream ended with or the appender's own. */
export class AppendError extends Error {
  readonly code: status;
  readonly details: string;
  readonly metadata: Metadata;

  constructor(code: status, details: string, metadata = new Metadata()) {
    super(`${status[code]}: ${details}`);
    this.name = 'AppendError';
    this.code = code;
    this.details = details;
    this.metadata = metadata;
  }
}

/** Statuses the audit service ends a stream with because of its oldest unacknowledged event alone. */
export const EVENT_REJECTIONS: ReadonlySet<number> = new Set([
  status.INVALID_ARGUMENT,
  status.ALREADY_EXISTS,
]);

/** Statuses a new stream would get again, so every waiting event fails at once. */
export const STREAM_REJECTIONS: ReadonlySet<number> = new Set([
  status.PERMISSION_DENIED,
  status.UNIMPLEMENTED,
]);

/** Returns whether appending the same event again may succeed, which it cannot when the service rejected the event or the caller. */
export function isRetryableAppendError(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' && !EVENT_REJECTIONS.has(code) && !STREAM_REJECTIONS.has(code);
}

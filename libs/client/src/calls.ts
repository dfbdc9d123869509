import { setTimeout as sleep } from 'node:timers/promises';
import {
  Metadata,
  status,
  type CallOptions,
  type ClientReadableStream,
  type ClientUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import { CordonClientError, toClientError, type CallSite } from './client-error.js';
import type { ResolvedOptions } from './client-options.js';

/** Per-call options of every client method. */
export interface CallOptionsInput {
  /** Deadline of this call; overrides the client's default. */
  deadlineMs?: number;
  /** Cancels the call; it then rejects with CANCELLED. */
  signal?: AbortSignal;
}

export type UnaryMethod<Request, Response> = (
  request: Request,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Response) => void,
) => ClientUnaryCall;

export type StreamMethod<Request, Response> = (
  request: Request,
  metadata: Metadata,
  options: Partial<CallOptions>,
) => ClientReadableStream<Response>;

/** Builds the metadata every call carries: the token and the configured extras. */
export function callMetadata(options: ResolvedOptions): Metadata {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(options.metadata)) {
    metadata.set(key, value);
  }
  if (options.token !== undefined) {
    metadata.set('authorization', `Bearer ${options.token}`);
  }
  return metadata;
}

export function cancelledError(site: CallSite): CordonClientError {
  return new CordonClientError(status.CANCELLED, 'the call was cancelled by the client', site);
}

/** Full-jitter exponential backoff: a random wait up to initial × 2^(attempt-1), capped. */
export function backoffMs(attempt: number, retry: ResolvedOptions['retry']): number {
  const ceiling = Math.min(retry.maxBackoffMs, retry.initialBackoffMs * 2 ** (attempt - 1));
  return Math.random() * ceiling;
}

/**
 * Runs one attempt after another while the call fails UNAVAILABLE and
 * attempts remain. Only idempotent reads come through here.
 */
export async function withRetry<T>(
  options: ResolvedOptions,
  signal: AbortSignal | undefined,
  attempt: () => Promise<T>,
  retryable: (error: CordonClientError) => boolean = () => true,
): Promise<T> {
  for (let number = 1; ; number += 1) {
    try {
      return await attempt();
    } catch (error) {
      const failure = error as CordonClientError;
      const last = number >= options.retry.maxAttempts;
      if (last || failure.code !== status.UNAVAILABLE || !retryable(failure) || signal?.aborted) {
        throw failure;
      }
    }
    await sleep(
      backoffMs(number, options.retry),
      undefined,
      signal === undefined ? {} : { signal },
    ).catch(() => undefined);
  }
}

/** Calls a unary method once, with a deadline, the call metadata and cancellation. */
export function callUnaryOnce<Request, Response>(
  method: UnaryMethod<Request, Response>,
  request: Request,
  site: CallSite,
  options: ResolvedOptions,
  call: CallOptionsInput,
): Promise<Response> {
  return new Promise((resolve, reject) => {
    if (call.signal?.aborted === true) {
      reject(cancelledError(site));
      return;
    }
    const deadline = Date.now() + (call.deadlineMs ?? options.deadlineMs);
    const onAbort = (): void => {
      pending.cancel();
    };
    const pending = method(request, callMetadata(options), { deadline }, (error, response) => {
      call.signal?.removeEventListener('abort', onAbort);
      if (error === null) {
        resolve(response);
      } else if (error.code === status.CANCELLED && call.signal?.aborted === true) {
        reject(cancelledError(site));
      } else {
        reject(toClientError(error, site));
      }
    });
    call.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Reads a whole server stream once into an array. */
export function readStreamOnce<Request, Response, Item>(
  method: StreamMethod<Request, Response>,
  request: Request,
  site: CallSite,
  options: ResolvedOptions,
  call: CallOptionsInput,
  pick: (response: Response) => Item | undefined,
  delivered: { count: number },
): Promise<Item[]> {
  return new Promise((resolve, reject) => {
    if (call.signal?.aborted === true) {
      reject(cancelledError(site));
      return;
    }
    const items: Item[] = [];
    const deadline = Date.now() + (call.deadlineMs ?? options.deadlineMs);
    const stream = method(request, callMetadata(options), { deadline });
    const onAbort = (): void => {
      stream.cancel();
    };
    call.signal?.addEventListener('abort', onAbort, { once: true });
    stream.on('data', (response: Response) => {
      const item = pick(response);
      if (item !== undefined) {
        items.push(item);
        delivered.count += 1;
      }
    });
    stream.on('error', (error: ServiceError) => {
      call.signal?.removeEventListener('abort', onAbort);
      reject(call.signal?.aborted === true ? cancelledError(site) : toClientError(error, site));
    });
    stream.on('end', () => {
      call.signal?.removeEventListener('abort', onAbort);
      resolve(items);
    });
  });
}

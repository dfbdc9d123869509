import { setTimeout as sleep } from 'node:timers/promises';
import { status } from '@grpc/grpc-js';
import type { auditV1 } from '@cordon/proto';
import { toClientError, type CallSite } from './client-error.js';
import type { ResolvedOptions } from './client-options.js';
import {
  backoffMs,
  callMetadata,
  cancelledError,
  type CallOptionsInput,
  type StreamMethod,
} from './calls.js';

// A function, so the compiler does not assume the flag is unchanged since the last check.
function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

/**
 * Streams audit records as they arrive, with backpressure. A failure with
 * UNAVAILABLE before the first record is retried; a later one resumes
 * after the last record delivered, so no record is delivered twice.
 */
export async function* streamRecords(
  method: StreamMethod<auditV1.ExportRequest, auditV1.ExportResponse>,
  request: auditV1.ExportRequest,
  site: CallSite,
  options: ResolvedOptions,
  call: CallOptionsInput,
): AsyncGenerator<auditV1.AuditRecord, void, undefined> {
  let next = request;
  for (let attempt = 1; ; attempt += 1) {
    if (call.signal?.aborted === true) {
      throw cancelledError(site);
    }
    const stream = method(next, callMetadata(options), {
      deadline: Date.now() + (call.deadlineMs ?? options.deadlineMs),
    });
    const onAbort = (): void => {
      stream.cancel();
    };
    call.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const response of stream as AsyncIterable<auditV1.ExportResponse>) {
        if (response.record === undefined) continue;
        yield response.record;
        next = { ...next, fromSeq: response.record.seq + 1 };
      }
      return;
    } catch (error) {
      if (isAborted(call.signal)) {
        throw cancelledError(site);
      }
      const failure = toClientError(error, site);
      if (failure.code !== status.UNAVAILABLE || attempt >= options.retry.maxAttempts) {
        throw failure;
      }
    } finally {
      call.signal?.removeEventListener('abort', onAbort);
      stream.cancel();
    }
    await sleep(backoffMs(attempt, options.retry));
  }
}

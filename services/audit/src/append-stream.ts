import type { auditV1 } from '@cordon/proto';
import { CordonError, type CallContext } from '@cordon/service-kit';
import { acknowledge, prepareCallerAppend } from './append-call.js';
import type { PreparedAppend } from './append-request.js';
import type { AuditOptions } from './audit-options.js';
import type { AppendOutcome } from './audit-store.js';
import type { GroupCommit } from './group-commit.js';

/**
 * Events of one stream that may wait for their commit at once. With this
 * many, the stream is not read until the oldest one commits, so HTTP/2
 * flow control slows the writer down.
 */
export const MAX_UNACKED_EVENTS = 128;
/** Bytes of event JSON, files and output those events may hold. A larger event is still taken when no other one waits. */
export const MAX_UNACKED_BYTES = 16 * 1024 ** 2;

type Settled<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };

/** An event handed to the group commit whose response is not sent yet. */
interface Unacked {
  /** Position of its request on the stream, from 0. */
  readonly index: number;
  readonly prepared: PreparedAppend;
  readonly bytes: number;
  readonly outcome: Promise<Settled<AppendOutcome>>;
}

type Step =
  | { readonly kind: 'committed'; readonly outcome: Settled<AppendOutcome> }
  | { readonly kind: 'read'; readonly read: Settled<IteratorResult<auditV1.AppendRequest>> };

export interface AppendStreamParts {
  readonly commit: GroupCommit;
  readonly options: AuditOptions;
}

/** Turns a rejection into a value, so a promise that is no longer awaited never goes unhandled. */
function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  return promise.then(
    (value) => ({ ok: true, value }),
    (error: unknown) => ({ ok: false, error }),
  );
}

function sizeOf(prepared: PreparedAppend): number {
  const filesBytes = prepared.files.reduce((sum, file) => sum + file.content.length, 0);
  const excerptBytes =
    (prepared.excerpt?.stdout.length ?? 0) + (prepared.excerpt?.stderr.length ?? 0);
  return prepared.eventJson.length + filesBytes + excerptBytes;
}

/** Prefixes a CordonError's message with the request it is about, keeping its code and details. */
function aboutRequest(error: unknown, index: number, eventId: string): unknown {
  if (!(error instanceof CordonError)) {
    return error;
  }
  return new CordonError(
    error.code,
    `request ${index} on the stream (event.id ${JSON.stringify(eventId.slice(0, 128))}): ${error.message}`,
    { cause: error, ...(error.details === undefined ? {} : { details: error.details }) },
  );
}

/**
 * Returns the response for a committed event. Throws the error of a failed
 * commit as it is, and ALREADY_EXISTS naming the request.
 */
function respond(
  committed: Unacked,
  outcome: Settled<AppendOutcome>,
  context: CallContext,
): auditV1.AppendResponse {
  if (!outcome.ok) {
    throw outcome.error;
  }
  try {
    return acknowledge(committed.prepared, outcome.value, context.logger);
  } catch (error) {
    throw aboutRequest(error, committed.index, committed.prepared.key.id);
  }
}

/** Waits for the oldest event's commit or the next request, whichever comes first. */
function nextStep(
  oldest: Unacked | undefined,
  nextRead: Promise<Settled<IteratorResult<auditV1.AppendRequest>>> | undefined,
): Promise<Step> {
  const steps: Promise<Step>[] = [];
  // The commit goes first, so that when both are ready the response is sent before reading on.
  if (oldest !== undefined) {
    steps.push(oldest.outcome.then((outcome) => ({ kind: 'committed', outcome })));
  }
  if (nextRead !== undefined) {
    steps.push(nextRead.then((read) => ({ kind: 'read', read })));
  }
  return Promise.race(steps);
}

/**
 * Appends the events of one AppendStream call and yields their responses
 * in request order, each once its batch has committed. Each request goes
 * through the same checks as Append as soon as it is read, and valid ones
 * join the group commit at once, so one stream keeps up to
 * MAX_UNACKED_EVENTS in flight.
 *
 * The stream ends at the first request that fails its checks, an id stored
 * for a different event, a failed commit or a failed read (cancel, expired
 * token, server shutdown). No request is read after it. The responses for
 * the events before it are sent first, and then its error is thrown.
 * An event handed to the group commit stays there whatever happens to the
 * stream, so it commits (or fails) in a whole batch with the others.
 */
export async function* appendStreamed(
  requests: AsyncIterable<auditV1.AppendRequest>,
  context: CallContext,
  parts: AppendStreamParts,
): AsyncGenerator<auditV1.AppendResponse, void, undefined> {
  const reader = requests[Symbol.asyncIterator]();
  const unacked: Unacked[] = [];
  let unackedBytes = 0;
  let nextRead: Promise<Settled<IteratorResult<auditV1.AppendRequest>>> | undefined;
  let reading = true;
  let failure: { readonly error: unknown } | undefined;
  let index = 0;

  try {
    while (reading || unacked.length > 0) {
      const oldest = unacked[0];
      const roomLeft =
        oldest === undefined ||
        (unacked.length < MAX_UNACKED_EVENTS && unackedBytes < MAX_UNACKED_BYTES);
      if (reading && roomLeft) {
        nextRead ??= settle(reader.next());
      }
      const step = await nextStep(oldest, reading && roomLeft ? nextRead : undefined);

      if (step.kind === 'committed') {
        const committed = unacked.shift();
        if (committed !== undefined) {
          unackedBytes -= committed.bytes;
          yield respond(committed, step.outcome, context);
        }
        continue;
      }

      nextRead = undefined;
      const { read } = step;
      if (!read.ok) {
        reading = false;
        failure = { error: read.error };
      } else if (read.value.done === true) {
        reading = false;
      } else {
        const request = read.value.value;
        try {
          // Unlike Append, the stream's trace does not fill an empty trace_id, because it spans many events.
          const prepared = prepareCallerAppend(context, request, parts.options, undefined);
          const bytes = sizeOf(prepared);
          unacked.push({ index, prepared, bytes, outcome: settle(parts.commit.append(prepared)) });
          unackedBytes += bytes;
        } catch (error) {
          reading = false;
          failure = { error: aboutRequest(error, index, request.event?.id ?? '') };
        }
        index += 1;
      }
    }
  } finally {
    // A read still pending ends with the call, and returning the reader now would wait for it.
    if (nextRead === undefined) {
      await reader.return?.();
    }
  }

  if (failure !== undefined) {
    throw failure.error;
  }
}

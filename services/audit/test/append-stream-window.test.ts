import { setImmediate as nextTurn } from 'node:timers/promises';
import { Metadata } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { auditV1 } from '@cordon/proto';
import { createLogger, type CallContext } from '@cordon/service-kit';
import type { PreparedAppend } from '../src/append-request.js';
import { appendStreamed, MAX_UNACKED_BYTES, MAX_UNACKED_EVENTS } from '../src/append-stream.js';
import type { AuditOptions } from '../src/audit-options.js';
import type { AppendOutcome } from '../src/audit-store.js';
import { GroupCommit } from '../src/group-commit.js';
import type { BatchWriter } from '../src/store-writer.js';
import { makeEvent } from './support/audit-harness.js';

const MiB = 1024 ** 2;

const OPTIONS: AuditOptions = {
  databasePath: '/nonexistent/audit.db',
  outputBytes: 64 * 1024,
  maxExcerptBytes: MiB,
  maxFilesBytes: 8 * MiB,
  maxFiles: 1000,
  queryDefaultLimit: 100,
  queryMaxLimit: 1000,
};

/** A batch writer whose commits complete only when the test releases them. */
class HeldWriter implements BatchWriter {
  private held: {
    items: readonly PreparedAppend[];
    resolve: (outcomes: AppendOutcome[]) => void;
  }[] = [];
  private seq = 0;

  write(items: readonly PreparedAppend[]): Promise<AppendOutcome[]> {
    return new Promise((resolve) => this.held.push({ items, resolve }));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Commits every held batch. */
  release(): void {
    for (const { items, resolve } of this.held.splice(0)) {
      resolve(items.map(() => ({ kind: 'stored', seq: (this.seq += 1), hash: 'f'.repeat(64) })));
    }
  }
}

function callContext(): CallContext {
  return {
    method: 'cordon.v1.AuditService/AppendStream',
    metadata: new Metadata(),
    caller: { subject: 'executor', role: 'service', agentId: '', runId: '' },
    deadlineMs: undefined,
    signal: new AbortController().signal,
    logger: createLogger({ service: 'audit-test', level: 'silent' }),
  };
}

/** Requests that count how many the handler has read. */
function countedRequests(
  total: number,
  build: () => auditV1.AppendRequest,
): { requests: AsyncIterable<auditV1.AppendRequest>; read: () => number } {
  let read = 0;
  async function* requests(): AsyncGenerator<auditV1.AppendRequest> {
    for (let index = 0; index < total; index += 1) {
      await Promise.resolve();
      read += 1;
      yield build();
    }
  }
  return { requests: requests(), read: () => read };
}

async function settle(): Promise<void> {
  for (let turn = 0; turn < 20; turn += 1) {
    await nextTurn();
  }
}

describe('AppendStream window', () => {
  it(`stops reading at ${MAX_UNACKED_EVENTS} events waiting for their commit`, async () => {
    const writer = new HeldWriter();
    const commit = new GroupCommit(writer);
    const { requests, read } = countedRequests(1000, () =>
      auditV1.AppendRequest.fromPartial({ event: makeEvent() }),
    );

    const responses = appendStreamed(requests, callContext(), { commit, options: OPTIONS });
    const first = responses.next();
    await settle();
    const readWhileHeld = read();
    writer.release();
    const firstResponse = await first;

    expect(readWhileHeld).toBe(MAX_UNACKED_EVENTS);
    expect(firstResponse.value).toEqual({ seq: 1, hash: 'f'.repeat(64) });
    await responses.return(undefined);
  });

  it('stops reading once the waiting events hold 16 MiB', async () => {
    const writer = new HeldWriter();
    const commit = new GroupCommit(writer);
    const content = Buffer.alloc(5 * MiB, 'x');
    const { requests, read } = countedRequests(10, () =>
      auditV1.AppendRequest.fromPartial({
        event: makeEvent(),
        files: [{ path: 'main.py', content }],
      }),
    );

    const responses = appendStreamed(requests, callContext(), { commit, options: OPTIONS });
    const first = responses.next();
    await settle();
    const readWhileHeld = read();
    writer.release();
    await first;

    expect(MAX_UNACKED_BYTES).toBe(16 * MiB);
    expect(readWhileHeld).toBe(4);
    await responses.return(undefined);
  });
});

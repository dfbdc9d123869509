import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { auditV1 } from '@cordon/proto';
import {
  append,
  cleanUp,
  exportRecords,
  makeEvent,
  makeTempDir,
  openAppendStream,
  startAudit,
  stopService,
  verify,
  type RunningAudit,
} from './support/audit-harness.js';

const WRITERS = 8;
/** Events a stream writer keeps sent and unacknowledged. */
const STREAM_WINDOW = 64;

interface Acknowledged {
  readonly seq: number;
  readonly hash: string;
}

/** Appends in a loop until a call fails, recording every acknowledged event id. */
async function writeUntilFailure(
  audit: RunningAudit,
  acknowledged: Map<string, Acknowledged>,
): Promise<void> {
  for (;;) {
    const event = makeEvent({ id: randomUUID() });
    try {
      const response = await append(audit, { event, stdoutExcerpt: Buffer.from('output\n') });
      acknowledged.set(event.id, response);
    } catch {
      return;
    }
  }
}

afterEach(async () => {
  expect(await cleanUp()).toBe(0);
});

describe('durability', () => {
  it('keeps every acknowledged Append after SIGKILL', async () => {
    const dir = makeTempDir();
    const audit = await startAudit(dir);
    const opened = await audit.waitForLog((line) => line.msg === 'audit store opened');
    const acknowledged = new Map<string, Acknowledged>();

    const writers = Array.from({ length: WRITERS }, () => writeUntilFailure(audit, acknowledged));
    while (acknowledged.size < 300) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    audit.child.kill('SIGKILL');
    await Promise.all(writers);
    expect(await audit.exited).toEqual({ code: null, signal: 'SIGKILL' });

    // NOTE: SIGKILL shows that a record was committed before its Append was
    // acknowledged. That the commit also reached the disk rests on
    // synchronous FULL, checked here from the log, because a test cannot
    // stage a power cut.
    expect(opened['journal_mode']).toBe('wal');
    expect(opened['synchronous']).toBe(2);

    const restarted = await startAudit(dir);
    const stored = new Map(
      (await exportRecords(restarted)).map((record) => [
        record.event!.id,
        { seq: record.seq, hash: record.hash },
      ]),
    );
    const lost = [...acknowledged].filter(([id, ack]) => {
      const found = stored.get(id);
      return found?.seq !== ack.seq || found.hash !== ack.hash;
    });
    expect(lost).toEqual([]);
    expect(stored.size).toBeGreaterThanOrEqual(acknowledged.size);
    const result = await verify(restarted);
    expect(result.ok).toBe(true);
    expect(result.recordsChecked).toBe(stored.size);
  });

  it('keeps acknowledged stream events after SIGKILL', async () => {
    const dir = makeTempDir();
    const audit = await startAudit(dir);
    const stream = openAppendStream(audit);
    const sent: auditV1.AuditEvent[] = [];
    const keepWindowFull = (): void => {
      while (sent.length < stream.responses.length + STREAM_WINDOW) {
        const event = makeEvent({ id: randomUUID() });
        sent.push(event);
        stream.call.write(
          auditV1.AppendRequest.fromPartial({ event, stdoutExcerpt: Buffer.from('output\n') }),
        );
      }
    };
    stream.call.on('data', keepWindowFull);
    keepWindowFull();

    await stream.waitForResponses(1000);
    audit.child.kill('SIGKILL');
    const ended = await stream.ended;
    expect(await audit.exited).toEqual({ code: null, signal: 'SIGKILL' });
    const acknowledged = stream.responses.map((response, index) => ({
      id: sent[index]!.id,
      seq: response.seq,
      hash: response.hash,
    }));

    const restarted = await startAudit(dir);
    const stored = await exportRecords(restarted);
    const storedById = new Map(stored.map((record) => [record.event!.id, record]));
    const lost = acknowledged.filter(({ id, seq, hash }) => {
      const found = storedById.get(id);
      return found?.seq !== seq || found.hash !== hash;
    });
    const result = await verify(restarted);

    expect(ended.code).toBe(status.UNAVAILABLE);
    expect(acknowledged.length).toBeGreaterThanOrEqual(1000);
    expect(lost).toEqual([]);
    // Records are whole and in the order they were sent: a prefix of what the stream carried.
    expect(stored.map((record) => record.event!.id)).toEqual(
      sent.slice(0, stored.length).map((event) => event.id),
    );
    expect(result.ok).toBe(true);
    expect(result.recordsChecked).toBe(stored.length);
  });

  it('batches concurrent Appends and drains on SIGTERM', async () => {
    const audit = await startAudit(makeTempDir());

    const responses = await Promise.all(
      Array.from({ length: 200 }, () => append(audit, { event: makeEvent() })),
    );
    const exit = await stopService(audit);

    expect(exit).toEqual({ code: 0, signal: null });
    expect(new Set(responses.map((response) => response.seq)).size).toBe(200);
    const closed = audit.logs.find((line) => line.msg === 'audit store closed');
    expect(closed?.['events']).toBe(200);
    expect(closed?.['batches']).toBeLessThan(50);
  });
});

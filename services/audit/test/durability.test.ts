import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  append,
  cleanUp,
  exportRecords,
  makeEvent,
  makeTempDir,
  startAudit,
  stopService,
  verify,
  type RunningAudit,
} from './support/audit-harness.js';

const WRITERS = 8;

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

import { setTimeout as sleep } from 'node:timers/promises';
import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { auditV1 } from '@cordon/proto';
import {
  append,
  cleanUp,
  failureOf,
  makeEvent,
  makeTempDir,
  query,
  startAudit,
  type RunningAudit,
} from './support/audit-harness.js';

const { AUDIT_OUTCOME_SUCCESS, AUDIT_OUTCOME_FAILURE, AUDIT_OUTCOME_DENIED } = auditV1.AuditOutcome;
const TRACE_A = '4bf92f3577b34da6a3ce929d0e0e4736';
const TRACE_B = '0af7651916cd43dd8448eb211c80319c';

/** Appends six records: two runs of agent-a, one of agent-b, a denial and a memory write. */
async function appendSample(audit: RunningAudit): Promise<void> {
  const events = [
    makeEvent({ runId: 'run-1', traceId: TRACE_A }),
    makeEvent({ runId: 'run-1', traceId: TRACE_A, action: 'scan.completed', service: 'scanner' }),
    makeEvent({
      runId: 'run-1',
      traceId: TRACE_A,
      action: 'execution.finished',
      outcome: AUDIT_OUTCOME_FAILURE,
    }),
    makeEvent({ runId: 'run-2', agentId: 'agent-b', traceId: TRACE_B }),
    makeEvent({
      runId: '',
      action: 'auth.denied',
      outcome: AUDIT_OUTCOME_DENIED,
      service: 'memory',
    }),
    makeEvent({ runId: '', action: 'memory.put', agentId: 'agent-b', service: 'memory' }),
  ];
  for (const event of events) {
    await append(audit, { event });
  }
}

function seqs(records: auditV1.AuditRecord[]): number[] {
  return records.map((record) => record.seq);
}

afterEach(async () => {
  expect(await cleanUp()).toBe(0);
});

describe('Query', () => {
  it('returns records matching every filter', async () => {
    const audit = await startAudit(makeTempDir());
    await appendSample(audit);

    expect(seqs(await query(audit, {}))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(seqs(await query(audit, { agentId: 'agent-b' }))).toEqual([4, 6]);
    expect(seqs(await query(audit, { action: 'execution.started' }))).toEqual([1, 4]);
    expect(seqs(await query(audit, { outcome: AUDIT_OUTCOME_DENIED }))).toEqual([5]);
    expect(seqs(await query(audit, { outcome: AUDIT_OUTCOME_SUCCESS, runId: 'run-1' }))).toEqual([
      1, 2,
    ]);
    expect(seqs(await query(audit, { traceId: TRACE_B }))).toEqual([4]);
    expect(seqs(await query(audit, { agentId: 'agent-a', action: 'memory.put' }))).toEqual([]);
  });

  it('pages with after_seq and limit', async () => {
    const audit = await startAudit(makeTempDir(), { CORDON_AUDIT_QUERY_DEFAULT_LIMIT: '4' });
    await appendSample(audit);

    expect(seqs(await query(audit, {}))).toEqual([1, 2, 3, 4]);
    expect(seqs(await query(audit, { limit: 2 }))).toEqual([1, 2]);
    expect(seqs(await query(audit, { afterSeq: 2, limit: 3 }))).toEqual([3, 4, 5]);
    expect(seqs(await query(audit, { afterSeq: 5 }))).toEqual([6]);
  });

  it('selects by time, start inclusive, end exclusive', async () => {
    const audit = await startAudit(makeTempDir());
    await append(audit, { event: makeEvent() });
    await sleep(30);
    await append(audit, { event: makeEvent() });
    await sleep(30);
    await append(audit, { event: makeEvent() });
    const [, second, third] = await query(audit, {});

    expect(seqs(await query(audit, { startTime: second!.time }))).toEqual([2, 3]);
    expect(seqs(await query(audit, { endTime: third!.time }))).toEqual([1, 2]);
    expect(seqs(await query(audit, { startTime: second!.time, endTime: third!.time }))).toEqual([
      2,
    ]);
  });

  it('rejects a limit above CORDON_AUDIT_QUERY_MAX_LIMIT', async () => {
    const audit = await startAudit(makeTempDir(), {
      CORDON_AUDIT_QUERY_DEFAULT_LIMIT: '10',
      CORDON_AUDIT_QUERY_MAX_LIMIT: '50',
    });

    const error = await failureOf(query(audit, { limit: 51 }));

    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.details).toBe(
      "limit: 51 is above this server's maximum 50 (CORDON_AUDIT_QUERY_MAX_LIMIT); page with after_seq",
    );
  });

  it('rejects an unknown outcome', async () => {
    const audit = await startAudit(makeTempDir());
    // Field 3 (outcome) as varint 9, as a client built from a newer proto could send it.
    const request = auditV1.QueryRequest.decode(Buffer.from([0x18, 0x09]));

    const error = await failureOf(query(audit, request));

    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.details).toBe('outcome: 9 is not a known AuditOutcome value');
  });

  it('streams more records than one page', async () => {
    const audit = await startAudit(makeTempDir());
    const writes: Promise<unknown>[] = [];
    for (let index = 0; index < 1200; index += 1) {
      writes.push(append(audit, { event: makeEvent() }));
    }
    await Promise.all(writes);

    const records = await query(audit, { limit: 1000 });

    expect(records.length).toBe(1000);
    expect(records.at(-1)!.seq).toBe(1000);
    expect(seqs(await query(audit, { afterSeq: 1000, limit: 1000 }))).toEqual(
      Array.from({ length: 200 }, (_, index) => 1001 + index),
    );
  });
});

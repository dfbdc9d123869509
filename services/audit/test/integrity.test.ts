import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { auditV1 } from '@cordon/proto';
import { recordHash } from '../src/canonical.js';
import {
  append,
  cleanUp,
  exportRecords,
  failureOf,
  makeEvent,
  makeTempDir,
  sqlite,
  startAudit,
  verify,
  type RunningAudit,
} from './support/audit-harness.js';

const VERIFY_EXPORT = fileURLToPath(new URL('../tools/verify_export.py', import.meta.url));

async function appendFive(audit: RunningAudit): Promise<auditV1.AppendResponse[]> {
  const responses: auditV1.AppendResponse[] = [];
  for (let index = 1; index <= 5; index += 1) {
    responses.push(await append(audit, { event: makeEvent({ runId: `run-${index}` }) }));
  }
  return responses;
}

function sqliteFailure(dbPath: string, sql: string): string {
  try {
    sqlite(dbPath, sql);
  } catch (error) {
    return String((error as { stderr: unknown }).stderr).trim();
  }
  throw new Error(`sqlite3 ran "${sql}" without an error`);
}

afterEach(async () => {
  expect(await cleanUp()).toBe(0);
});

describe('Verify', () => {
  it('passes an untouched chain', async () => {
    const audit = await startAudit(makeTempDir());
    const responses = await appendFive(audit);

    expect(await verify(audit)).toEqual({
      ok: true,
      recordsChecked: 5,
      firstBadSeq: undefined,
      reason: '',
      lastHash: responses[4]!.hash,
    });
    expect(await verify(audit, { fromSeq: 2, toSeq: 3 })).toEqual({
      ok: true,
      recordsChecked: 2,
      firstBadSeq: undefined,
      reason: '',
      lastHash: responses[2]!.hash,
    });
  });

  it('passes an open range past the end', async () => {
    const audit = await startAudit(makeTempDir());
    const responses = await appendFive(audit);

    expect(await verify(audit, { fromSeq: 6 })).toEqual({
      ok: true,
      recordsChecked: 0,
      firstBadSeq: undefined,
      reason: '',
      lastHash: responses[4]!.hash,
    });
    expect(await exportRecords(audit, { fromSeq: 6 })).toEqual([]);
  });

  it('passes over an empty store', async () => {
    const audit = await startAudit(makeTempDir());

    expect(await verify(audit)).toEqual({
      ok: true,
      recordsChecked: 0,
      firstBadSeq: undefined,
      reason: '',
      lastHash: '0'.repeat(64),
    });
  });

  it('names a record edited with sqlite3', async () => {
    const audit = await startAudit(makeTempDir());
    const responses = await appendFive(audit);

    sqlite(
      audit.dbPath,
      `DROP TRIGGER records_no_update;
       UPDATE records SET event_json = replace(event_json, '"agent-a"', '"agent-z"') WHERE seq = 3;`,
    );

    expect(await verify(audit)).toEqual({
      ok: false,
      recordsChecked: 2,
      firstBadSeq: 3,
      reason: 'the hash does not match the record; the record was changed after it was stored',
      lastHash: responses[1]!.hash,
    });
    const logged = await audit.waitForLog(
      (line) => line.msg === 'audit hash chain verification failed',
    );
    expect(logged['first_bad_seq']).toBe(3);
  });

  it('names the successor of a re-hashed edit', async () => {
    const audit = await startAudit(makeTempDir());
    await appendFive(audit);
    const [row] = sqlite(
      audit.dbPath,
      "SELECT time_ms || '|' || prev_hash || '|' || event_json FROM records WHERE seq = 2",
    ).split('\n');
    const [timeMs, prevHash, eventJson] = row!.split('|') as [string, string, string];
    const forgedJson = eventJson.replace('"agent-a"', '"agent-z"');
    const forgedHash = recordHash(2, Number(timeMs), forgedJson, prevHash);

    sqlite(
      audit.dbPath,
      `DROP TRIGGER records_no_update;
       UPDATE records SET event_json = '${forgedJson}', hash = '${forgedHash}' WHERE seq = 2;`,
    );

    const result = await verify(audit);
    expect(result.ok).toBe(false);
    expect(result.firstBadSeq).toBe(3);
    expect(result.reason).toBe(
      'prev_hash does not match the hash of seq 2; one of the two records was changed',
    );
  });

  it('names a record deleted with sqlite3 as missing', async () => {
    const audit = await startAudit(makeTempDir());
    await appendFive(audit);

    sqlite(audit.dbPath, 'DROP TRIGGER records_no_delete; DELETE FROM records WHERE seq = 2;');

    const result = await verify(audit);
    expect(result.ok).toBe(false);
    expect(result.firstBadSeq).toBe(2);
    expect(result.reason).toBe('seq 2 is missing; the next stored record is seq 3');
    expect(result.recordsChecked).toBe(1);
  });

  it('fails a range past the last record', async () => {
    const audit = await startAudit(makeTempDir());
    await appendFive(audit);

    const result = await verify(audit, { fromSeq: 4, toSeq: 9 });

    expect(result.ok).toBe(false);
    expect(result.firstBadSeq).toBe(6);
    expect(result.reason).toBe('seq 6 is missing; the last stored record is seq 5');
    expect(result.recordsChecked).toBe(2);
  });

  it('rejects a reversed range', async () => {
    const audit = await startAudit(makeTempDir());

    const error = await failureOf(verify(audit, { fromSeq: 5, toSeq: 3 }));

    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.details).toBe('from_seq: 5 is above to_seq 3; give from_seq ≤ to_seq');
  });
});

describe('append-only store', () => {
  it('rejects UPDATE and DELETE from sqlite3', async () => {
    const audit = await startAudit(makeTempDir());
    await appendFive(audit);

    const update = sqliteFailure(audit.dbPath, "UPDATE records SET hash = 'x' WHERE seq = 1;");
    const remove = sqliteFailure(audit.dbPath, 'DELETE FROM records;');

    expect(update).toBe('Error: stepping, audit tables are append-only (19)');
    expect(remove).toBe('Error: stepping, audit tables are append-only (19)');
    expect((await verify(audit)).ok).toBe(true);
  });
});

describe('Export', () => {
  it('streams records that verify offline in Python', async () => {
    const audit = await startAudit(makeTempDir());
    await append(audit, {
      event: makeEvent({
        agentId: 'agent-ü "quoted"\\',
        attributes: {
          'usage.cpu_seconds': { value: { $case: 'doubleValue', value: 1.5e-7 } },
          'usage.wall_seconds': { value: { $case: 'doubleValue', value: 5 } },
          'limits.memory_bytes': { value: { $case: 'intValue', value: 268435456 } },
          'exit.timed_out': { value: { $case: 'boolValue', value: false } },
          isolation: { value: { $case: 'stringValue', value: 'runsc\ttab' } },
        },
        occurredTime: new Date('2025-06-01T12:00:00.123Z'),
      }),
      stdoutExcerpt: Buffer.from('out'),
    });
    await appendFive(audit);

    const all = await exportRecords(audit);
    const tail = await exportRecords(audit, { fromSeq: 3, toSeq: 5 });
    const file = join(makeTempDir(), 'export.jsonl');
    writeFileSync(
      file,
      all.map((record) => `${JSON.stringify(auditV1.AuditRecord.toJSON(record))}\n`).join(''),
    );
    const output = execFileSync('python3', [VERIFY_EXPORT, file], { encoding: 'utf8' });

    expect(all.map((record) => record.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(tail.map((record) => record.seq)).toEqual([3, 4, 5]);
    expect(output).toBe(`ok 6 records, last hash ${all[5]!.hash}\n`);
  });
});

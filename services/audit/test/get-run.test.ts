import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { auditV1 } from '@cordon/proto';
import {
  append,
  cleanUp,
  failureOf,
  getRun,
  makeEvent,
  makeTempDir,
  sqlite,
  startAudit,
  type RunningAudit,
} from './support/audit-harness.js';

const FILES = [
  { path: 'main.py', content: Buffer.from('from lib.util import greet\nprint(greet())\n') },
  { path: 'lib/util.py', content: Buffer.from('def greet():\n    return "hi"\n') },
];

/** Returns code_sha256 of files as coreutils computes it: sha256sum of the sorted files, hashed again. */
function sha256sumOfTree(files: { path: string; content: Buffer }[]): string {
  const dir = makeTempDir();
  for (const file of files) {
    mkdirSync(join(dir, file.path, '..'), { recursive: true });
    writeFileSync(join(dir, file.path), file.content);
  }
  const sorted = files.map((file) => file.path).sort();
  const lines = execFileSync('sha256sum', ['--', ...sorted], {
    cwd: dir,
    env: { ...process.env, LC_ALL: 'C' },
  });
  return execFileSync('sha256sum', [], { input: lines, encoding: 'utf8' }).split(' ')[0]!;
}

/** Appends start, scan and end of one run, with another run's record between them. */
async function appendRun(audit: RunningAudit, runId: string, files = FILES): Promise<void> {
  await append(audit, { event: makeEvent({ runId }), files });
  await append(audit, { event: makeEvent({ runId: `${runId}-other` }) });
  await append(audit, {
    event: makeEvent({
      runId,
      service: 'scanner',
      action: 'scan.completed',
      attributes: { 'scan.findings.high': { value: { $case: 'intValue', value: 1 } } },
    }),
  });
  await append(audit, {
    event: makeEvent({
      runId,
      action: 'execution.finished',
      outcome: auditV1.AuditOutcome.AUDIT_OUTCOME_FAILURE,
      attributes: { 'exit.code': { value: { $case: 'intValue', value: 1 } } },
    }),
    stdoutExcerpt: Buffer.from('hi\n'),
    stderrExcerpt: Buffer.from('Traceback (most recent call last):\n'),
  });
}

afterEach(async () => {
  expect(await cleanUp()).toBe(0);
});

describe('GetRun', () => {
  it('returns timeline, code and output of a run', async () => {
    const audit = await startAudit(makeTempDir());
    await appendRun(audit, 'run-7');

    const run = await getRun(audit, 'run-7');

    expect(run.runId).toBe('run-7');
    expect(run.timeline.map((record) => [record.seq, record.event!.action])).toEqual([
      [1, 'execution.started'],
      [3, 'scan.completed'],
      [4, 'execution.finished'],
    ]);
    expect(run.files).toEqual([FILES[1], FILES[0]]);
    expect(run.timeline[0]!.event!.codeSha256).toBe(sha256sumOfTree(FILES));
    expect(run.stdoutExcerpt.toString()).toBe('hi\n');
    expect(run.stderrExcerpt.toString()).toBe('Traceback (most recent call last):\n');
    expect(run.stdoutTruncated).toBe(false);
    expect(run.stderrTruncated).toBe(false);
  });

  it('stores each file and file set once', async () => {
    const audit = await startAudit(makeTempDir());
    const changed = [FILES[0]!, { path: 'lib/util.py', content: Buffer.from('def greet(): 1\n') }];

    await appendRun(audit, 'run-1');
    await appendRun(audit, 'run-2');
    await appendRun(audit, 'run-3', changed);

    expect(sqlite(audit.dbPath, 'SELECT count(*) FROM blobs')).toBe('3');
    expect(sqlite(audit.dbPath, 'SELECT count(DISTINCT code_sha256) FROM code_files')).toBe('2');
    expect((await getRun(audit, 'run-2')).files).toEqual([FILES[1], FILES[0]]);
    expect((await getRun(audit, 'run-3')).files).toEqual([changed[1], changed[0]]);
  });

  it('fails with DATA_LOSS for an edited excerpt', async () => {
    const audit = await startAudit(makeTempDir());
    await appendRun(audit, 'run-9');

    sqlite(
      audit.dbPath,
      "DROP TRIGGER excerpts_no_update; UPDATE excerpts SET stdout = CAST('bye' AS BLOB) WHERE seq = 4;",
    );
    const error = await failureOf(getRun(audit, 'run-9'));

    expect(error.code).toBe(status.DATA_LOSS);
    expect(error.details).toBe(
      'the stored output excerpt of seq 4 does not match its record; the audit database was changed outside the service; run Verify and restore it from a backup',
    );
  });

  it('fails with DATA_LOSS for an edited file', async () => {
    const audit = await startAudit(makeTempDir());
    await appendRun(audit, 'run-5');

    sqlite(
      audit.dbPath,
      "DROP TRIGGER blobs_no_update; UPDATE blobs SET content = CAST('import os' AS BLOB);",
    );
    const error = await failureOf(getRun(audit, 'run-5'));

    expect(error.code).toBe(status.DATA_LOSS);
    expect(error.details).toBe(
      'the stored code of seq 1 does not match its record; the audit database was changed outside the service; run Verify and restore it from a backup',
    );
  });

  it('returns NOT_FOUND for an unknown run', async () => {
    const audit = await startAudit(makeTempDir());

    const error = await failureOf(getRun(audit, 'run-unknown'));

    expect(error.code).toBe(status.NOT_FOUND);
    expect(error.details).toBe('no records of run "run-unknown" were found');
  });
});

import { createHash } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type auditV1 } from '@cordon/proto';
import { readErrorDetails } from '@cordon/service-kit';
import {
  append,
  cleanUp,
  exportRecords,
  failureOf,
  getRun,
  makeEvent,
  makeTempDir,
  startAudit,
  type RunningAudit,
} from './support/audit-harness.js';

const ZEROS = '0'.repeat(64);

function sha256(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}

describe('Append', () => {
  afterEach(async () => {
    expect(await cleanUp()).toBe(0);
  });

  it('chains each record to the previous hash', async () => {
    const audit = await startAudit(makeTempDir());
    const first = makeEvent({
      id: 'evt-1',
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      attributes: {
        'limits.memory_bytes': { value: { $case: 'intValue', value: 268435456 } },
        isolation: { value: { $case: 'stringValue', value: 'runc' } },
      },
      occurredTime: new Date('2025-01-02T03:04:05.678Z'),
    });

    const firstResponse = await append(audit, { event: first });
    const secondResponse = await append(audit, { event: makeEvent({ action: 'scan.completed' }) });
    const records = await exportRecords(audit);

    const stored = records[0]!;
    const canonical =
      '{"event":{"action":"execution.started","agent_id":"agent-a",' +
      '"attributes":{"isolation":{"string_value":"runc"},"limits.memory_bytes":{"int_value":268435456}},' +
      '"code_sha256":"","id":"evt-1","occurred_time":"2025-01-02T03:04:05.678Z",' +
      '"outcome":"AUDIT_OUTCOME_SUCCESS","run_id":"run-1","service":"executor",' +
      '"span_id":"00f067aa0ba902b7","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"},' +
      `"prev_hash":"${ZEROS}","seq":1,"time":"${stored.time!.toISOString()}"}`;
    expect(firstResponse).toEqual({ seq: 1, hash: sha256(canonical) });
    expect(stored.hash).toBe(firstResponse.hash);
    expect(stored.prevHash).toBe(ZEROS);
    expect(stored.event).toEqual(first);
    expect(secondResponse.seq).toBe(2);
    expect(records[1]!.prevHash).toBe(firstResponse.hash);
    expect(records[1]!.hash).toBe(secondResponse.hash);
  });

  it('returns the stored record for a replayed id', async () => {
    const audit = await startAudit(makeTempDir());
    const event = makeEvent();

    const first = await append(audit, { event });
    await append(audit, { event: makeEvent({ action: 'execution.finished' }) });
    const replay = await append(audit, { event });

    expect(replay).toEqual(first);
    expect((await exportRecords(audit)).map((record) => record.seq)).toEqual([1, 2]);
    const logged = await audit.waitForLog(
      (line) => line.msg === 'append of a stored event id; returning the stored record',
    );
    expect(logged['event_id']).toBe(event.id);
    expect(logged['seq']).toBe(1);
  });

  it('rejects a reused id for another event', async () => {
    const audit = await startAudit(makeTempDir());
    const event = makeEvent();
    await append(audit, { event });

    const error = await failureOf(
      append(audit, { event: { ...event, action: 'execution.finished' } }),
    );

    expect(error.code).toBe(status.ALREADY_EXISTS);
    expect(error.details).toBe(
      `event.id "${event.id}" is already stored as seq 1 for a different event (action execution.started); give every event a new UUID`,
    );
    expect((await exportRecords(audit)).length).toBe(1);
  });

  it('cuts a long excerpt and marks it truncated', async () => {
    const audit = await startAudit(makeTempDir(), { CORDON_AUDIT_OUTPUT_BYTES: '1k' });
    const stdout = Buffer.from('0123456789'.repeat(300));
    const stderr = Buffer.from('warning: slow\n');

    await append(audit, {
      event: makeEvent({ action: 'execution.finished', runId: 'run-cut' }),
      stdoutExcerpt: stdout,
      stderrExcerpt: stderr,
    });
    const run = await getRun(audit, 'run-cut');

    const firstKiB = stdout.subarray(0, 1024);
    expect(run.stdoutExcerpt).toEqual(firstKiB);
    expect(run.stdoutTruncated).toBe(true);
    expect(run.stderrExcerpt).toEqual(stderr);
    expect(run.stderrTruncated).toBe(false);
    expect(run.timeline[0]!.event!.attributes).toEqual({
      'audit.stdout_bytes': { value: { $case: 'intValue', value: 1024 } },
      'audit.stdout_sha256': { value: { $case: 'stringValue', value: sha256(firstKiB) } },
      'audit.stdout_truncated': { value: { $case: 'boolValue', value: true } },
      'audit.stderr_bytes': { value: { $case: 'intValue', value: stderr.length } },
      'audit.stderr_sha256': { value: { $case: 'stringValue', value: sha256(stderr) } },
      'audit.stderr_truncated': { value: { $case: 'boolValue', value: false } },
    });
  });

  it('keeps the truncated flag of the sender', async () => {
    const audit = await startAudit(makeTempDir());

    await append(audit, {
      event: makeEvent({ action: 'execution.finished', runId: 'run-capped' }),
      stdoutExcerpt: Buffer.from('first bytes'),
      stdoutTruncated: true,
    });
    const run = await getRun(audit, 'run-capped');

    expect(run.stdoutExcerpt.toString()).toBe('first bytes');
    expect(run.stdoutTruncated).toBe(true);
    expect(run.stderrTruncated).toBe(false);
  });
});

describe('Append validation', () => {
  let audit: RunningAudit;

  beforeAll(async () => {
    audit = await startAudit(makeTempDir(), {
      CORDON_AUDIT_OUTPUT_BYTES: '1k',
      CORDON_AUDIT_MAX_EXCERPT_BYTES: '4k',
      CORDON_AUDIT_MAX_FILES_BYTES: '8k',
    });
  });

  afterAll(async () => {
    expect(await cleanUp()).toBe(0);
  });

  const LONG_AGENT = 'a'.repeat(257);
  it.each<[string, Partial<auditV1.AppendRequest>, string, string]>([
    ['no event', {}, 'event', 'is missing; send the event to record'],
    [
      'an empty id',
      { event: makeEvent({ id: '' }) },
      'event.id',
      'is missing; set it to a unique id of up to 128 letters, digits, ".", "_", ":" or "-", such as a UUID',
    ],
    [
      'an empty service',
      { event: makeEvent({ service: '' }) },
      'event.service',
      'is missing; set it to the lower-case name of the appending service, such as executor',
    ],
    [
      'an empty action',
      { event: makeEvent({ action: '' }) },
      'event.action',
      'is missing; set it to a dotted lower-case action name, such as execution.started',
    ],
    [
      'an action without a dot',
      { event: makeEvent({ action: 'started' }) },
      'event.action',
      '"started" is invalid; expected a dotted lower-case action name, such as execution.started',
    ],
    [
      'an agent id over 256 bytes',
      { event: makeEvent({ agentId: LONG_AGENT }) },
      'event.agent_id',
      'is longer than 256 bytes',
    ],
    [
      'a trace id that is not hex',
      { event: makeEvent({ traceId: 'trace-1' }) },
      'event.trace_id',
      '"trace-1" is invalid; expected 32 lower-case hex digits, or empty',
    ],
    [
      'an attribute under audit.',
      {
        event: makeEvent({
          attributes: { 'audit.stdout_bytes': { value: { $case: 'intValue', value: 1 } } },
        }),
      },
      'event.attributes["audit.stdout_bytes"]',
      'keys starting with "audit." are set by the audit service; rename the attribute',
    ],
    [
      'an attribute without a value',
      { event: makeEvent({ attributes: { 'exit.code': {} } }) },
      'event.attributes["exit.code"]',
      'has no value; set string_value, int_value, double_value or bool_value',
    ],
    [
      'an excerpt above CORDON_AUDIT_MAX_EXCERPT_BYTES',
      { event: makeEvent(), stdoutExcerpt: Buffer.alloc(5000, 'x') },
      'stdout_excerpt',
      'is 5000 bytes; this server accepts at most 4096 (CORDON_AUDIT_MAX_EXCERPT_BYTES); send only the first bytes of the output',
    ],
    [
      'files above CORDON_AUDIT_MAX_FILES_BYTES',
      {
        event: makeEvent(),
        files: [{ path: 'main.py', content: Buffer.alloc(9000, 'x') }],
      },
      'files',
      'total 9000 bytes; this server stores at most 8192 (CORDON_AUDIT_MAX_FILES_BYTES)',
    ],
    [
      'a file path with ".."',
      { event: makeEvent(), files: [{ path: '../etc/passwd', content: Buffer.from('x') }] },
      'files[0].path',
      '"../etc/passwd" is not a plain relative path; remove leading, doubled or trailing "/" and "." or ".." segments',
    ],
    [
      'a code_sha256 that does not match the files',
      {
        event: makeEvent({ codeSha256: 'f'.repeat(64) }),
        files: [{ path: 'main.py', content: Buffer.from('print(1)\n') }],
      },
      'event.code_sha256',
      `${'f'.repeat(64)} does not match the files, whose code_sha256 is ${sha256(`${sha256('print(1)\n')}  main.py\n`)}; compute it with codeSha256 of @cordon/service-kit or leave it empty`,
    ],
  ])(
    'rejects %s with INVALID_ARGUMENT naming the field',
    async (_case, request, field, description) => {
      const error = await failureOf(append(audit, request));

      expect(error.code).toBe(status.INVALID_ARGUMENT);
      expect(error.details).toBe(`${field}: ${description}`);
      expect(readErrorDetails(error.metadata)?.fieldViolations).toEqual([{ field, description }]);
      expect(await exportRecords(audit)).toEqual([]);
    },
  );
});

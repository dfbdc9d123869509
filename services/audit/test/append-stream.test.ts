import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { auditV1 } from '@cordon/proto';
import { readErrorDetails } from '@cordon/service-kit';
import {
  append,
  appendStream,
  as,
  AUDITOR,
  cleanUp,
  expiringServiceToken,
  exportRecords,
  makeEvent,
  makeTempDir,
  openAppendStream,
  startAudit,
  stopService,
  verify,
} from './support/audit-harness.js';

afterEach(async () => {
  expect(await cleanUp()).toBe(0);
});

describe('AppendStream', () => {
  it('acknowledges events in request order', async () => {
    const audit = await startAudit(makeTempDir());
    const events = Array.from({ length: 300 }, (_, index) => makeEvent({ runId: `run-${index}` }));

    const { responses, status: ended } = await appendStream(
      audit,
      events.map((event) => ({ event })),
    );
    const records = await exportRecords(audit);
    const verified = await verify(audit);

    expect(ended.code).toBe(status.OK);
    expect(responses.map((response) => response.seq)).toEqual(events.map((_, index) => index + 1));
    expect(records.map((record) => record.event!.id)).toEqual(events.map((event) => event.id));
    expect(responses.map((response) => response.hash)).toEqual(
      records.map((record) => record.hash),
    );
    expect(verified.ok).toBe(true);
    expect(verified.recordsChecked).toBe(300);
    const closed = audit.logs.filter(
      (line) => line['rpc'] === 'cordon.v1.AuditService/AppendStream',
    );
    expect(closed.map((line) => [line.msg, line['code']])).toEqual([['rpc finished', 'OK']]);
  });

  it('stores excerpts and files too', async () => {
    const audit = await startAudit(makeTempDir());
    const event = makeEvent({ action: 'execution.finished', runId: 'run-excerpt' });

    const { status: ended } = await appendStream(audit, [
      {
        event,
        stdoutExcerpt: Buffer.from('hello\n'),
        files: [{ path: 'main.py', content: Buffer.from('print(1)\n') }],
      },
    ]);
    const [stored] = await exportRecords(audit);

    expect(ended.code).toBe(status.OK);
    expect(stored!.event!.attributes['audit.stdout_bytes']).toEqual({
      value: { $case: 'intValue', value: 6 },
    });
    expect(stored!.event!.codeSha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('returns the stored record for a resent id', async () => {
    const audit = await startAudit(makeTempDir());
    const first = makeEvent();
    const second = makeEvent({ action: 'execution.finished' });
    const before = await appendStream(audit, [{ event: first }, { event: second }]);

    const third = makeEvent({ runId: 'run-3' });
    const again = await appendStream(audit, [
      { event: first },
      { event: third },
      { event: second },
    ]);
    const unary = await append(audit, { event: second });

    expect(again.status.code).toBe(status.OK);
    expect(again.responses).toEqual([
      before.responses[0],
      { seq: 3, hash: again.responses[1]!.hash },
      before.responses[1],
    ]);
    expect(unary).toEqual(before.responses[1]);
    expect((await exportRecords(audit)).map((record) => record.event!.id)).toEqual([
      first.id,
      second.id,
      third.id,
    ]);
  });

  it('stops at an invalid event', async () => {
    const audit = await startAudit(makeTempDir());
    const valid = [makeEvent(), makeEvent(), makeEvent()];
    const invalid = makeEvent({ action: 'started' });
    const after = [makeEvent(), makeEvent()];

    const { responses, status: ended } = await appendStream(audit, [
      ...valid.map((event) => ({ event })),
      { event: invalid },
      ...after.map((event) => ({ event })),
    ]);
    const records = await exportRecords(audit);

    const description =
      '"started" is invalid; expected a dotted lower-case action name, such as execution.started';
    expect(ended.code).toBe(status.INVALID_ARGUMENT);
    expect(ended.details).toBe(
      `request 3 on the stream (event.id "${invalid.id}"): event.action: ${description}`,
    );
    expect(readErrorDetails(ended.metadata)?.fieldViolations).toEqual([
      { field: 'event.action', description },
    ]);
    expect(responses.map((response) => response.seq)).toEqual([1, 2, 3]);
    expect(records.map((record) => record.event!.id)).toEqual(valid.map((event) => event.id));
  });

  it('names a request without an event', async () => {
    const audit = await startAudit(makeTempDir());

    const { responses, status: ended } = await appendStream(audit, [{ event: makeEvent() }, {}]);

    expect(ended.code).toBe(status.INVALID_ARGUMENT);
    expect(ended.details).toBe(
      'request 1 on the stream (event.id ""): event: is missing; send the event to record',
    );
    expect(responses).toHaveLength(1);
    expect(await exportRecords(audit)).toHaveLength(1);
  });

  it('rejects a reused id with ALREADY_EXISTS', async () => {
    const audit = await startAudit(makeTempDir());
    const stored = makeEvent();
    await append(audit, { event: stored });

    const { responses, status: ended } = await appendStream(audit, [
      { event: makeEvent() },
      { event: { ...stored, action: 'execution.finished' } },
    ]);

    expect(ended.code).toBe(status.ALREADY_EXISTS);
    expect(ended.details).toBe(
      `request 1 on the stream (event.id "${stored.id}"): event.id "${stored.id}" is already stored as seq 1 for a different event (action execution.started); give every event a new UUID`,
    );
    expect(responses.map((response) => response.seq)).toEqual([2]);
  });

  it.each([
    ['an agent', as('agent', 'agent-a'), 'agent'],
    ['an auditor', AUDITOR, 'auditor'],
  ])('rejects a stream from %s', async (_caller, metadata, role) => {
    const audit = await startAudit(makeTempDir());

    const { responses, status: ended } = await appendStream(
      audit,
      [{ event: makeEvent() }],
      metadata,
    );
    const stored = await exportRecords(audit);

    expect(ended.code).toBe(status.PERMISSION_DENIED);
    expect(ended.details).toBe(
      `role ${role} may not call cordon.v1.AuditService/AppendStream; it is open to service`,
    );
    expect(responses).toEqual([]);
    expect(stored.map((record) => record.event!.action)).toEqual(['auth.denied']);
    expect(stored[0]!.event!.attributes['rpc']?.value?.value).toBe(
      'cordon.v1.AuditService/AppendStream',
    );
  });

  it('ends when its token expires', async () => {
    const audit = await startAudit(makeTempDir());
    const stream = openAppendStream(audit, expiringServiceToken(2));

    stream.call.write(auditV1.AppendRequest.fromPartial({ event: makeEvent() }));
    await stream.waitForResponses(1);
    const openedAt = Date.now();
    const ended = await stream.ended;
    const endedAfterMs = Date.now() - openedAt;
    stream.call.end();

    expect(ended.code).toBe(status.UNAUTHENTICATED);
    expect(ended.details).toBe(
      'the token this stream was opened with has expired; open a new stream with a fresh token',
    );
    expect(endedAfterMs).toBeLessThan(3000);
    expect(await exportRecords(audit)).toHaveLength(1);
  });

  it('ends an open stream at shutdown', async () => {
    const audit = await startAudit(makeTempDir());
    const stream = openAppendStream(audit);
    stream.call.write(auditV1.AppendRequest.fromPartial({ event: makeEvent() }));
    await stream.waitForResponses(1);

    const stoppingAt = Date.now();
    const exit = await stopService(audit);
    const stoppedAfterMs = Date.now() - stoppingAt;
    const ended = await stream.ended;

    expect(exit).toEqual({ code: 0, signal: null });
    // Far below the 10 s drain deadline that an open stream would otherwise hold shutdown for.
    expect(stoppedAfterMs).toBeLessThan(5000);
    expect(ended.code).toBe(status.UNAVAILABLE);
    expect(ended.details).toBe('the server is shutting down; open a new stream to send the rest');
    expect(audit.logs.find((line) => line.msg === 'audit store closed')?.['events']).toBe(1);
  });

  it('stores whole records on client cancel', async () => {
    const audit = await startAudit(makeTempDir());
    const stream = openAppendStream(audit);
    const events = Array.from({ length: 5000 }, () => makeEvent());

    for (const event of events) {
      stream.call.write(auditV1.AppendRequest.fromPartial({ event }));
    }
    await stream.waitForResponses(50);
    stream.call.cancel();
    const ended = await stream.ended;
    await audit.waitForLog((line) => line.msg === 'rpc cancelled by client');
    const acknowledged = [...stream.responses];
    const records = await exportRecords(audit);
    const verified = await verify(audit);

    expect(ended.code).toBe(status.CANCELLED);
    expect(records.length).toBeGreaterThanOrEqual(acknowledged.length);
    expect(records.length).toBeLessThan(events.length);
    expect(records.map((record) => record.event)).toEqual(events.slice(0, records.length));
    expect(acknowledged.map((response) => response.hash)).toEqual(
      records.slice(0, acknowledged.length).map((record) => record.hash),
    );
    expect(verified.ok).toBe(true);
  });
});

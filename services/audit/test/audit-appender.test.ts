import { credentials, status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { auditV1 } from '@cordon/proto';
import {
  type AppendError,
  AuditAppender,
  createLogger,
  GrpcAuditSink,
  readTokenKey,
  ServiceIdentity,
  setMeshCredentials,
  type Logger,
} from '@cordon/service-kit';
import { testKeyFile } from '../../../test/support/test-tokens.js';
import {
  as,
  cleanUp,
  expiringServiceToken,
  exportRecords,
  makeEvent,
  makeTempDir,
  startAudit,
  verify,
  type RunningAudit,
} from './support/audit-harness.js';

const clients: auditV1.AuditServiceClient[] = [];

afterEach(async () => {
  clients.splice(0).forEach((client) => {
    client.close();
  });
  expect(await cleanUp()).toBe(0);
});

/** Creates a logger that keeps every line it writes. */
function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    service: 'appender-test',
    level: 'info',
    destination: {
      write: (line: string) => {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  });
  return { logger, lines };
}

function auditClient(audit: RunningAudit): auditV1.AuditServiceClient {
  const client = new auditV1.AuditServiceClient(
    `127.0.0.1:${audit.port}`,
    credentials.createInsecure(),
  );
  clients.push(client);
  return client;
}

/** Starts the audit service, makes a client of it, and kills the service. */
async function unreachableAuditClient(): Promise<auditV1.AuditServiceClient> {
  const audit = await startAudit(makeTempDir());
  const client = auditClient(audit);
  audit.child.kill('SIGKILL');
  await audit.exited;
  return client;
}

async function failureOf(promise: Promise<unknown>): Promise<AppendError> {
  try {
    await promise;
  } catch (error) {
    return error as AppendError;
  }
  throw new Error('the append succeeded, but a failure was expected');
}

/** Appends one event that is expected to fail, and resolves with its error and the time it took. */
async function timedFailure(
  appender: AuditAppender,
): Promise<{ failure: AppendError; waitedMs: number }> {
  const startedAt = Date.now();
  const failure = await failureOf(
    appender.append(auditV1.AppendRequest.fromPartial({ event: makeEvent() })),
  );
  return { failure, waitedMs: Date.now() - startedAt };
}

describe('AuditAppender', () => {
  it('resends unacknowledged events after a restart', async () => {
    const dir = makeTempDir();
    const audit = await startAudit(dir);
    const { logger, lines } = capturingLogger();
    const appender = new AuditAppender(auditClient(audit), {
      logger,
      ackTimeoutMs: 30_000,
      maxReopenAttempts: 1000,
      maxReopenDelayMs: 200,
      streamMetadata: () => as('service'),
    });
    const events = Array.from({ length: 3000 }, () => makeEvent());
    let acknowledged = 0;

    const appended = events.map((event) =>
      appender.append(auditV1.AppendRequest.fromPartial({ event })).then((response) => {
        acknowledged += 1;
        return response;
      }),
    );
    while (acknowledged < 500) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    audit.child.kill('SIGKILL');
    await audit.exited;
    const restarted = await startAudit(dir, { CORDON_AUDIT_ADDRESS: `127.0.0.1:${audit.port}` });
    const responses = await Promise.all(appended);
    await appender.close();

    const stored = await exportRecords(restarted);
    const verified = await verify(restarted);
    expect(acknowledged).toBe(events.length);
    expect(stored.map((record) => record.event!.id)).toEqual(events.map((event) => event.id));
    expect(responses).toEqual(stored.map((record) => ({ seq: record.seq, hash: record.hash })));
    expect(verified.ok).toBe(true);
    expect(lines.map((line) => line['msg'])).toContain('audit service reachable again');
  });

  it('reopens its stream when the token expires', async () => {
    const audit = await startAudit(makeTempDir());
    const { logger, lines } = capturingLogger();
    const appender = new AuditAppender(auditClient(audit), {
      logger,
      streamMetadata: () => expiringServiceToken(2),
    });
    const responses: auditV1.AppendResponse[] = [];

    const until = Date.now() + 3500;
    while (Date.now() < until) {
      responses.push(
        await appender.append(auditV1.AppendRequest.fromPartial({ event: makeEvent() })),
      );
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await appender.close();

    const stored = await exportRecords(audit);
    const reopened = lines.filter((line) => line['msg'] === 'audit stream ended; reopening');
    expect(responses.map((response) => response.seq)).toEqual(stored.map((record) => record.seq));
    expect(reopened.length).toBeGreaterThanOrEqual(1);
    expect(reopened[0]!['code']).toBe('UNAUTHENTICATED');
  });

  it('fails only the rejected event', async () => {
    const audit = await startAudit(makeTempDir());
    const { logger } = capturingLogger();
    const appender = new AuditAppender(auditClient(audit), {
      logger,
      streamMetadata: () => as('service'),
    });
    const before = makeEvent();
    const invalid = makeEvent({ action: 'started' });
    const after = makeEvent();

    const results = [before, invalid, after].map((event) =>
      appender.append(auditV1.AppendRequest.fromPartial({ event })),
    );
    const rejection = await failureOf(results[1]!);
    const [first, third] = await Promise.all([results[0]!, results[2]!]);
    await appender.close();

    expect(rejection.code).toBe(status.INVALID_ARGUMENT);
    expect(rejection.details).toMatch(
      /^request 1 on the stream \(event\.id "[^"]+"\): event\.action: /,
    );
    expect(first.seq).toBe(1);
    expect(third.seq).toBe(2);
    expect((await exportRecords(audit)).map((record) => record.event!.id)).toEqual([
      before.id,
      after.id,
    ]);
  });

  it('fails all events of a rejected caller', async () => {
    const audit = await startAudit(makeTempDir());
    const { logger } = capturingLogger();
    const appender = new AuditAppender(auditClient(audit), {
      logger,
      streamMetadata: () => as('agent', 'agent-a'),
    });

    const failures = await Promise.all(
      [makeEvent(), makeEvent()].map((event) =>
        failureOf(appender.append(auditV1.AppendRequest.fromPartial({ event }))),
      ),
    );
    await appender.close();

    expect(failures.map((failure) => failure.code)).toEqual([
      status.PERMISSION_DENIED,
      status.PERMISSION_DENIED,
    ]);
  });

  it('settles events by their deadline during an outage', async () => {
    const client = await unreachableAuditClient();
    const { logger, lines } = capturingLogger();
    const appender = new AuditAppender(client, {
      logger,
      ackTimeoutMs: 1500,
      maxReopenAttempts: 1000,
      streamMetadata: () => as('service'),
    });

    const { failure, waitedMs } = await timedFailure(appender);
    await appender.close();

    expect(failure.code).toBe(status.DEADLINE_EXCEEDED);
    expect(waitedMs).toBeGreaterThanOrEqual(1400);
    expect(waitedMs).toBeLessThan(3000);
    expect(lines.map((line) => line['msg'])).toContain('audit service unavailable; retrying');
  });

  it('gives up after its reopen attempts', async () => {
    const client = await unreachableAuditClient();
    const { logger } = capturingLogger();
    const appender = new AuditAppender(client, {
      logger,
      maxReopenAttempts: 2,
      streamMetadata: () => as('service'),
    });

    const { failure, waitedMs } = await timedFailure(appender);
    await appender.close();

    expect(failure.code).toBe(status.UNAVAILABLE);
    expect(waitedMs).toBeLessThan(2000);
  });

  it('carries kit sink events across an outage', async () => {
    const dir = makeTempDir();
    const audit = await startAudit(dir);
    const address = `127.0.0.1:${audit.port}`;
    audit.child.kill('SIGKILL');
    await audit.exited;
    const identity = await ServiceIdentity.start(readTokenKey(testKeyFile()), 'memory');
    setMeshCredentials({ identity, tls: undefined });
    const { logger, lines } = capturingLogger();
    const record = (key: string): void => {
      sink.record({
        agentId: 'agent-a',
        action: 'memory.put',
        outcome: auditV1.AuditOutcome.AUDIT_OUTCOME_SUCCESS,
        attributes: { key },
      });
    };
    const sink = new GrpcAuditSink('memory', address, logger);

    try {
      record('during-outage');
      while (!lines.some((line) => line['msg'] === 'audit service unavailable; retrying')) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const restarted = await startAudit(dir, { CORDON_AUDIT_ADDRESS: address });
      for (let index = 0; index < 200; index += 1) {
        record(`key-${index}`);
      }
      await sink.close();

      const stored = await exportRecords(restarted);
      const keys = stored.map((stored) => stored.event!.attributes['key']?.value?.value);
      expect(keys).toHaveLength(201);
      expect(new Set(keys)).toEqual(
        new Set(['during-outage', ...Array.from({ length: 200 }, (_, index) => `key-${index}`)]),
      );
      expect(stored.every((stored) => stored.event!.service === 'memory')).toBe(true);
      expect(lines.map((line) => line['msg'])).not.toContain(
        'audit events not sent before shutdown',
      );
    } finally {
      identity.stop();
      setMeshCredentials({ identity: undefined, tls: undefined });
    }
  });
});

import { auditV1 } from '@cordon/proto';
import {
  createLogger,
  defineService,
  readTokenKey,
  startServer,
  type RunningServer,
} from '@cordon/service-kit';
import { testKeyFile } from './test-tokens.js';

/** An Append the fake audit service received, with the verified role and subject of its caller. */
export interface ReceivedAppend {
  readonly event: auditV1.AuditEvent;
  readonly role: string;
  readonly subject: string;
}

export interface FakeAudit {
  readonly address: string;
  readonly appended: ReceivedAppend[];
  /** Resolves once at least `count` Appends arrived, or rejects after the timeout. */
  waitForAppends(count: number, timeoutMs?: number): Promise<ReceivedAppend[]>;
  stop(): Promise<void>;
}

/** Starts an audit service of the test's own that records every event of Append and AppendStream. */
export async function startFakeAudit(address = '127.0.0.1:0'): Promise<FakeAudit> {
  const appended: ReceivedAppend[] = [];
  const unimplemented = (): never => {
    throw new Error('not part of the fake audit service');
  };
  const registration = defineService(
    auditV1.AuditServiceService,
    {
      append: (request, context) => {
        appended.push({
          event: request.event!,
          role: context.caller.role,
          subject: context.caller.subject,
        });
        return Promise.resolve({ seq: appended.length, hash: '0'.repeat(64) });
      },
      appendStream: async function* (requests, context) {
        for await (const request of requests) {
          appended.push({
            event: request.event!,
            role: context.caller.role,
            subject: context.caller.subject,
          });
          yield { seq: appended.length, hash: '0'.repeat(64) };
        }
      },
      getRun: unimplemented,
      verify: unimplemented,
      query: unimplemented,
      export: unimplemented,
    },
    {
      roles: {
        append: ['service'],
        appendStream: ['service'],
        getRun: ['auditor'],
        verify: ['auditor'],
        query: ['auditor'],
        export: ['auditor'],
      },
    },
  );
  const server: RunningServer = await startServer({
    address,
    logger: createLogger({ service: 'fake-audit', level: 'silent' }),
    services: [registration],
    maxReceiveMessageBytes: 4 * 1024 * 1024,
    maxSendMessageBytes: 4 * 1024 * 1024,
    keepaliveTimeMs: 30_000,
    keepaliveTimeoutMs: 10_000,
    shutdownDrainMs: 0,
    tokenKey: readTokenKey(testKeyFile()),
  });

  return {
    address: `127.0.0.1:${server.port}`,
    appended,
    waitForAppends: async (count, timeoutMs = 10_000) => {
      const deadline = Date.now() + timeoutMs;
      while (appended.length < count) {
        if (Date.now() > deadline) {
          throw new Error(
            `${appended.length} of ${count} audit events arrived within ${timeoutMs} ms`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return appended;
    },
    stop: () => server.shutdown(),
  };
}

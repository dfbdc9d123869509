import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { auditV1, memoryV1 } from '@cordon/proto';
import {
  callUnary,
  createLogger,
  defineService,
  readErrorDetails,
  readTokenKey,
  startServer,
  type RunningServer,
} from '@cordon/service-kit';
import {
  killLeftoverProcesses,
  startListeningService,
  type ServiceProcess,
} from '../../../../test/support/service-process.js';
import { agentMetadata, testKeyFile } from '../../../../test/support/test-tokens.js';

/** The built service, started the way `npm start` starts it. */
export const MEMORY_MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

const tempDirs = new Set<string>();
/** Codes of a failed Put that may still have been applied. */
const OUTCOME_UNKNOWN_CODES = new Set<number>([
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.CANCELLED,
]);
const openClients = new Set<memoryV1.MemoryServiceClient>();

/** Makes a temporary folder that `cleanUpHarness` removes. */
export function makeTempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cordon-memory-test-'));
  tempDirs.add(dir);
  return dir;
}

/** Returns a fresh agent id, so no two tests share memory. */
export function newAgentId(label = 'agent'): string {
  return `${label}-${randomUUID().slice(0, 8)}`;
}

export interface MemoryUnderTest {
  readonly process: ServiceProcess & { port: number };
  readonly address: string;
  /** A client that calls with a token of agent `agentId`, or without any token when undefined. */
  as(agentId: string | undefined): AgentClient;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the real memory service process on a free loopback port. */
export async function startMemory(env: Record<string, string>): Promise<MemoryUnderTest> {
  const service = await startListeningService(MEMORY_MAIN, [], {
    CORDON_MEMORY_ADDRESS: '127.0.0.1:0',
    CORDON_LOG_LEVEL: 'debug',
    ...env,
  });
  const address = `127.0.0.1:${service.port}`;
  return {
    process: service,
    address,
    as: (agentId) => agentClient(address, agentId),
    stop: async (signal = 'SIGTERM') => {
      if (service.child.exitCode === null && service.child.signalCode === null) {
        service.child.kill(signal);
      }
      return service.exited;
    },
  };
}

/** A key a test wrote, so teardown can delete it through the API. */
interface WrittenKey {
  readonly namespace: string;
  readonly key: string;
}

export interface AgentClient {
  readonly agentId: string | undefined;
  put(request: Partial<memoryV1.PutRequest>, deadlineMs?: number): Promise<memoryV1.PutResponse>;
  get(request: Partial<memoryV1.GetRequest>, deadlineMs?: number): Promise<memoryV1.GetResponse>;
  delete(
    request: Partial<memoryV1.DeleteRequest>,
    deadlineMs?: number,
  ): Promise<memoryV1.DeleteResponse>;
  list(request: Partial<memoryV1.ListRequest>, deadlineMs?: number): Promise<memoryV1.ListResponse>;
  /** Deletes every key this client wrote, through the API. */
  deleteWritten(): Promise<void>;
  close(): void;
}

export function agentClient(address: string, agentId: string | undefined): AgentClient {
  const client = new memoryV1.MemoryServiceClient(address, credentials.createInsecure());
  openClients.add(client);
  const metadata = agentId === undefined ? new Metadata() : agentMetadata(agentId);
  const written = new Map<string, WrittenKey>();
  const options = (deadlineMs = 5_000): { deadlineMs: number; metadata: Metadata } => ({
    deadlineMs,
    metadata,
  });

  const agent: AgentClient = {
    agentId,
    put: async (request, deadlineMs) => {
      const full = memoryV1.PutRequest.fromPartial(request);
      const name = JSON.stringify([full.namespace, full.key]);
      try {
        const response = await callUnary(client.put.bind(client), full, options(deadlineMs));
        written.set(name, full);
        return response;
      } catch (error) {
        // The write may have been applied although its reply was lost.
        if (OUTCOME_UNKNOWN_CODES.has((error as ServiceError).code)) {
          written.set(name, full);
        }
        throw error;
      }
    },
    get: (request, deadlineMs) =>
      callUnary(
        client.get.bind(client),
        memoryV1.GetRequest.fromPartial(request),
        options(deadlineMs),
      ),
    delete: (request, deadlineMs) =>
      callUnary(
        client.delete.bind(client),
        memoryV1.DeleteRequest.fromPartial(request),
        options(deadlineMs),
      ),
    list: (request, deadlineMs) =>
      callUnary(
        client.list.bind(client),
        memoryV1.ListRequest.fromPartial(request),
        options(deadlineMs),
      ),
    deleteWritten: async () => {
      for (const { namespace, key } of written.values()) {
        await agent.delete({ namespace, key });
      }
      written.clear();
    },
    close: () => {
      openClients.delete(client);
      client.close();
    },
  };
  return agent;
}

/** Returns the status a failed call ended with, and its ErrorDetails. */
export async function failureOf(call: Promise<unknown>): Promise<{
  code: string;
  message: string;
  details: ReturnType<typeof readErrorDetails>;
}> {
  try {
    await call;
  } catch (error) {
    const serviceError = error as ServiceError;
    return {
      code: status[serviceError.code],
      message: serviceError.details,
      details: readErrorDetails(serviceError.metadata),
    };
  }
  throw new Error('the call succeeded but a failure was expected');
}

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

/** Starts an audit service of the test's own that records every Append. */
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
      getRun: unimplemented,
      verify: unimplemented,
      query: unimplemented,
      export: unimplemented,
    },
    {
      roles: {
        append: ['service'],
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

/** Closes clients, kills service processes a test left running and removes temporary folders. */
export async function cleanUpHarness(): Promise<void> {
  for (const client of openClients) {
    client.close();
  }
  openClients.clear();
  await killLeftoverProcesses();
  for (const dir of tempDirs) {
    rmSync(dir, { recursive: true, force: true });
  }
  tempDirs.clear();
}

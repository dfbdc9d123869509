import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { memoryV1 } from '@cordon/proto';
import { callUnary, readErrorDetails } from '@cordon/service-kit';
import {
  killLeftoverProcesses,
  startListeningService,
  type ServiceProcess,
} from '../../../../test/support/service-process.js';
import { agentMetadata } from '../../../../test/support/test-tokens.js';

export {
  startFakeAudit,
  type FakeAudit,
  type ReceivedAppend,
} from '../../../../test/support/fake-audit.js';

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

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { credentials } from '@grpc/grpc-js';
import { auditV1, memoryV1 } from '@cordon/proto';
import { callUnary, createLogger, readTokenKey, startServer } from '@cordon/service-kit';
import type { AuditSink, MemoryAuditEvent } from '../src/audit-sink.js';
import { createMemoryService } from '../src/memory-service.js';
import type { MemoryStore } from '../src/memory-store.js';
import { StoreAccessDenied } from '../src/store-errors.js';
import { StoreRouter } from '../src/store-router.js';
import {
  cleanUpHarness,
  failureOf,
  newAgentId,
  startFakeAudit,
  startMemory,
  type AgentClient,
  type FakeAudit,
  type MemoryUnderTest,
  type ReceivedAppend,
} from './support/memory-harness.js';
import { agentMetadata, testKeyFile } from '../../../test/support/test-tokens.js';
import {
  destroyAllTestRedis,
  expectRedisAgentClean,
  freePort,
  startTestRedis,
  type TestRedis,
} from './support/test-redis.js';

const { AuditOutcome } = auditV1;
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let redis: TestRedis;
let audit: FakeAudit;
let memory: MemoryUnderTest;
const agents: AgentClient[] = [];

/** Attributes as plain values, for exact comparison. */
function plain(attributes: Record<string, auditV1.AttributeValue>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(attributes).map(([name, { value }]) => [name, value?.value]),
  );
}

function summary(append: ReceivedAppend): Record<string, unknown> {
  return {
    agentId: append.event.agentId,
    action: append.event.action,
    outcome: append.event.outcome,
    attributes: plain(append.event.attributes),
  };
}

async function eventsOf(agentId: string, count: number): Promise<ReceivedAppend[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const matching = audit.appended.filter((append) => append.event.agentId === agentId);
    if (matching.length >= count || Date.now() > deadline) return matching;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function newAgent(): AgentClient {
  const agent = memory.as(newAgentId());
  agents.push(agent);
  return agent;
}

beforeAll(async () => {
  redis = await startTestRedis();
  audit = await startFakeAudit();
  memory = await startMemory({
    CORDON_MEMORY_REDIS_URL: redis.url,
    CORDON_AUDIT_ADDRESS: audit.address,
    CORDON_MEMORY_MAX_KEYS_PER_AGENT: '2',
  });
});

afterEach(async () => {
  for (const agent of agents.splice(0)) {
    await agent.deleteWritten();
    await expectRedisAgentClean(redis, agent.agentId!);
  }
});

afterAll(async () => {
  await memory.stop();
  await audit.stop();
  await cleanUpHarness();
  await destroyAllTestRedis();
});

describe('memory audit events', () => {
  it('records writes and deletes with names and sizes, never values', async () => {
    const agent = newAgent();
    const agentId = agent.agentId!;
    const key = { namespace: 'notes', key: 'plan' };

    await agent.put({ ...key, value: Buffer.from('TOP-SECRET-VALUE'), ifVersion: 0 });
    await failureOf(agent.put({ ...key, value: Buffer.from('TOP-SECRET-VALUE-2'), ifVersion: 0 }));
    await agent.delete(key);
    await agent.delete(key);
    const events = await eventsOf(agentId, 4);

    expect(events.map(summary)).toEqual([
      {
        agentId,
        action: 'memory.put',
        outcome: AuditOutcome.AUDIT_OUTCOME_SUCCESS,
        attributes: { namespace: 'notes', key: 'plan', size_bytes: 16, version: 1 },
      },
      {
        agentId,
        action: 'memory.put',
        outcome: AuditOutcome.AUDIT_OUTCOME_FAILURE,
        attributes: { namespace: 'notes', key: 'plan', size_bytes: 18, reason: 'if_version' },
      },
      {
        agentId,
        action: 'memory.delete',
        outcome: AuditOutcome.AUDIT_OUTCOME_SUCCESS,
        attributes: { namespace: 'notes', key: 'plan', deleted: true, version: 1, size_bytes: 16 },
      },
      {
        agentId,
        action: 'memory.delete',
        outcome: AuditOutcome.AUDIT_OUTCOME_SUCCESS,
        attributes: { namespace: 'notes', key: 'plan', deleted: false },
      },
    ]);
    for (const append of events) {
      expect(append.event.id).toMatch(UUID_PATTERN);
      expect(append.event.service).toBe('memory');
      expect(append.event.occurredTime).toBeInstanceOf(Date);
      expect(append.role).toBe('service');
    }
    expect(JSON.stringify(events)).not.toContain('TOP-SECRET');
  });

  it('records quota rejections', async () => {
    const agent = newAgent();
    await agent.put({ namespace: 'n', key: 'a', value: Buffer.from('1') });
    await agent.put({ namespace: 'n', key: 'b', value: Buffer.from('2') });

    await failureOf(agent.put({ namespace: 'n', key: 'c', value: Buffer.from('3') }));
    const events = await eventsOf(agent.agentId!, 3);

    expect(summary(events[2]!)).toEqual({
      agentId: agent.agentId,
      action: 'memory.put',
      outcome: AuditOutcome.AUDIT_OUTCOME_FAILURE,
      attributes: { namespace: 'n', key: 'c', size_bytes: 1, reason: 'quota.keys' },
    });
  });

  it('records calls without an agent id as denied', async () => {
    const anonymous = memory.as(undefined);
    const before = audit.appended.length;

    await failureOf(anonymous.list({ namespace: 'n' }));
    anonymous.close();
    await audit.waitForAppends(before + 1);
    const denied = audit.appended
      .slice(before)
      .find((append) => append.event.action === 'auth.denied');

    expect(denied).toBeDefined();
    expect(summary(denied!)).toEqual({
      agentId: '',
      action: 'auth.denied',
      outcome: AuditOutcome.AUDIT_OUTCOME_DENIED,
      attributes: {
        rpc: 'cordon.v1.MemoryService/List',
        code: 'UNAUTHENTICATED',
        reason: 'missing-token',
        message:
          'no token: send authorization: Bearer <token> metadata (an admin mints one with cordon token create)',
        peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/) as unknown,
      },
    });
  });

  it('delivers events once the audit service comes back', async () => {
    const auditPort = await freePort();
    const late = await startMemory({
      CORDON_MEMORY_REDIS_URL: redis.url,
      CORDON_AUDIT_ADDRESS: `127.0.0.1:${auditPort}`,
    });
    const agent = late.as(newAgentId());

    const stored = await agent.put({ namespace: 'n', key: 'k', value: Buffer.from('x') });
    await late.process.waitForLog((line) => line.msg === 'audit service unavailable; retrying');
    const lateAudit = await startFakeAudit(`127.0.0.1:${auditPort}`);
    const appended = await lateAudit.waitForAppends(1);
    await agent.delete({ namespace: 'n', key: 'k' });
    await lateAudit.waitForAppends(2);
    await late.stop();
    await lateAudit.stop();
    await expectRedisAgentClean(redis, agent.agentId!);

    expect(stored.version).toBe(1);
    expect(summary(appended[0]!)).toEqual({
      agentId: agent.agentId,
      action: 'memory.put',
      outcome: AuditOutcome.AUDIT_OUTCOME_SUCCESS,
      attributes: { namespace: 'n', key: 'k', size_bytes: 1, version: 1 },
    });
  });
});

describe('memory access refused by the store', () => {
  it('is answered PERMISSION_DENIED and recorded as denied', async () => {
    const recorded: MemoryAuditEvent[] = [];
    const sink: AuditSink = {
      record: (event) => recorded.push(event),
      close: () => Promise.resolve(),
    };
    const rejectingStore: MemoryStore = {
      description: 'a store whose access control refuses every key',
      put: () =>
        Promise.reject(new StoreAccessDenied(new Error('NOPERM this user has no permissions'))),
      get: () => Promise.reject(new Error('not called')),
      delete: () => Promise.reject(new Error('not called')),
      list: () => Promise.reject(new Error('not called')),
      isAvailable: () => Promise.resolve(true),
      close: () => Promise.resolve(),
    };
    const registration = createMemoryService({
      router: new StoreRouter(rejectingStore, []),
      audit: sink,
      limits: {
        maxValueBytes: 1024,
        maxKeysPerAgent: 10,
        maxBytesPerAgent: 10_240,
        maxTtlSeconds: 60,
        defaultTtlSeconds: 0,
        defaultPageSize: 10,
        maxPageSize: 10,
      },
    });
    const server = await startServer({
      address: '127.0.0.1:0',
      logger: createLogger({ service: 'memory-test', level: 'silent' }),
      services: [registration],
      maxReceiveMessageBytes: 1024 * 1024,
      maxSendMessageBytes: 1024 * 1024,
      keepaliveTimeMs: 30_000,
      keepaliveTimeoutMs: 10_000,
      shutdownDrainMs: 0,
      tokenKey: readTokenKey(testKeyFile()),
    });
    const client = new memoryV1.MemoryServiceClient(
      `127.0.0.1:${server.port}`,
      credentials.createInsecure(),
    );
    const metadata = agentMetadata('agent-a');

    const failure = await failureOf(
      callUnary(
        client.put.bind(client),
        memoryV1.PutRequest.fromPartial({ namespace: 'n', key: 'k', value: Buffer.from('secret') }),
        { deadlineMs: 5_000, metadata },
      ),
    );
    client.close();
    await server.shutdown();

    expect(failure.code).toBe('PERMISSION_DENIED');
    expect(failure.message).toBe(
      "the memory store denied access to a key outside this agent's memory; the attempt was recorded",
    );
    expect(recorded).toEqual([
      {
        agentId: 'agent-a',
        action: 'auth.denied',
        outcome: AuditOutcome.AUDIT_OUTCOME_DENIED,
        attributes: {
          rpc: 'cordon.v1.MemoryService/Put',
          reason: 'store.acl',
          namespace: 'n',
          key: 'k',
        },
      },
    ]);
  });
});

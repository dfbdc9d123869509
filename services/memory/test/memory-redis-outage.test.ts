import { status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { checkHealth } from '../../../test/support/grpc-probes.js';
import {
  cleanUpHarness,
  failureOf,
  newAgentId,
  startMemory,
  type AgentClient,
  type MemoryUnderTest,
} from './support/memory-harness.js';
import {
  destroyAllTestRedis,
  expectRedisAgentClean,
  freePort,
  startTestRedis,
  type TestRedis,
} from './support/test-redis.js';

const MEMORY_SERVICE = 'cordon.v1.MemoryService';
/** Quick timeouts and health checks, so outages show within a test's patience. */
const OUTAGE_ENV = {
  CORDON_MEMORY_REDIS_TIMEOUT_MS: '500',
  CORDON_MEMORY_HEALTH_INTERVAL_MS: '100',
};

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    await cleanup();
  }
  await cleanUpHarness();
});

afterAll(async () => {
  await destroyAllTestRedis();
});

/** Polls until `condition` returns true, or fails after the timeout. */
async function eventually(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<number> {
  const startedAt = Date.now();
  for (;;) {
    if (await condition().catch(() => false)) return Date.now() - startedAt;
    if (Date.now() - startedAt > timeoutMs)
      throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function timed<T>(promise: Promise<T>): Promise<{ result: T; ms: number }> {
  const startedAt = performance.now();
  const result = await promise;
  return { result, ms: performance.now() - startedAt };
}

async function setUp(redis?: TestRedis): Promise<{
  redis: TestRedis;
  memory: MemoryUnderTest;
  agent: AgentClient;
}> {
  const server = redis ?? (await startTestRedis());
  const memory = await startMemory({ CORDON_MEMORY_REDIS_URL: server.url, ...OUTAGE_ENV });
  const agent = memory.as(newAgentId());
  cleanups.push(async () => {
    await server.start().catch(() => undefined);
    await eventually(async () => (await agent.list({ namespace: 'n' })).keys.length >= 0);
    await agent.deleteWritten();
    await expectRedisAgentClean(server, agent.agentId!);
    await memory.stop();
  });
  return { redis: server, memory, agent };
}

describe('memory while Redis is away', () => {
  it('fails fast, reports NOT_SERVING and recovers by itself', async () => {
    const { redis, memory, agent } = await setUp();
    await agent.put({ namespace: 'n', key: 'before', value: Buffer.from('kept') });
    expect(await checkHealth(memory.address, MEMORY_SERVICE)).toBe('SERVING');

    await redis.stop('SIGKILL');
    const down = await timed(
      failureOf(agent.put({ namespace: 'n', key: 'during', value: Buffer.from('x') })),
    );
    const read = await failureOf(agent.get({ namespace: 'n', key: 'before' }));
    await eventually(
      async () => (await checkHealth(memory.address, MEMORY_SERVICE)) === 'NOT_SERVING',
    );
    const overall = await checkHealth(memory.address);

    await redis.start();
    const recoveryMs = await eventually(
      async () => (await checkHealth(memory.address, MEMORY_SERVICE)) === 'SERVING',
    );
    const after = await agent.get({ namespace: 'n', key: 'before' });

    expect(down.result.code).toBe('UNAVAILABLE');
    expect(down.result.message).toBe('the memory store is unavailable; try again shortly');
    expect(down.ms).toBeLessThan(1_000);
    expect(read.code).toBe('UNAVAILABLE');
    expect(overall).toBe('NOT_SERVING');
    expect(recoveryMs).toBeLessThan(5_000);
    expect(after.value.toString()).toBe('kept');
    expect(
      memory.process.logs.some((line) => line.msg === 'memory store does not respond; not serving'),
    ).toBe(true);
    expect(memory.process.logs.some((line) => line.msg === 'memory store responds; serving')).toBe(
      true,
    );
  });

  it('keeps every acknowledged write across a Redis kill', async () => {
    const { redis, agent } = await setUp();
    const acknowledged = new Map<string, number>();
    let failures = 0;

    const writers = Array.from({ length: 8 }, async (_, writer) => {
      for (let index = 0; index < 400; index += 1) {
        const key = `w${writer}-${index}`;
        try {
          const { version } = await agent.put({ namespace: 'n', key, value: Buffer.from(key) });
          acknowledged.set(key, version);
        } catch {
          failures += 1;
          return;
        }
      }
    });
    await new Promise((resolve) => setTimeout(resolve, 150));
    await redis.stop('SIGKILL');
    await Promise.all(writers);
    await redis.start();
    await eventually(async () => (await agent.list({ namespace: 'n' })).keys.length > 0);

    const missing: string[] = [];
    for (const [key, version] of acknowledged) {
      const got = await agent.get({ namespace: 'n', key });
      if (got.version !== version || got.value.toString() !== key) missing.push(key);
    }

    expect(acknowledged.size).toBeGreaterThan(0);
    expect(failures).toBe(8);
    expect(missing).toEqual([]);
  });

  it('settles every call in flight when the connection drops', async () => {
    const { redis, agent } = await setUp();
    await agent.put({ namespace: 'n', key: 'warm', value: Buffer.from('x') });

    const calls = Array.from({ length: 64 }, (_, index) =>
      timed(
        agent
          .put({ namespace: 'n', key: `k${index}`, value: Buffer.alloc(64 * 1024) }, 10_000)
          .then(
            () => 'OK',
            (error: unknown) => status[(error as ServiceError).code],
          ),
      ),
    );
    await redis.stop('SIGKILL');
    const settled = await Promise.all(calls);

    const codes = new Set(settled.map((call) => call.result));
    expect([...codes].filter((code) => code !== 'OK' && code !== 'UNAVAILABLE')).toEqual([]);
    expect(Math.max(...settled.map((call) => call.ms))).toBeLessThan(2_000);
  });

  it('fails within the timeout while Redis is frozen, then serves again', async () => {
    const { redis, memory, agent } = await setUp();
    await agent.put({ namespace: 'n', key: 'k', value: Buffer.from('x') });

    redis.freeze();
    const frozen = await timed(failureOf(agent.get({ namespace: 'n', key: 'k' }, 5_000)));
    const shortDeadline = await timed(failureOf(agent.get({ namespace: 'n', key: 'k' }, 200)));
    await eventually(
      async () => (await checkHealth(memory.address, MEMORY_SERVICE)) === 'NOT_SERVING',
    );
    redis.thaw();
    await eventually(async () => (await checkHealth(memory.address, MEMORY_SERVICE)) === 'SERVING');
    const after = await agent.get({ namespace: 'n', key: 'k' });

    expect(frozen.result.code).toBe('UNAVAILABLE');
    expect(frozen.ms).toBeGreaterThanOrEqual(450);
    expect(frozen.ms).toBeLessThan(1_500);
    expect(shortDeadline.result.code).toBe('DEADLINE_EXCEEDED');
    expect(shortDeadline.ms).toBeLessThan(500);
    expect(after.value.toString()).toBe('x');
  });

  it('starts NOT_SERVING without Redis and serves once it comes up', async () => {
    const port = await freePort();
    const memory = await startMemory({
      CORDON_MEMORY_REDIS_URL: `redis://127.0.0.1:${port}/0`,
      ...OUTAGE_ENV,
    });
    const agent = memory.as(newAgentId());

    await eventually(
      async () => (await checkHealth(memory.address, MEMORY_SERVICE)) === 'NOT_SERVING',
    );
    const early = await timed(
      failureOf(agent.put({ namespace: 'n', key: 'k', value: Buffer.from('x') })),
    );
    const redis = await startTestRedis(port);
    cleanups.push(async () => {
      await agent.deleteWritten();
      await expectRedisAgentClean(redis, agent.agentId!);
      await memory.stop();
    });
    const readyMs = await eventually(
      async () => (await checkHealth(memory.address, MEMORY_SERVICE)) === 'SERVING',
    );
    const stored = await agent.put({ namespace: 'n', key: 'k', value: Buffer.from('x') });

    expect(early.result.code).toBe('UNAVAILABLE');
    expect(early.ms).toBeLessThan(500);
    expect(
      memory.process.logs.some((line) => line.msg === 'redis unreachable at start-up; retrying'),
    ).toBe(true);
    expect(readyMs).toBeLessThan(5_000);
    expect(stored.version).toBe(1);
  });
});

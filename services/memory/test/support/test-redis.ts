import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { expect } from 'vitest';

/**
 * A redis-server of a test's own, on a free loopback port with its data in
 * a temporary folder, persisting every write to its append-only file as
 * deploy/redis/redis.conf does. Tests may stop, kill, freeze and restart it.
 */
export interface TestRedis {
  readonly port: number;
  readonly dir: string;
  readonly url: string;
  /** Starts redis-server again on the same port and folder, reading back its data. */
  start(): Promise<void>;
  /** Stops redis-server with a signal (SIGTERM saves, SIGKILL does not) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Suspends the process, so connections stay open but nothing replies. */
  freeze(): void;
  thaw(): void;
  /** Runs commands as Redis's default user on a short-lived connection. */
  admin<T>(operation: (client: Redis) => Promise<T>): Promise<T>;
  /** Stops redis-server and removes its folder. */
  destroy(): Promise<void>;
}

const started = new Set<TestRedis>();

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

/** Creates a client of a test Redis that connects on demand and never retries. */
function loopbackClient(port: number): Redis {
  return new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
}

async function waitForPing(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const client = loopbackClient(port);
    client.on('error', () => undefined);
    try {
      await client.connect();
      // PING fails with LOADING while the append-only file is read back.
      await client.ping();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      client.disconnect();
    }
  }
}

/** Starts a fresh redis-server, on a free port unless one is given; `destroyAllTestRedis` removes every one a file started. */
export async function startTestRedis(port?: number): Promise<TestRedis> {
  port ??= await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'cordon-memory-redis-'));
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const redisPort = port;
  const isRunning = (): boolean =>
    child !== undefined && child.exitCode === null && child.signalCode === null;

  const start = async (): Promise<void> => {
    // A second redis-server on the same port would exit at once and leave
    // this handle pointing at it, not at the one still serving.
    if (isRunning()) return;
    const server = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        'everysec',
        '--save',
        '',
        '--maxmemory-policy',
        'noeviction',
        '--logfile',
        join(dir, 'redis.log'),
      ],
      { stdio: 'ignore' },
    );
    child = server;
    exited = new Promise((resolve) => server.once('exit', () => resolve()));
    await waitForPing(redisPort);
  };

  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (!isRunning()) return;
    child?.kill('SIGCONT');
    child?.kill(signal);
    await exited;
  };

  const redis: TestRedis = {
    port,
    dir,
    url: `redis://127.0.0.1:${port}/0`,
    start,
    stop,
    freeze: () => child?.kill('SIGSTOP'),
    thaw: () => child?.kill('SIGCONT'),
    admin: async (operation) => {
      const client = loopbackClient(port);
      client.on('error', () => undefined);
      try {
        await client.connect();
        return await operation(client);
      } finally {
        client.disconnect();
      }
    },
    destroy: async () => {
      started.delete(redis);
      await stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
  started.add(redis);
  await start();
  return redis;
}

export async function destroyAllTestRedis(): Promise<void> {
  await Promise.all([...started].map((redis) => redis.destroy()));
}

/** Returns every Redis key of an agent, sorted. */
export function agentRedisKeys(redis: TestRedis, agentId: string): Promise<string[]> {
  return redis.admin(async (client) => (await client.keys(`cordon:mem:{${agentId}}:*`)).sort());
}

/**
 * Fails unless an agent whose keys were all deleted left only its counter
 * hash behind, at zero keys and bytes. Then it deletes that hash, which
 * keeps the agent's last version, and checks that no key remains.
 */
export async function expectRedisAgentClean(redis: TestRedis, agentId: string): Promise<void> {
  const meta = `cordon:mem:{${agentId}}:meta`;
  const keys = await agentRedisKeys(redis, agentId);
  expect(keys.filter((key) => key !== meta)).toEqual([]);

  if (keys.includes(meta)) {
    const usage = await redis.admin((client) => client.hmget(meta, 'keys', 'bytes'));
    expect(usage).toEqual(['0', '0']);
    await redis.admin((client) => client.del(meta));
  }
  expect(await agentRedisKeys(redis, agentId)).toEqual([]);
}

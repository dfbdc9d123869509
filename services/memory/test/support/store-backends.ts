import { join } from 'node:path';
import Database from 'better-sqlite3';
import { expect } from 'vitest';
import { makeTempDir } from './memory-harness.js';
import { expectRedisAgentClean, startTestRedis, type TestRedis } from './test-redis.js';

/** One kind of store the contract suite runs against. */
export interface StoreBackend {
  readonly name: 'redis' | 'sqlite';
  /** Environment that points a memory service at this store. */
  readonly env: Record<string, string>;
  /** Fails unless an agent whose keys were all deleted left nothing but zeroed counters behind. */
  expectClean(agentId: string): Promise<void>;
}

export async function redisBackend(): Promise<StoreBackend & { redis: TestRedis }> {
  const redis = await startTestRedis();
  return {
    name: 'redis',
    redis,
    env: { CORDON_MEMORY_REDIS_URL: redis.url },
    expectClean: (agentId) => expectRedisAgentClean(redis, agentId),
  };
}

export function sqliteBackend(): StoreBackend {
  const databasePath = join(makeTempDir(), 'memory.db');
  return {
    name: 'sqlite',
    env: { CORDON_MEMORY_DB_PATH: databasePath },
    expectClean: (agentId) => {
      const db = new Database(databasePath, { readonly: true });
      try {
        const entries = db
          .prepare<[string], { count: number }>(
            'SELECT count(*) AS count FROM entries WHERE agent_id = ?',
          )
          .get(agentId);
        const usage = db
          .prepare<[string], { keys: number; bytes: number }>(
            'SELECT keys, bytes FROM agents WHERE agent_id = ?',
          )
          .get(agentId);
        expect(entries?.count).toBe(0);
        expect(usage ?? { keys: 0, bytes: 0 }).toEqual({ keys: 0, bytes: 0 });
      } finally {
        db.close();
      }
      return Promise.resolve();
    },
  };
}

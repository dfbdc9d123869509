import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@cordon/service-kit';
import { RedisConnections } from '../src/redis-connections.js';
import { parseRedisUrl } from '../src/redis-endpoint.js';
import { agentKeys, entryId, indexKey, valueKey } from '../src/redis-keys.js';
import { DELETE_SCRIPT, GET_SCRIPT, PUT_SCRIPT, runScript } from '../src/redis-scripts.js';
import { classifyRedisError } from '../src/store-errors.js';
import { newAgentId } from './support/memory-harness.js';
import { agentRedisKeys, startTestRedis, type TestRedis } from './support/test-redis.js';

const logger = createLogger({ service: 'memory-test', level: 'silent' });

let redis: TestRedis;
const opened: RedisConnections[] = [];
const usedAgents: string[] = [];

function connect(): RedisConnections {
  const connections = new RedisConnections({
    endpoint: parseRedisUrl('CORDON_MEMORY_REDIS_URL', redis.url),
    timeoutMs: 1_000,
    aclRotationMs: 3_600_000,
    maxAgentConnections: 16,
    logger,
  });
  opened.push(connections);
  return connections;
}

function agent(label: string): string {
  const agentId = newAgentId(label);
  usedAgents.push(agentId);
  return agentId;
}

interface AclUser {
  flags: string[];
  passwords: string[];
  commands: string;
  keys: string;
}

async function aclUser(agentId: string): Promise<AclUser | null> {
  const reply = (await redis.admin((client) =>
    client.call('ACL', 'GETUSER', `cordon-agent-${agentId}`),
  )) as unknown[] | null;
  if (reply === null) return null;
  const fields = new Map<string, unknown>();
  for (let index = 0; index < reply.length; index += 2) {
    fields.set(String(reply[index]), reply[index + 1]);
  }
  return {
    flags: fields.get('flags') as string[],
    passwords: fields.get('passwords') as string[],
    commands: fields.get('commands') as string,
    keys: fields.get('keys') as string,
  };
}

function rejection(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => {
      throw new Error('Redis accepted a command it should have refused');
    },
    (error: unknown) => error as Error,
  );
}

beforeAll(async () => {
  redis = await startTestRedis();
});

afterEach(async () => {
  await Promise.all(opened.splice(0).map((connections) => connections.close()));
  for (const agentId of usedAgents.splice(0)) {
    await redis.admin((client) =>
      client.del(...['meta', 'exp'].map((suffix) => `cordon:mem:{${agentId}}:${suffix}`)),
    );
    expect(await agentRedisKeys(redis, agentId)).toEqual([]);
  }
});

afterAll(async () => {
  await redis.destroy();
});

describe('per-agent Redis users', () => {
  it("refuse another agent's key on the agent's own connection", async () => {
    const connections = connect();
    await connections.start();
    const owner = agent('owner');
    const victim = agent('victim');
    const victimValue = valueKey(agentKeys(victim), 'notes', 'plan');
    await redis.admin((client) =>
      client.hset(victimValue, 'v', 'victim data', 'ver', '1', 'exp', '0'),
    );
    const client = await connections.forAgent(owner);

    const direct = await rejection(client.hmget(victimValue, 'v'));
    const declared = await rejection(runScript(client, GET_SCRIPT, [victimValue], [], true));
    const own = await runScript(
      client,
      GET_SCRIPT,
      [valueKey(agentKeys(owner), 'notes', 'plan')],
      [],
      true,
    );

    expect(direct.message).toMatch(/^NOPERM /);
    expect(declared.message).toMatch(/^NOPERM /);
    expect(classifyRedisError(direct)).toBe('denied');
    expect(own).toBeNull();
    expect(await redis.admin((client) => client.hget(victimValue, 'v'))).toBe('victim data');
    await redis.admin((client) => client.del(victimValue));
  });

  it('refuse a key that a script builds for another agent', async () => {
    const connections = connect();
    await connections.start();
    const owner = agent('owner');
    const victim = agent('victim');
    const ownerKeys = agentKeys(owner);
    const victimKeys = agentKeys(victim);
    const victimValue = valueKey(victimKeys, 'notes', 'plan');
    await redis.admin(async (client) => {
      await client.hset(victimValue, 'v', 'victim data', 'ver', '1', 'size', '11', 'exp', '1');
      // An expired entry in the owner's own expiry set makes the script
      // compute a value key from the prefix argument, which here is wrong.
      await client.zadd(ownerKeys.expiry, 1, entryId('notes', 'plan'));
    });
    const client = await connections.forAgent(owner);

    const error = await rejection(
      runScript(
        client,
        DELETE_SCRIPT,
        [ownerKeys.meta, ownerKeys.expiry, valueKey(ownerKeys, 'n', 'k'), indexKey(ownerKeys, 'n')],
        [-1, victimKeys.prefix, entryId('n', 'k'), 'k'],
      ),
    );

    expect(error.message).toContain(
      "The user executing the script can't access at least one of the keys",
    );
    expect(classifyRedisError(error)).toBe('denied');
    expect(await redis.admin((client) => client.hget(victimValue, 'v'))).toBe('victim data');
    await redis.admin((client) => client.del(victimValue));
  });

  it('may run only the scripts and the commands they call', async () => {
    const connections = connect();
    await connections.start();
    const owner = agent('owner');
    const client = await connections.forAgent(owner);

    const user = await aclUser(owner);
    const flush = await rejection(client.call('FLUSHALL'));
    const config = await rejection(client.call('CONFIG', 'GET', 'dir'));

    expect(user?.flags).toEqual(['on']);
    expect(user?.passwords).toHaveLength(1);
    expect(user?.keys).toBe(`~cordon:mem:{${owner}}:*`);
    expect(user?.commands.split(' ').sort()).toEqual(
      [
        '-@all',
        '+evalsha',
        '+eval',
        '+time',
        '+hget',
        '+hmget',
        '+hset',
        '+hincrby',
        '+del',
        '+zadd',
        '+zrem',
        '+zrangebyscore',
        '+zremrangebyscore',
        '+zrangebylex',
      ].sort(),
    );
    expect(flush.message).toMatch(/^NOPERM /);
    expect(config.message).toMatch(/^NOPERM /);
  });

  it('rotate passwords and keep serving', async () => {
    const connections = connect();
    await connections.start();
    const owner = agent('owner');
    const keys = agentKeys(owner);
    const before = await connections.forAgent(owner);
    const passwordBefore = (await aclUser(owner))?.passwords;

    await connections.rotatePasswords();
    const passwordAfter = (await aclUser(owner))?.passwords;
    const after = await connections.forAgent(owner);
    const stored = await runScript(
      after,
      PUT_SCRIPT,
      [keys.meta, keys.expiry, valueKey(keys, 'n', 'k'), indexKey(keys, 'n')],
      ['v', '', 0, -1, 10, 100, keys.prefix, entryId('n', 'k'), 'k'],
    );

    expect(passwordAfter).toHaveLength(1);
    expect(passwordAfter).not.toEqual(passwordBefore);
    expect(after).not.toBe(before);
    expect(stored).toEqual(['stored', 1]);
    await redis.admin((client) => client.del(valueKey(keys, 'n', 'k'), indexKey(keys, 'n')));
  });

  it('let two service instances share a user', async () => {
    const first = connect();
    const second = connect();
    await Promise.all([first.start(), second.start()]);
    const owner = agent('owner');
    await first.forAgent(owner);
    await second.forAgent(owner);
    const both = (await aclUser(owner))?.passwords;

    await first.rotatePasswords();
    await second.rotatePasswords();
    const fromSecond = await second.forAgent(owner);
    const reply = await runScript(
      fromSecond,
      GET_SCRIPT,
      [valueKey(agentKeys(owner), 'n', 'k')],
      [],
      true,
    );
    await first.close();
    const afterFirstClosed = (await aclUser(owner))?.passwords;

    expect(both).toHaveLength(2);
    expect(reply).toBeNull();
    expect(afterFirstClosed).toHaveLength(1);
  });

  it('lose their password when the service closes', async () => {
    const connections = connect();
    await connections.start();
    const owner = agent('owner');
    await connections.forAgent(owner);

    await connections.close();

    expect((await aclUser(owner))?.passwords).toEqual([]);
  });

  it('come back after Redis restarts without its users', async () => {
    const connections = connect();
    await connections.start();
    const owner = agent('owner');
    await connections.forAgent(owner);

    await redis.stop('SIGKILL');
    await redis.start();
    const userAfterRestart = await aclUser(owner);
    const deadline = Date.now() + 5_000;
    while (!connections.isReady && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const client = await connections.forAgent(owner);
    const reply = await runScript(
      client,
      GET_SCRIPT,
      [valueKey(agentKeys(owner), 'n', 'k')],
      [],
      true,
    );

    expect(userAfterRestart).toBeNull();
    expect(reply).toBeNull();
    expect((await aclUser(owner))?.passwords).toHaveLength(1);
  });
});

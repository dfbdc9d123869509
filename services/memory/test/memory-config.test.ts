import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startServiceProcess } from '../../../test/support/service-process.js';
import {
  cleanUpHarness,
  makeTempDir,
  MEMORY_MAIN,
  newAgentId,
  startMemory,
} from './support/memory-harness.js';
import {
  agentRedisKeys,
  destroyAllTestRedis,
  expectRedisAgentClean,
  startTestRedis,
} from './support/test-redis.js';

afterEach(async () => {
  await cleanUpHarness();
});

afterAll(async () => {
  await destroyAllTestRedis();
});

describe('memory configuration', () => {
  it.each([
    [
      'a default TTL above the maximum',
      { CORDON_MEMORY_DEFAULT_TTL_SECONDS: '100', CORDON_MEMORY_MAX_TTL_SECONDS: '50' },
      'invalid configuration: CORDON_MEMORY_DEFAULT_TTL_SECONDS (100) is above CORDON_MEMORY_MAX_TTL_SECONDS (50); lower the default or raise the maximum',
    ],
    [
      'a value limit above the gRPC message limit',
      { CORDON_MEMORY_MAX_VALUE_BYTES: '16m' },
      'invalid configuration: a Put or Get of the largest value needs 16448KiB (CORDON_MEMORY_MAX_VALUE_BYTES + 64KiB), above the gRPC message limit 16MiB; lower CORDON_MEMORY_MAX_VALUE_BYTES or raise CORDON_GRPC_MAX_RECEIVE_MESSAGE_BYTES and CORDON_GRPC_MAX_SEND_MESSAGE_BYTES',
    ],
    [
      'a Redis URL with another scheme, without repeating it',
      { CORDON_MEMORY_REDIS_URL: 'http://user:hunter2@127.0.0.1:6379' },
      'invalid configuration: CORDON_MEMORY_REDIS_URL is invalid: its scheme is http:; expected redis://[user:password@]host[:port][/db] or rediss:// for TLS',
    ],
    [
      'a group without its Redis URL',
      { CORDON_MEMORY_REDIS_URL: 'redis://127.0.0.1:1/0', CORDON_MEMORY_AGENT_GROUPS: 'lab-*=lab' },
      "invalid configuration: CORDON_MEMORY_AGENT_GROUPS maps agents to group LAB but CORDON_MEMORY_REDIS_URL_LAB is not set; set it to that group's redis:// URL",
    ],
    [
      'a group URL that no entry names',
      {
        CORDON_MEMORY_REDIS_URL: 'redis://127.0.0.1:1/0',
        CORDON_MEMORY_REDIS_URL_LABS: 'redis://127.0.0.1:2/0',
      },
      'invalid configuration: CORDON_MEMORY_REDIS_URL_LABS is set but CORDON_MEMORY_AGENT_GROUPS maps no agent to group LABS; add an entry such as "agent-*=LABS" or unset CORDON_MEMORY_REDIS_URL_LABS',
    ],
    [
      'groups without a default Redis',
      {
        CORDON_MEMORY_AGENT_GROUPS: 'lab-*=lab',
        CORDON_MEMORY_REDIS_URL_LAB: 'redis://127.0.0.1:2/0',
      },
      'invalid configuration: CORDON_MEMORY_AGENT_GROUPS is set but CORDON_MEMORY_REDIS_URL is not; set the Redis for agents outside every group',
    ],
    [
      'a malformed audit address',
      { CORDON_AUDIT_ADDRESS: 'audit' },
      'invalid configuration: CORDON_AUDIT_ADDRESS="audit" is invalid: expected host:port, such as 127.0.0.1:7101 or [::1]:7101, with a port from 0 to 65535',
    ],
  ])('stops with exit 2 on %s', async (_case, env, message) => {
    const memory = startServiceProcess(MEMORY_MAIN, [], {
      CORDON_MEMORY_ADDRESS: '127.0.0.1:0',
      CORDON_MEMORY_DB_PATH: join(makeTempDir(), 'memory.db'),
      ...env,
    });

    expect(await memory.exited).toEqual({ code: 2, signal: null });
    expect(memory.stderr()).toBe(`cordon-memory: ${message}\n`);
  });

  it('stops with exit 2 when the database cannot be opened', async () => {
    const occupied = join(makeTempDir(), 'occupied');
    writeFileSync(occupied, 'a file where the database folder should be');
    const memory = startServiceProcess(MEMORY_MAIN, [], {
      CORDON_MEMORY_ADDRESS: '127.0.0.1:0',
      CORDON_MEMORY_DB_PATH: `${occupied}/memory.db`,
    });

    expect(await memory.exited).toEqual({ code: 2, signal: null });
    expect(memory.stderr()).toBe(
      `cordon-memory: the memory database ${occupied}/memory.db cannot be opened (EEXIST: file already exists, mkdir '${occupied}'); set CORDON_MEMORY_DB_PATH to a writable file\n`,
    );
  });

  it('logs at start-up that auditing is off', async () => {
    const redis = await startTestRedis();
    const memory = await startMemory({ CORDON_MEMORY_REDIS_URL: redis.url });

    const line = await memory.process.waitForLog(
      (entry) => entry.msg?.startsWith('auditing is off') === true,
    );
    await memory.stop();

    expect(line.level).toBe('warn');
    expect(line.msg).toBe(
      'auditing is off: set CORDON_AUDIT_ADDRESS to record memory writes and denials',
    );
  });
});

describe('memory agent groups', () => {
  it("keeps each group's agents on the group's Redis", async () => {
    const shared = await startTestRedis();
    const lab = await startTestRedis();
    const memory = await startMemory({
      CORDON_MEMORY_REDIS_URL: shared.url,
      CORDON_MEMORY_AGENT_GROUPS: 'lab-*=lab',
      CORDON_MEMORY_REDIS_URL_LAB: lab.url,
    });
    const labAgent = memory.as(newAgentId('lab'));
    const opsAgent = memory.as(newAgentId('ops'));

    await labAgent.put({ namespace: 'n', key: 'k', value: Buffer.from('lab data') });
    await opsAgent.put({ namespace: 'n', key: 'k', value: Buffer.from('ops data') });
    const labOnLab = await agentRedisKeys(lab, labAgent.agentId!);
    const labOnShared = await agentRedisKeys(shared, labAgent.agentId!);
    const opsOnShared = await agentRedisKeys(shared, opsAgent.agentId!);
    const opsOnLab = await agentRedisKeys(lab, opsAgent.agentId!);
    const ready = memory.process.logs.find((line) => line.msg === 'memory ready');

    expect(labOnLab).toHaveLength(3);
    expect(labOnShared).toEqual([]);
    expect(opsOnShared).toHaveLength(3);
    expect(opsOnLab).toEqual([]);
    expect(ready?.['stores']).toEqual([`redis ${shared.url}`, `redis ${lab.url}`]);

    await labAgent.deleteWritten();
    await opsAgent.deleteWritten();
    await expectRedisAgentClean(lab, labAgent.agentId!);
    await expectRedisAgentClean(shared, opsAgent.agentId!);
    await memory.stop();
  });
});

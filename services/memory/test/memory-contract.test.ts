import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  cleanUpHarness,
  failureOf,
  newAgentId,
  startMemory,
  type AgentClient,
  type MemoryUnderTest,
} from './support/memory-harness.js';
import { redisBackend, sqliteBackend, type StoreBackend } from './support/store-backends.js';
import { destroyAllTestRedis } from './support/test-redis.js';

/** Small limits, so quotas and maxima are reached in a few calls. */
const LIMITS_ENV = {
  CORDON_MEMORY_MAX_VALUE_BYTES: '4096',
  CORDON_MEMORY_MAX_KEYS_PER_AGENT: '20',
  CORDON_MEMORY_MAX_BYTES_PER_AGENT: '8192',
  CORDON_MEMORY_MAX_TTL_SECONDS: '3600',
  CORDON_MEMORY_DEFAULT_PAGE_SIZE: '4',
  CORDON_MEMORY_MAX_PAGE_SIZE: '10',
};

const NAME_RULE = 'A-Z a-z 0-9 . _ : / -';

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Follows page tokens to the end and returns every key in the order received. */
async function listAll(
  agent: AgentClient,
  request: { namespace: string; prefix?: string; pageSize?: number },
): Promise<string[][]> {
  const pages: string[][] = [];
  let pageToken = '';
  do {
    const page = await agent.list({ ...request, pageToken });
    pages.push(page.keys.map((entry) => entry.key));
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  return pages;
}

describe.each([
  ['redis', redisBackend],
  ['sqlite', () => Promise.resolve(sqliteBackend())],
] as const)('memory contract on %s', (_name, makeBackend) => {
  let backend: StoreBackend;
  let memory: MemoryUnderTest;
  const agents: AgentClient[] = [];

  const newAgent = (label?: string): AgentClient => {
    const agent = memory.as(newAgentId(label));
    agents.push(agent);
    return agent;
  };

  beforeAll(async () => {
    backend = await makeBackend();
    memory = await startMemory({ ...backend.env, ...LIMITS_ENV });
  });

  afterEach(async () => {
    for (const agent of agents.splice(0)) {
      await agent.deleteWritten();
      await backend.expectClean(agent.agentId!);
      agent.close();
    }
  });

  afterAll(async () => {
    await memory.stop();
    await cleanUpHarness();
    await destroyAllTestRedis();
  });

  it('stores binary values and reads them back', async () => {
    const agent = newAgent();
    const value = Buffer.from([0, 1, 2, 0xff, 0xfe, 10, 13, 0]);

    const put = await agent.put({
      namespace: 'notes',
      key: 'plan',
      value,
      contentType: 'application/octet-stream',
    });
    const got = await agent.get({ namespace: 'notes', key: 'plan' });

    expect(put.version).toBe(1);
    expect(got.value).toEqual(value);
    expect(got.contentType).toBe('application/octet-stream');
    expect(got.version).toBe(1);
    expect(got.ttlRemainingMs).toBeUndefined();
  });

  it('raises versions on every write, also across a delete', async () => {
    const agent = newAgent();
    const key = { namespace: 'plans', key: 'step' };

    const first = await agent.put({ ...key, value: Buffer.from('a') });
    const second = await agent.put({ ...key, value: Buffer.from('b') });
    const other = await agent.put({ namespace: 'plans', key: 'other', value: Buffer.from('c') });
    const deleted = await agent.delete(key);
    const recreated = await agent.put({ ...key, value: Buffer.from('d') });

    expect([first.version, second.version, other.version]).toEqual([1, 2, 3]);
    expect(deleted.deleted).toBe(true);
    expect(recreated.version).toBe(4);
    expect((await agent.get(key)).version).toBe(4);
  });

  it('writes only when if_version matches', async () => {
    const agent = newAgent();
    const key = { namespace: 'notes', key: 'draft' };

    const created = await agent.put({ ...key, value: Buffer.from('one'), ifVersion: 0 });
    const again = await failureOf(agent.put({ ...key, value: Buffer.from('two'), ifVersion: 0 }));
    const updated = await agent.put({ ...key, value: Buffer.from('three'), ifVersion: 1 });
    const stale = await failureOf(agent.put({ ...key, value: Buffer.from('four'), ifVersion: 1 }));

    expect(created.version).toBe(1);
    expect(again.code).toBe('ABORTED');
    expect(again.message).toBe(
      'if_version 0 requires key "draft" in namespace "notes" to be absent, but it exists at version 1; read it again and retry',
    );
    expect(again.details?.currentVersion).toBe(1);
    expect(updated.version).toBe(2);
    expect(stale.message).toBe(
      'if_version 1 does not match the current version 2 of key "draft" in namespace "notes"; read it again and retry',
    );
    expect(stale.details?.currentVersion).toBe(2);
    expect((await agent.get(key)).value.toString()).toBe('three');
  });

  it('rejects if_version of a key that does not exist', async () => {
    const agent = newAgent();

    const failure = await failureOf(
      agent.put({ namespace: 'notes', key: 'missing', value: Buffer.from('x'), ifVersion: 5 }),
    );

    expect(failure.code).toBe('ABORTED');
    expect(failure.message).toBe(
      'if_version 5 does not match: key "missing" in namespace "notes" does not exist (current version 0); read it again and retry',
    );
    expect(failure.details?.currentVersion).toBe(0);
    expect((await failureOf(agent.get({ namespace: 'notes', key: 'missing' }))).code).toBe(
      'NOT_FOUND',
    );
  });

  it('lets only one of many concurrent creates win', async () => {
    const agent = newAgent();
    const key = { namespace: 'race', key: 'leader' };

    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, index) =>
        agent.put({ ...key, value: Buffer.from(`writer ${index}`), ifVersion: 0 }),
      ),
    );

    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    expect(results.filter((result) => result.status === 'rejected')).toHaveLength(9);
    expect((await agent.get(key)).version).toBe(1);
  });

  it('deletes only at the given version', async () => {
    const agent = newAgent();
    const key = { namespace: 'notes', key: 'old' };
    await agent.put({ ...key, value: Buffer.from('x') });

    const stale = await failureOf(agent.delete({ ...key, ifVersion: 7 }));
    const deleted = await agent.delete({ ...key, ifVersion: 1 });
    const again = await agent.delete({ ...key, ifVersion: 1 });
    const missing = await failureOf(agent.get(key));

    expect(stale.code).toBe('ABORTED');
    expect(stale.details?.currentVersion).toBe(1);
    expect(deleted.deleted).toBe(true);
    expect(again.deleted).toBe(false);
    expect(missing.code).toBe('NOT_FOUND');
    expect(missing.message).toBe('key "old" does not exist in namespace "notes"');
  });

  it('expires a key after its TTL', async () => {
    const agent = newAgent();
    const key = { namespace: 'cache', key: 'short' };
    await agent.put({ ...key, value: Buffer.from('x'), ttlSeconds: 1 });
    await agent.put({ namespace: 'cache', key: 'long', value: Buffer.from('y'), ttlSeconds: 3600 });

    const fresh = await agent.get(key);
    await sleep(1_100);
    const expired = await failureOf(agent.get(key));
    const listed = await agent.list({ namespace: 'cache' });

    expect(fresh.ttlRemainingMs).toBeGreaterThan(0);
    expect(fresh.ttlRemainingMs).toBeLessThanOrEqual(1_000);
    expect(expired.code).toBe('NOT_FOUND');
    expect(listed.keys.map((entry) => entry.key)).toEqual(['long']);
    expect(listed.keys[0]?.ttlRemainingMs).toBeGreaterThan(3_500_000);
  });

  it('frees the quota of expired keys', async () => {
    const agent = newAgent();
    for (let index = 0; index < 20; index += 1) {
      await agent.put({
        namespace: 'temp',
        key: `k${index}`,
        value: Buffer.from('x'),
        ttlSeconds: 1,
      });
    }
    const full = await failureOf(
      agent.put({ namespace: 'temp', key: 'more', value: Buffer.from('x') }),
    );

    await sleep(1_100);
    const afterExpiry = await agent.put({
      namespace: 'temp',
      key: 'more',
      value: Buffer.from('x'),
    });

    expect(full.code).toBe('RESOURCE_EXHAUSTED');
    expect(afterExpiry.version).toBe(21);
  });

  it('lists keys in order, page by page', async () => {
    const agent = newAgent();
    const names = ['e', 'a', 'i', 'c', 'g', 'b', 'j', 'd', 'h', 'f'];
    for (const key of names) {
      await agent.put({
        namespace: 'pages',
        key,
        value: Buffer.from(key.repeat(3)),
        contentType: 'text/plain',
      });
    }

    const first = await agent.list({ namespace: 'pages' });
    const pages = await listAll(agent, { namespace: 'pages' });

    expect(first.keys).toEqual([
      { key: 'a', version: 2, sizeBytes: 3, contentType: 'text/plain', ttlRemainingMs: undefined },
      { key: 'b', version: 6, sizeBytes: 3, contentType: 'text/plain', ttlRemainingMs: undefined },
      { key: 'c', version: 4, sizeBytes: 3, contentType: 'text/plain', ttlRemainingMs: undefined },
      { key: 'd', version: 8, sizeBytes: 3, contentType: 'text/plain', ttlRemainingMs: undefined },
    ]);
    expect(first.nextPageToken).not.toBe('');
    expect(pages).toEqual([
      ['a', 'b', 'c', 'd'],
      ['e', 'f', 'g', 'h'],
      ['i', 'j'],
    ]);
  });

  it('pages stably while keys change', async () => {
    const agent = newAgent();
    for (const key of ['b', 'd', 'f', 'h']) {
      await agent.put({ namespace: 'moving', key, value: Buffer.from('x') });
    }

    const first = await agent.list({ namespace: 'moving', pageSize: 2 });
    await agent.put({ namespace: 'moving', key: 'a', value: Buffer.from('x') });
    await agent.put({ namespace: 'moving', key: 'e', value: Buffer.from('x') });
    await agent.delete({ namespace: 'moving', key: 'f' });
    const rest = await listAll(agent, { namespace: 'moving', pageSize: 2 });
    const second = await agent.list({
      namespace: 'moving',
      pageSize: 10,
      pageToken: first.nextPageToken,
    });

    expect(first.keys.map((entry) => entry.key)).toEqual(['b', 'd']);
    expect(second.keys.map((entry) => entry.key)).toEqual(['e', 'h']);
    expect(second.nextPageToken).toBe('');
    expect(rest.flat()).toEqual(['a', 'b', 'd', 'e', 'h']);
  });

  it('lists only keys with the prefix', async () => {
    const agent = newAgent();
    for (const key of ['plan/1', 'plan/2', 'planet', 'notes/1', 'plan']) {
      await agent.put({ namespace: 'mixed', key, value: Buffer.from('x') });
    }

    const pages = await listAll(agent, { namespace: 'mixed', prefix: 'plan/', pageSize: 1 });
    const all = await listAll(agent, { namespace: 'mixed', prefix: 'plan', pageSize: 10 });

    expect(pages).toEqual([['plan/1'], ['plan/2']]);
    expect(all).toEqual([['plan', 'plan/1', 'plan/2', 'planet']]);
  });

  it('keeps namespaces apart whatever the separators', async () => {
    const agent = newAgent();

    await agent.put({ namespace: 'a', key: 'b:c', value: Buffer.from('first') });
    await agent.put({ namespace: 'a:b', key: 'c', value: Buffer.from('second') });
    await agent.put({ namespace: '1:a', key: 'x', value: Buffer.from('third') });

    expect((await agent.get({ namespace: 'a', key: 'b:c' })).value.toString()).toBe('first');
    expect((await agent.get({ namespace: 'a:b', key: 'c' })).value.toString()).toBe('second');
    expect((await listAll(agent, { namespace: 'a' })).flat()).toEqual(['b:c']);
    expect((await listAll(agent, { namespace: 'a:b' })).flat()).toEqual(['c']);
    expect((await listAll(agent, { namespace: '1:a' })).flat()).toEqual(['x']);
  });

  it('isolates agents that use the same names', async () => {
    const owner = newAgent('owner');
    const other = newAgent('other');
    await owner.put({ namespace: 'shared', key: 'secret', value: Buffer.from('owner data') });

    const read = await failureOf(other.get({ namespace: 'shared', key: 'secret' }));
    const listed = await other.list({ namespace: 'shared' });
    const deleted = await other.delete({ namespace: 'shared', key: 'secret' });
    const overwrite = await failureOf(
      other.put({ namespace: 'shared', key: 'secret', value: Buffer.from('x'), ifVersion: 1 }),
    );

    expect(read.code).toBe('NOT_FOUND');
    expect(listed.keys).toEqual([]);
    expect(deleted.deleted).toBe(false);
    expect(overwrite.details?.currentVersion).toBe(0);
    expect((await owner.get({ namespace: 'shared', key: 'secret' })).value.toString()).toBe(
      'owner data',
    );
  });

  it.each([
    [
      'an empty namespace',
      { namespace: '', key: 'k' },
      `namespace: is missing; use 1 to 64 characters of ${NAME_RULE}`,
    ],
    [
      'a long namespace',
      { namespace: 'n'.repeat(65), key: 'k' },
      'namespace: is 65 characters long, above the maximum of 64',
    ],
    [
      'a brace in the namespace',
      { namespace: 'x}:y', key: 'k' },
      `namespace: contains "}" at position 1; use only ${NAME_RULE}`,
    ],
    [
      'an empty key',
      { namespace: 'n', key: '' },
      `key: is missing; use 1 to 512 characters of ${NAME_RULE}`,
    ],
    [
      'a long key',
      { namespace: 'n', key: 'k'.repeat(513) },
      'key: is 513 characters long, above the maximum of 512',
    ],
    [
      'a glob in the key',
      { namespace: 'n', key: 'a*' },
      `key: contains "*" at position 1; use only ${NAME_RULE}`,
    ],
    [
      'a space in the key',
      { namespace: 'n', key: 'a b' },
      `key: contains " " at position 1; use only ${NAME_RULE}`,
    ],
    [
      'a non-ASCII key',
      { namespace: 'n', key: 'plän' },
      `key: contains "ä" at position 2; use only ${NAME_RULE}`,
    ],
  ])('rejects %s', async (_case, names, message) => {
    const agent = newAgent();

    const put = await failureOf(agent.put({ ...names, value: Buffer.from('x') }));
    const get = await failureOf(agent.get(names));

    expect(put).toEqual({
      code: 'INVALID_ARGUMENT',
      message,
      details: expect.objectContaining({
        fieldViolations: [
          { field: message.split(':')[0], description: message.slice(message.indexOf(': ') + 2) },
        ],
      }) as unknown,
    });
    expect(get.message).toBe(message);
  });

  it('rejects requests above the server maxima', async () => {
    const agent = newAgent();
    const names = { namespace: 'n', key: 'k' };

    const value = await failureOf(agent.put({ ...names, value: Buffer.alloc(4097) }));
    const ttl = await failureOf(agent.put({ ...names, value: Buffer.from('x'), ttlSeconds: 3601 }));
    const contentType = await failureOf(
      agent.put({ ...names, value: Buffer.from('x'), contentType: 'text/plain\n' }),
    );
    const pageSize = await failureOf(agent.list({ namespace: 'n', pageSize: 11 }));
    const prefix = await failureOf(agent.list({ namespace: 'n', prefix: 'a b' }));

    expect(value.message).toBe(
      "value: is 4097 bytes, above this server's maximum of 4096; store less or raise CORDON_MEMORY_MAX_VALUE_BYTES",
    );
    expect(ttl.message).toBe(
      "ttl_seconds: 3601 is above this server's maximum of 3600; lower it or raise CORDON_MEMORY_MAX_TTL_SECONDS",
    );
    expect(contentType.message).toBe(
      'content_type: contains a character outside printable ASCII or starts with a space; send a media type such as application/json',
    );
    expect(pageSize.message).toBe(
      "page_size: 11 is above this server's maximum of 10; ask for fewer keys per page",
    );
    expect(prefix.message).toBe(`prefix: contains " " at position 1; use only ${NAME_RULE}`);
    expect(await agent.put({ ...names, value: Buffer.alloc(4096) })).toEqual({ version: 1 });
  });

  it('enforces the key quota of each agent', async () => {
    const agent = newAgent();
    const neighbour = newAgent();
    for (let index = 0; index < 20; index += 1) {
      await agent.put({ namespace: `ns${index % 3}`, key: `k${index}`, value: Buffer.from('x') });
    }

    const over = await failureOf(
      agent.put({ namespace: 'ns0', key: 'one-more', value: Buffer.from('x') }),
    );
    const overwrite = await agent.put({ namespace: 'ns0', key: 'k0', value: Buffer.from('y') });
    const neighbourPut = await neighbour.put({
      namespace: 'ns0',
      key: 'k0',
      value: Buffer.from('z'),
    });

    expect(over.code).toBe('RESOURCE_EXHAUSTED');
    expect(over.message).toBe(
      `agent ${agent.agentId} already stores 20 keys, the maximum per agent of 20; delete keys first or ask the operator to raise CORDON_MEMORY_MAX_KEYS_PER_AGENT`,
    );
    expect(overwrite.version).toBe(21);
    expect(neighbourPut.version).toBe(1);
  });

  it('enforces the byte quota of each agent', async () => {
    const agent = newAgent();
    await agent.put({ namespace: 'big', key: 'one', value: Buffer.alloc(4096) });
    await agent.put({ namespace: 'big', key: 'two', value: Buffer.alloc(4096) });

    const newKey = await failureOf(
      agent.put({ namespace: 'big', key: 'three', value: Buffer.alloc(1) }),
    );
    const shrink = await agent.put({ namespace: 'big', key: 'one', value: Buffer.alloc(100) });
    const fits = await agent.put({ namespace: 'big', key: 'three', value: Buffer.alloc(3996) });
    const growth = await failureOf(
      agent.put({ namespace: 'big', key: 'three', value: Buffer.alloc(3997) }),
    );

    for (const failure of [newKey, growth]) {
      expect(failure.code).toBe('RESOURCE_EXHAUSTED');
      expect(failure.message).toBe(
        `this write would bring agent ${agent.agentId} to 8193 bytes of values, above the maximum per agent of 8192; delete or shrink values first or ask the operator to raise CORDON_MEMORY_MAX_BYTES_PER_AGENT`,
      );
    }
    expect(shrink.version).toBe(3);
    expect(fits.version).toBe(4);
    expect((await agent.get({ namespace: 'big', key: 'three' })).value).toHaveLength(3996);
  });

  it('never exceeds the key quota under concurrent writes', async () => {
    const agent = newAgent();

    const results = await Promise.allSettled(
      Array.from({ length: 30 }, (_, index) =>
        agent.put({ namespace: 'flood', key: `k${index}`, value: Buffer.from('x') }),
      ),
    );
    const listed = await listAll(agent, { namespace: 'flood', pageSize: 10 });

    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(20);
    expect(listed.flat()).toHaveLength(20);
  });

  it('rejects calls without a valid agent token', async () => {
    const anonymous = memory.as(undefined);
    const forged = memory.as('a}b');

    const missing = await failureOf(anonymous.get({ namespace: 'n', key: 'k' }));
    const invalid = await failureOf(
      forged.put({ namespace: 'n', key: 'k', value: Buffer.from('x') }),
    );
    anonymous.close();
    forged.close();

    expect(missing.code).toBe('UNAUTHENTICATED');
    expect(missing.message).toBe(
      'no token: send authorization: Bearer <token> metadata (an admin mints one with cordon token create)',
    );
    expect(invalid.code).toBe('UNAUTHENTICATED');
    expect(invalid.message).toBe(
      "the token's sub claim is not 1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit",
    );
  });

  it('rejects a page token of another namespace or prefix', async () => {
    const agent = newAgent();
    for (const key of ['a', 'b', 'c']) {
      await agent.put({ namespace: 'one', key, value: Buffer.from('x') });
    }
    const page = await agent.list({ namespace: 'one', pageSize: 1 });

    const otherNamespace = await failureOf(
      agent.list({ namespace: 'two', pageToken: page.nextPageToken }),
    );
    const otherPrefix = await failureOf(
      agent.list({ namespace: 'one', prefix: 'b', pageToken: page.nextPageToken }),
    );
    const garbage = await failureOf(agent.list({ namespace: 'one', pageToken: 'not a token' }));

    for (const failure of [otherNamespace, otherPrefix, garbage]) {
      expect(failure.code).toBe('INVALID_ARGUMENT');
      expect(failure.message).toBe(
        'page_token: is not a token this server issued for this namespace and prefix; repeat the List without page_token to start over',
      );
    }
  });

  it('keeps the data across a restart of the service', async () => {
    const first = await startMemory({ ...backend.env, ...LIMITS_ENV });
    const agentId = newAgentId('restart');
    const writer = first.as(agentId);
    await writer.put({
      namespace: 'durable',
      key: 'k',
      value: Buffer.from('kept'),
      contentType: 'text/plain',
    });
    writer.close();
    expect(await first.stop()).toEqual({ code: 0, signal: null });

    const second = await startMemory({ ...backend.env, ...LIMITS_ENV });
    const reader = second.as(agentId);
    const got = await reader.get({ namespace: 'durable', key: 'k' });
    await reader.delete({ namespace: 'durable', key: 'k' });
    reader.close();
    await second.stop();

    expect(got.value.toString()).toBe('kept');
    expect(got.version).toBe(1);
    await backend.expectClean(agentId);
  });
});

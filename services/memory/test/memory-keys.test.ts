import { describe, expect, it } from 'vitest';
import type { VerifiedCaller } from '@cordon/service-kit';
import { callerAgentId } from '../src/caller.js';
import { aclKeyPattern, agentKeys, entryId, indexKey, valueKey } from '../src/redis-keys.js';
import { parseAgentGroups, matchAgentGroup } from '../src/agent-groups.js';
import { parseRedisUrl } from '../src/redis-endpoint.js';

/** Namespace and key pairs whose plain concatenation would collide. */
const TRICKY_NAMES = [
  ['a', 'b:c'],
  ['a:b', 'c'],
  ['1:a', 'x'],
  ['1', 'a:x'],
  ['a', '1:a:x'],
  ['notes', 'val:3:abc:k'],
  ['x}', 'y'],
  ['x', '}:y'],
  ['..', '/'],
  ['.', './'],
] as const;

/** Reports whether a Redis glob pattern matches a key made of the characters key names may hold. */
function globMatches(pattern: string, key: string): boolean {
  const body = pattern.slice(1);
  const regex = new RegExp(
    `^${body
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  return regex.test(key);
}

describe('redis key layout', () => {
  it('gives every namespace and key pair its own value key', () => {
    const keys = agentKeys('agent-a');

    const valueKeys = TRICKY_NAMES.map(([namespace, key]) => valueKey(keys, namespace, key));
    const entryIds = TRICKY_NAMES.map(([namespace, key]) => entryId(namespace, key));

    expect(new Set(valueKeys).size).toBe(TRICKY_NAMES.length);
    expect(new Set(entryIds).size).toBe(TRICKY_NAMES.length);
  });

  it("never builds a key inside another agent's pattern", () => {
    const agents = ['a', 'ab', 'a.b', 'b', 'a-1', 'A'];

    for (const owner of agents) {
      const keys = agentKeys(owner);
      const built = TRICKY_NAMES.flatMap(([namespace, key]) => [
        valueKey(keys, namespace, key),
        indexKey(keys, namespace),
        keys.meta,
        keys.expiry,
      ]);
      for (const other of agents) {
        const pattern = aclKeyPattern(other);
        expect(built.every((key) => globMatches(pattern, key) === (other === owner))).toBe(true);
      }
    }
  });

  it('refuses to build keys for an invalid agent id', () => {
    expect(() => agentKeys('a}:*')).toThrow(
      'refusing to build Redis keys for the invalid agent id "a}:*"',
    );
    expect(() => agentKeys('')).toThrow('invalid agent id ""');
  });
});

describe('caller identity', () => {
  const caller = (fields: Partial<VerifiedCaller>): VerifiedCaller => ({
    subject: 'agent-1',
    role: 'agent',
    agentId: 'agent-1',
    runId: '',
    ...fields,
  });

  it.each(['agent-1', 'A.b_c-9'])('uses the verified agent id %s', (agentId) => {
    expect(callerAgentId(caller({ subject: agentId, agentId }))).toBe(agentId);
  });

  it('uses the agent a service proved it acts for', () => {
    expect(
      callerAgentId(caller({ subject: 'executor', role: 'service', agentId: 'agent-7' })),
    ).toBe('agent-7');
  });

  it('rejects a service that acts for no agent', () => {
    expect(() =>
      callerAgentId(caller({ subject: 'executor', role: 'service', agentId: '' })),
    ).toThrow(
      'service executor called without naming the agent it acts for; send x-cordon-acting-for metadata',
    );
  });

  it.each([
    ['a brace', 'a}b'],
    ['a glob', 'a*'],
    ['65 characters', 'a'.repeat(65)],
  ])('rejects an agent id with %s', (_case, agentId) => {
    expect(() => callerAgentId(caller({ agentId }))).toThrow("the token's agent id is not valid");
  });
});

describe('agent groups and Redis URLs', () => {
  it('maps agents to the first matching group', () => {
    const entries = parseAgentGroups('lab-7=special,lab-*=lab,*=rest');

    expect(matchAgentGroup(entries, 'lab-7')?.group).toBe('SPECIAL');
    expect(matchAgentGroup(entries, 'lab-8')?.group).toBe('LAB');
    expect(matchAgentGroup(entries, 'ops')?.group).toBe('REST');
  });

  it('rejects a malformed group entry', () => {
    expect(() => parseAgentGroups('lab-*')).toThrow(
      'invalid configuration: CORDON_MEMORY_AGENT_GROUPS entry "lab-*" is invalid: expected <agent id>=<group> or <agent id prefix>*=<group>',
    );
  });

  it('reads credentials and database from a Redis URL without showing them', () => {
    const endpoint = parseRedisUrl(
      'CORDON_MEMORY_REDIS_URL',
      'redis://admin:s%40cret@127.0.0.1:6390/2',
    );

    expect(endpoint).toEqual({
      host: '127.0.0.1',
      port: 6390,
      db: 2,
      tls: false,
      username: 'admin',
      password: 's@cret',
      display: 'redis://127.0.0.1:6390/2',
    });
  });

  it('never repeats a rejected Redis URL, which may hold a password', () => {
    expect(() => parseRedisUrl('CORDON_MEMORY_REDIS_URL', 'redis://u:hunter2@127.0.0.1/x')).toThrow(
      'invalid configuration: CORDON_MEMORY_REDIS_URL is invalid: its path is not a database number; expected redis://[user:password@]host[:port][/db] or rediss:// for TLS',
    );
  });
});

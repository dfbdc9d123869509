import { AGENT_ID_PATTERN } from './caller.js';

/**
 * Redis key layout of one agent's memory. Every key starts with
 * `cordon:mem:{<agent id>}:`. Agent ids cannot hold `{` or `}`, so no
 * choice of namespace or key yields another agent's prefix, and the braces
 * make the id the hash tag, which keeps an agent's keys in one cluster slot
 * for its scripts. Within the prefix, a namespace is written with its
 * length in front (`12:notes/drafts:plan`), so namespace and key can hold
 * `:` and still never collide.
 *
 *   <prefix>meta                  hash: seq (last version), keys, bytes
 *   <prefix>exp                   sorted set: entry id → expiry time in ms
 *   <prefix>idx:<len>:<ns>        sorted set of the namespace's keys, all score 0, for List
 *   <prefix>val:<len>:<ns>:<key>  hash: v (value), ct, ver, size, exp
 */
export interface AgentKeys {
  readonly prefix: string;
  readonly meta: string;
  readonly expiry: string;
}

export function agentKeys(agentId: string): AgentKeys {
  // The caller already checked the id; checking again here keeps a bug
  // elsewhere from building a key pattern that spans agents.
  if (!AGENT_ID_PATTERN.test(agentId)) {
    throw new Error(
      `refusing to build Redis keys for the invalid agent id ${JSON.stringify(agentId)}`,
    );
  }
  const prefix = `cordon:mem:{${agentId}}:`;
  return { prefix, meta: `${prefix}meta`, expiry: `${prefix}exp` };
}

/** Member of the expiry set, and the suffix of the value key after `val:`. */
export function entryId(namespace: string, key: string): string {
  return `${namespace.length}:${namespace}:${key}`;
}

export function valueKey(keys: AgentKeys, namespace: string, key: string): string {
  return `${keys.prefix}val:${entryId(namespace, key)}`;
}

/** Prefix of every value key of a namespace; a key name follows it. */
export function valueKeyPrefix(keys: AgentKeys, namespace: string): string {
  return `${keys.prefix}val:${namespace.length}:${namespace}:`;
}

export function indexKey(keys: AgentKeys, namespace: string): string {
  return `${keys.prefix}idx:${namespace.length}:${namespace}`;
}

/** Redis ACL user that may touch only this agent's keys. */
export function aclUserName(agentId: string): string {
  return `cordon-agent-${agentId}`;
}

/** ACL key pattern of an agent; `{` and `}` are literal in Redis glob patterns. */
export function aclKeyPattern(agentId: string): string {
  return `~${agentKeys(agentId).prefix}*`;
}

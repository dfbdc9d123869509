import type { Redis } from 'ioredis';
import type {
  DeleteCommand,
  DeleteResult,
  KeyEntry,
  ListCommand,
  ListPage,
  MemoryStore,
  PutCommand,
  PutResult,
  StoreQuotas,
  StoredValue,
} from './memory-store.js';
import type { RedisConnections } from './redis-connections.js';
import { agentKeys, entryId, indexKey, valueKey, valueKeyPrefix } from './redis-keys.js';
import { DELETE_SCRIPT, GET_SCRIPT, LIST_SCRIPT, PUT_SCRIPT, runScript } from './redis-scripts.js';
import { toStoreError } from './store-errors.js';

/** Redis keys a script that writes one entry touches: the agent's counters, the value and its index. */
function entryScriptKeys(
  keys: ReturnType<typeof agentKeys>,
  command: { namespace: string; key: string },
): string[] {
  return [
    keys.meta,
    keys.expiry,
    valueKey(keys, command.namespace, command.key),
    indexKey(keys, command.namespace),
  ];
}

/** Sorts after every character a key may hold, to bound a prefix range. */
const AFTER_LAST_NAME_CHARACTER = '\x7f';

function asNumber(value: unknown): number {
  return typeof value === 'number' ? value : Number(value);
}

function asText(value: unknown): string {
  return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
}

function ttlOf(value: unknown): number | undefined {
  const ttl = asNumber(value);
  return ttl < 0 ? undefined : ttl;
}

/** ZRANGEBYLEX bounds of the keys after `afterKey` that start with `prefix`. */
function lexRange(prefix: string, afterKey: string | undefined): [string, string] {
  const max = prefix === '' ? '+' : `(${prefix}${AFTER_LAST_NAME_CHARACTER}`;
  // A page token is bound to its prefix, but a forged one could point
  // before it. Starting at the prefix then keeps other keys out.
  if (afterKey !== undefined && afterKey >= prefix) {
    return [`(${afterKey}`, max];
  }
  return [prefix === '' ? '-' : `[${prefix}`, max];
}

/**
 * Agent memory on Redis. Each operation is one Lua script run on the
 * agent's own ACL-restricted connection; see redis-keys.ts for the layout.
 */
export class RedisStore implements MemoryStore {
  readonly description: string;

  constructor(
    private readonly connections: RedisConnections,
    private readonly quotas: StoreQuotas,
  ) {
    this.description = `redis ${connections.display}`;
  }

  async put(agentId: string, command: PutCommand): Promise<PutResult> {
    const keys = agentKeys(agentId);
    const reply = (await this.run(agentId, (client) =>
      runScript(client, PUT_SCRIPT, entryScriptKeys(keys, command), [
        command.value,
        command.contentType,
        command.ttlMs,
        command.ifVersion ?? -1,
        this.quotas.maxKeysPerAgent,
        this.quotas.maxBytesPerAgent,
        keys.prefix,
        entryId(command.namespace, command.key),
        command.key,
      ]),
    )) as [string, unknown, unknown];

    const [kind, first, second] = reply;
    switch (kind) {
      case 'stored':
        return { kind, version: asNumber(first) };
      case 'version-mismatch':
        return { kind, currentVersion: asNumber(first) };
      case 'too-many-keys':
        return { kind, keys: asNumber(first), maxKeys: asNumber(second) };
      case 'too-many-bytes':
        return { kind, bytesAfter: asNumber(first), maxBytes: asNumber(second) };
      default:
        throw new Error(`the put script returned an unknown result ${JSON.stringify(kind)}`);
    }
  }

  async get(agentId: string, namespace: string, key: string): Promise<StoredValue | undefined> {
    const keys = agentKeys(agentId);
    const reply = (await this.run(agentId, (client) =>
      runScript(client, GET_SCRIPT, [valueKey(keys, namespace, key)], [], true),
    )) as [Buffer, Buffer, unknown, unknown] | null;
    if (reply === null) {
      return undefined;
    }

    const [value, contentType, version, ttl] = reply;
    return {
      value,
      contentType: contentType.toString('utf8'),
      version: asNumber(version),
      ttlRemainingMs: ttlOf(ttl),
    };
  }

  async delete(agentId: string, command: DeleteCommand): Promise<DeleteResult> {
    const keys = agentKeys(agentId);
    const reply = (await this.run(agentId, (client) =>
      runScript(client, DELETE_SCRIPT, entryScriptKeys(keys, command), [
        command.ifVersion ?? -1,
        keys.prefix,
        entryId(command.namespace, command.key),
        command.key,
      ]),
    )) as [string, unknown, unknown];

    const [kind, first, second] = reply;
    switch (kind) {
      case 'deleted':
        return { kind, version: asNumber(first), sizeBytes: asNumber(second) };
      case 'absent':
        return { kind };
      case 'version-mismatch':
        return { kind, currentVersion: asNumber(first) };
      default:
        throw new Error(`the delete script returned an unknown result ${JSON.stringify(kind)}`);
    }
  }

  async list(agentId: string, command: ListCommand): Promise<ListPage> {
    const keys = agentKeys(agentId);
    const [min, max] = lexRange(command.prefix, command.afterKey);
    const reply = (await this.run(agentId, (client) =>
      runScript(
        client,
        LIST_SCRIPT,
        [indexKey(keys, command.namespace)],
        [valueKeyPrefix(keys, command.namespace), min, max, command.pageSize + 1],
      ),
    )) as unknown[][];

    const entries: KeyEntry[] = reply.map(([key, version, size, contentType, ttl]) => ({
      key: asText(key),
      version: asNumber(version),
      sizeBytes: asNumber(size),
      contentType: asText(contentType),
      ttlRemainingMs: ttlOf(ttl),
    }));
    return {
      keys: entries.slice(0, command.pageSize),
      hasMore: entries.length > command.pageSize,
    };
  }

  isAvailable(): Promise<boolean> {
    return this.connections.ping();
  }

  close(): Promise<void> {
    return this.connections.close();
  }

  private async run<T>(agentId: string, operation: (client: Redis) => Promise<T>): Promise<T> {
    try {
      const client = await this.connections.forAgent(agentId);
      return await operation(client);
    } catch (error) {
      throw toStoreError(error);
    }
  }
}

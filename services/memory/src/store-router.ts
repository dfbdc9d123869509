import type { Logger } from '@cordon/service-kit';
import { matchAgentGroup, type AgentGroupEntry } from './agent-groups.js';
import type { MemoryOptions } from './memory-options.js';
import type { MemoryStore } from './memory-store.js';
import { RedisConnections } from './redis-connections.js';
import type { RedisEndpoint } from './redis-endpoint.js';
import { RedisStore } from './redis-store.js';
import { SqliteStore } from './sqlite-store.js';

interface GroupStore extends AgentGroupEntry {
  readonly store: MemoryStore;
}

/** Picks the store of each agent: its group's Redis, or the default store. */
export class StoreRouter {
  constructor(
    private readonly defaultStore: MemoryStore,
    private readonly groups: readonly GroupStore[],
  ) {}

  storeFor(agentId: string): MemoryStore {
    return matchAgentGroup(this.groups, agentId)?.store ?? this.defaultStore;
  }

  /** Every distinct store, the default one first. */
  get stores(): MemoryStore[] {
    return [...new Set([this.defaultStore, ...this.groups.map((group) => group.store)])];
  }

  async close(): Promise<void> {
    await Promise.all(this.stores.map((store) => store.close()));
  }
}

/**
 * Opens the configured stores: the SQLite file, or one Redis store per
 * distinct Redis URL (groups that name the same URL share one).
 */
export async function openStores(options: MemoryOptions, logger: Logger): Promise<StoreRouter> {
  const quotas = options.limits;
  if (options.store.kind === 'embedded') {
    return new StoreRouter(new SqliteStore(options.store.databasePath, quotas), []);
  }

  const byUrl = new Map<string, RedisStore>();
  const storeAt = async (endpoint: RedisEndpoint): Promise<RedisStore> => {
    const identity = JSON.stringify(endpoint);
    const existing = byUrl.get(identity);
    if (existing !== undefined) {
      return existing;
    }
    const connections = new RedisConnections({ ...options.redis, endpoint, logger });
    const store = new RedisStore(connections, quotas);
    byUrl.set(identity, store);
    await connections.start();
    return store;
  };

  const defaultStore = await storeAt(options.store.defaultEndpoint);
  const groups: GroupStore[] = [];
  for (const group of options.store.groups) {
    groups.push({ ...group, store: await storeAt(group.endpoint) });
  }
  return new StoreRouter(defaultStore, groups);
}

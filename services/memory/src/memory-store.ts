/**
 * The contract both stores (Redis and the embedded SQLite file) implement.
 * Every method acts on one agent's memory only; the agent id is the
 * caller's identity and is never read from a request.
 */

/** A validated Put. */
export interface PutCommand {
  readonly namespace: string;
  readonly key: string;
  readonly value: Buffer;
  readonly contentType: string;
  /** Time to live; 0 keeps the value until it is deleted. */
  readonly ttlMs: number;
  /** Undefined writes unconditionally; 0 only if the key is absent; n only at version n. */
  readonly ifVersion: number | undefined;
}

/** A validated Delete. */
export interface DeleteCommand {
  readonly namespace: string;
  readonly key: string;
  /** Undefined deletes unconditionally; otherwise only at this version. */
  readonly ifVersion: number | undefined;
}

/** A validated List page request. */
export interface ListCommand {
  readonly namespace: string;
  readonly prefix: string;
  readonly pageSize: number;
  /** Returns keys after this one; undefined starts at the first key. */
  readonly afterKey: string | undefined;
}

/** Limits a store enforces atomically with each write. */
export interface StoreQuotas {
  readonly maxKeysPerAgent: number;
  readonly maxBytesPerAgent: number;
}

export type PutResult =
  | { readonly kind: 'stored'; readonly version: number }
  /** The key's version is not `ifVersion`; 0 means the key is absent. */
  | { readonly kind: 'version-mismatch'; readonly currentVersion: number }
  | { readonly kind: 'too-many-keys'; readonly keys: number; readonly maxKeys: number }
  | {
      readonly kind: 'too-many-bytes';
      /** Value bytes the agent would store after this write. */
      readonly bytesAfter: number;
      readonly maxBytes: number;
    };

export type DeleteResult =
  | { readonly kind: 'deleted'; readonly version: number; readonly sizeBytes: number }
  | { readonly kind: 'absent' }
  | { readonly kind: 'version-mismatch'; readonly currentVersion: number };

export interface StoredValue {
  readonly value: Buffer;
  readonly contentType: string;
  readonly version: number;
  /** Undefined when the key does not expire. */
  readonly ttlRemainingMs: number | undefined;
}

export interface KeyEntry {
  readonly key: string;
  readonly version: number;
  readonly sizeBytes: number;
  readonly contentType: string;
  readonly ttlRemainingMs: number | undefined;
}

export interface ListPage {
  readonly keys: readonly KeyEntry[];
  /** True when keys after the last one of this page exist. */
  readonly hasMore: boolean;
}

/**
 * A key/value store of agent memory. Versions come from one counter per
 * agent, so a key's version grows with every write, also across a delete
 * and re-creation. Expired keys behave as absent at once and are removed,
 * and leave the quota counters, at the agent's next write.
 */
export interface MemoryStore {
  /** Short description for logs, e.g. "redis redis://127.0.0.1:6379/0" or "sqlite /path". */
  readonly description: string;
  put(agentId: string, command: PutCommand): Promise<PutResult>;
  get(agentId: string, namespace: string, key: string): Promise<StoredValue | undefined>;
  delete(agentId: string, command: DeleteCommand): Promise<DeleteResult>;
  list(agentId: string, command: ListCommand): Promise<ListPage>;
  /** Resolves true when the store responds now. Never rejects. */
  isAvailable(): Promise<boolean>;
  close(): Promise<void>;
}

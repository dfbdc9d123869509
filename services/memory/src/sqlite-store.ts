import { chmodSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { status } from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import { ConfigError, CordonError } from '@cordon/service-kit';
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
import { storeUnavailable } from './store-errors.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS agents (
  agent_id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  keys INTEGER NOT NULL,
  bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
  agent_id TEXT NOT NULL,
  namespace TEXT NOT NULL,
  entry_key TEXT NOT NULL,
  value BLOB NOT NULL,
  content_type TEXT NOT NULL,
  version INTEGER NOT NULL,
  size_bytes INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL,
  PRIMARY KEY (agent_id, namespace, entry_key)
);
CREATE INDEX IF NOT EXISTS entries_by_expiry
  ON entries (agent_id, expires_at_ms) WHERE expires_at_ms > 0;
`;

/** Sorts after every character a key may hold, to bound a prefix range. */
const AFTER_LAST_NAME_CHARACTER = '\x7f';

interface AgentRow {
  seq: number;
  keys: number;
  bytes: number;
}

interface EntryRow {
  value: Buffer;
  content_type: string;
  version: number;
  size_bytes: number;
  expires_at_ms: number;
}

interface ListRow {
  entry_key: string;
  version: number;
  size_bytes: number;
  content_type: string;
  expires_at_ms: number;
}

function ttlRemaining(expiresAtMs: number, now: number): number | undefined {
  return expiresAtMs === 0 ? undefined : expiresAtMs - now;
}

function isLive(expiresAtMs: number, now: number): boolean {
  return expiresAtMs === 0 || expiresAtMs > now;
}

/** Maps SQLite failures that a caller can act on; anything else stays an unexpected error. */
function toStoreError(error: unknown): Error {
  const code = (error as { code?: unknown }).code;
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
    return storeUnavailable(error);
  }
  if (code === 'SQLITE_FULL') {
    return new CordonError(
      status.RESOURCE_EXHAUSTED,
      "the memory store's disk is full; delete keys or ask the operator to free disk space",
      { cause: error },
    );
  }
  return error instanceof Error ? error : new Error(String(error));
}

/**
 * Agent memory in one SQLite file, for a single machine without Redis. Same
 * contract as the Redis store: writes run in IMMEDIATE transactions, so
 * version and quota checks and the counter updates are one atomic step.
 *
 * The database runs in WAL mode with synchronous=NORMAL: an acknowledged
 * write survives a crash or restart of the service, but a power loss or
 * kernel crash can lose the writes of the last moments, as with Redis's
 * appendfsync everysec.
 */
export class SqliteStore implements MemoryStore {
  readonly description: string;
  private readonly db: Database.Database;
  private readonly statements;
  private readonly putTransaction;
  private readonly deleteTransaction;

  constructor(
    databasePath: string,
    private readonly quotas: StoreQuotas,
  ) {
    this.description = `sqlite ${databasePath}`;
    try {
      mkdirSync(dirname(databasePath), { recursive: true, mode: 0o700 });
      this.db = new Database(databasePath);
      chmodSync(databasePath, 0o600);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('busy_timeout = 2000');
      this.db.exec(SCHEMA);
    } catch (error) {
      throw new ConfigError(
        'CORDON_MEMORY_DB_PATH',
        `the memory database ${databasePath} cannot be opened (${error instanceof Error ? error.message : String(error)}); set CORDON_MEMORY_DB_PATH to a writable file`,
      );
    }

    this.statements = {
      agent: this.db.prepare<[string], AgentRow>(
        'SELECT seq, keys, bytes FROM agents WHERE agent_id = ?',
      ),
      saveAgent: this.db.prepare<[string, number, number, number]>(
        `INSERT INTO agents (agent_id, seq, keys, bytes) VALUES (?, ?, ?, ?)
         ON CONFLICT (agent_id) DO UPDATE SET seq = excluded.seq, keys = excluded.keys, bytes = excluded.bytes`,
      ),
      purgeExpired: this.db.prepare<[string, number], { size_bytes: number }>(
        'DELETE FROM entries WHERE agent_id = ? AND expires_at_ms > 0 AND expires_at_ms <= ? RETURNING size_bytes',
      ),
      entry: this.db.prepare<[string, string, string], EntryRow>(
        `SELECT value, content_type, version, size_bytes, expires_at_ms FROM entries
         WHERE agent_id = ? AND namespace = ? AND entry_key = ?`,
      ),
      saveEntry: this.db.prepare<[string, string, string, Buffer, string, number, number, number]>(
        `INSERT INTO entries (agent_id, namespace, entry_key, value, content_type, version, size_bytes, expires_at_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (agent_id, namespace, entry_key) DO UPDATE SET value = excluded.value,
           content_type = excluded.content_type, version = excluded.version,
           size_bytes = excluded.size_bytes, expires_at_ms = excluded.expires_at_ms`,
      ),
      deleteEntry: this.db.prepare<[string, string, string]>(
        'DELETE FROM entries WHERE agent_id = ? AND namespace = ? AND entry_key = ?',
      ),
      list: this.db.prepare<[string, string, string, string, string, number, number], ListRow>(
        `SELECT entry_key, version, size_bytes, content_type, expires_at_ms FROM entries
         WHERE agent_id = ? AND namespace = ? AND entry_key > ? AND entry_key >= ? AND entry_key < ?
           AND (expires_at_ms = 0 OR expires_at_ms > ?)
         ORDER BY entry_key LIMIT ?`,
      ),
    };
    this.putTransaction = this.db.transaction((agentId: string, command: PutCommand) =>
      this.putNow(agentId, command),
    );
    this.deleteTransaction = this.db.transaction((agentId: string, command: DeleteCommand) =>
      this.deleteNow(agentId, command),
    );
  }

  put(agentId: string, command: PutCommand): Promise<PutResult> {
    return this.attempt(() => this.putTransaction.immediate(agentId, command));
  }

  get(agentId: string, namespace: string, key: string): Promise<StoredValue | undefined> {
    return this.attempt(() => {
      const now = Date.now();
      const row = this.statements.entry.get(agentId, namespace, key);
      if (row === undefined || !isLive(row.expires_at_ms, now)) {
        return undefined;
      }
      return {
        value: row.value,
        contentType: row.content_type,
        version: row.version,
        ttlRemainingMs: ttlRemaining(row.expires_at_ms, now),
      };
    });
  }

  delete(agentId: string, command: DeleteCommand): Promise<DeleteResult> {
    return this.attempt(() => this.deleteTransaction.immediate(agentId, command));
  }

  list(agentId: string, command: ListCommand): Promise<ListPage> {
    return this.attempt(() => {
      const now = Date.now();
      const rows = this.statements.list.all(
        agentId,
        command.namespace,
        command.afterKey ?? '',
        command.prefix,
        `${command.prefix}${AFTER_LAST_NAME_CHARACTER}`,
        now,
        command.pageSize + 1,
      );
      const keys: KeyEntry[] = rows.slice(0, command.pageSize).map((row) => ({
        key: row.entry_key,
        version: row.version,
        sizeBytes: row.size_bytes,
        contentType: row.content_type,
        ttlRemainingMs: ttlRemaining(row.expires_at_ms, now),
      }));
      return { keys, hasMore: rows.length > command.pageSize };
    });
  }

  isAvailable(): Promise<boolean> {
    try {
      this.db.prepare('SELECT 1').get();
      return Promise.resolve(true);
    } catch {
      return Promise.resolve(false);
    }
  }

  close(): Promise<void> {
    this.db.close();
    return Promise.resolve();
  }

  private attempt<T>(operation: () => T): Promise<T> {
    try {
      return Promise.resolve(operation());
    } catch (error) {
      return Promise.reject(toStoreError(error));
    }
  }

  /** Removes the agent's expired entries and returns its usage without them. */
  private purgeExpired(agentId: string, now: number): AgentRow {
    const usage = this.statements.agent.get(agentId) ?? { seq: 0, keys: 0, bytes: 0 };
    const purged = this.statements.purgeExpired.all(agentId, now);
    if (purged.length === 0) {
      return usage;
    }
    const bytes = purged.reduce((sum, row) => sum + row.size_bytes, 0);
    const remaining = {
      seq: usage.seq,
      keys: usage.keys - purged.length,
      bytes: usage.bytes - bytes,
    };
    this.statements.saveAgent.run(agentId, remaining.seq, remaining.keys, remaining.bytes);
    return remaining;
  }

  private putNow(agentId: string, command: PutCommand): PutResult {
    const now = Date.now();
    const usage = this.purgeExpired(agentId, now);
    const current = this.statements.entry.get(agentId, command.namespace, command.key);
    const currentVersion = current?.version ?? 0;
    if (command.ifVersion !== undefined && command.ifVersion !== currentVersion) {
      return { kind: 'version-mismatch', currentVersion };
    }

    const addedKeys = current === undefined ? 1 : 0;
    const addedBytes = command.value.length - (current?.size_bytes ?? 0);
    if (addedKeys > 0 && usage.keys + addedKeys > this.quotas.maxKeysPerAgent) {
      return { kind: 'too-many-keys', keys: usage.keys, maxKeys: this.quotas.maxKeysPerAgent };
    }
    if (addedBytes > 0 && usage.bytes + addedBytes > this.quotas.maxBytesPerAgent) {
      return {
        kind: 'too-many-bytes',
        bytesAfter: usage.bytes + addedBytes,
        maxBytes: this.quotas.maxBytesPerAgent,
      };
    }

    const version = usage.seq + 1;
    const expiresAtMs = command.ttlMs > 0 ? now + command.ttlMs : 0;
    this.statements.saveAgent.run(
      agentId,
      version,
      usage.keys + addedKeys,
      usage.bytes + addedBytes,
    );
    this.statements.saveEntry.run(
      agentId,
      command.namespace,
      command.key,
      command.value,
      command.contentType,
      version,
      command.value.length,
      expiresAtMs,
    );
    return { kind: 'stored', version };
  }

  private deleteNow(agentId: string, command: DeleteCommand): DeleteResult {
    const usage = this.purgeExpired(agentId, Date.now());
    const current = this.statements.entry.get(agentId, command.namespace, command.key);
    if (current === undefined) {
      return { kind: 'absent' };
    }
    if (command.ifVersion !== undefined && command.ifVersion !== current.version) {
      return { kind: 'version-mismatch', currentVersion: current.version };
    }

    this.statements.deleteEntry.run(agentId, command.namespace, command.key);
    this.statements.saveAgent.run(
      agentId,
      usage.seq,
      usage.keys - 1,
      usage.bytes - current.size_bytes,
    );
    return { kind: 'deleted', version: current.version, sizeBytes: current.size_bytes };
  }
}

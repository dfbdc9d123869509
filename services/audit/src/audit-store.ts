import { chmodSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { ConfigError } from '@cordon/service-kit';
import type { PreparedAppend } from './append-request.js';
import { GENESIS_HASH, recordHash } from './canonical.js';
import { SCHEMA_VERSION, schemaStatements } from './store-schema.js';

/** One row of the records table. */
export interface StoredRecord {
  readonly seq: number;
  readonly timeMs: number;
  /** Canonical JSON of the event, the text the hash covers. */
  readonly eventJson: string;
  readonly prevHash: string;
  readonly hash: string;
}

/** Outcome of one event of a batch. */
export type AppendOutcome =
  | { readonly kind: 'stored'; readonly seq: number; readonly hash: string }
  /** The event id was stored before with the same service, action, agent and run. */
  | { readonly kind: 'duplicate'; readonly seq: number; readonly hash: string }
  /** The event id was stored before for a different event. */
  | { readonly kind: 'conflict'; readonly seq: number; readonly action: string };

/** Filters of a query; every set field must match. */
export interface RecordFilter {
  readonly agentId?: string | undefined;
  readonly action?: string | undefined;
  /** Outcome as its enum name, e.g. AUDIT_OUTCOME_DENIED. */
  readonly outcome?: string | undefined;
  readonly runId?: string | undefined;
  readonly traceId?: string | undefined;
  /** Inclusive lower bound of the stored time. */
  readonly startTimeMs?: number | undefined;
  /** Exclusive upper bound of the stored time. */
  readonly endTimeMs?: number | undefined;
  readonly afterSeq: number;
  readonly limit: number;
}

/** A stored file of a code set, with the hash it was stored under. */
export interface CodeFile {
  readonly path: string;
  readonly blobSha256: string;
  readonly content: Buffer;
}

/** Effective durability settings, as SQLite reports them after opening. */
export interface StoreSettings {
  readonly journalMode: string;
  /** 2 is FULL: every commit syncs the write-ahead log before it returns. */
  readonly synchronous: number;
}

interface RecordRow {
  seq: number;
  time_ms: number;
  event_json: string;
  prev_hash: string;
  hash: string;
}

interface ExistingEvent {
  seq: number;
  hash: string;
  service: string;
  action: string;
  agent_id: string;
  run_id: string;
}

const RECORD_COLUMNS = 'seq, time_ms, event_json, prev_hash, hash';

function toStoredRecord(row: RecordRow): StoredRecord {
  return {
    seq: row.seq,
    timeMs: row.time_ms,
    eventJson: row.event_json,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

/** Opens the file, creating its folder (mode 0700) and the file (mode 0600) when missing. */
function openDatabase(path: string): Database.Database {
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const db = new Database(path);
    chmodSync(path, 0o600);
    return db;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConfigError(
      'CORDON_AUDIT_DB_PATH',
      `cannot open the audit database ${path}: ${reason}; set CORDON_AUDIT_DB_PATH to a file this user can create and write`,
    );
  }
}

/**
 * The audit record in one SQLite file: WAL mode, synchronous FULL, one
 * writer. The class has no method that updates or deletes a row.
 */
export class AuditStore {
  readonly settings: StoreSettings;
  private readonly db: Database.Database;
  private readonly queryStatements = new Map<string, Database.Statement<unknown[], RecordRow>>();
  private readonly statements;

  private constructor(db: Database.Database) {
    this.db = db;
    this.settings = AuditStore.configure(db);
    AuditStore.migrate(db);
    this.statements = {
      last: db.prepare<[], { seq: number; hash: string; time_ms: number }>(
        'SELECT seq, hash, time_ms FROM records ORDER BY seq DESC LIMIT 1',
      ),
      byEventId: db.prepare<[string], ExistingEvent>(
        `SELECT seq, hash, json_extract(event_json, '$.service') AS service, action, agent_id, run_id
         FROM records WHERE event_id = ?`,
      ),
      insertRecord: db.prepare<[number, number, string, string, string]>(
        'INSERT INTO records (seq, time_ms, event_json, prev_hash, hash) VALUES (?, ?, ?, ?, ?)',
      ),
      codeExists: db.prepare<[string], { found: number }>(
        'SELECT 1 AS found FROM code_files WHERE code_sha256 = ? LIMIT 1',
      ),
      insertBlob: db.prepare<[string, Buffer]>(
        'INSERT OR IGNORE INTO blobs (sha256, content) VALUES (?, ?)',
      ),
      insertCodeFile: db.prepare<[string, string, string]>(
        'INSERT INTO code_files (code_sha256, path, blob_sha256) VALUES (?, ?, ?)',
      ),
      insertExcerpt: db.prepare<[number, Buffer, Buffer]>(
        'INSERT INTO excerpts (seq, stdout, stderr) VALUES (?, ?, ?)',
      ),
      record: db.prepare<[number], RecordRow>(
        `SELECT ${RECORD_COLUMNS} FROM records WHERE seq = ?`,
      ),
      range: db.prepare<[number, number, number], RecordRow>(
        `SELECT ${RECORD_COLUMNS} FROM records WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?`,
      ),
      codeFiles: db.prepare<[string], { path: string; blob_sha256: string; content: Buffer }>(
        `SELECT code_files.path, code_files.blob_sha256, blobs.content
         FROM code_files JOIN blobs ON blobs.sha256 = code_files.blob_sha256
         WHERE code_files.code_sha256 = ? ORDER BY code_files.path`,
      ),
      excerpt: db.prepare<[number], { stdout: Buffer; stderr: Buffer }>(
        'SELECT stdout, stderr FROM excerpts WHERE seq = ?',
      ),
    };
  }

  /** Opens (and on first use creates) the store at `path`. */
  static open(path: string): AuditStore {
    const db = openDatabase(path);
    try {
      return new AuditStore(db);
    } catch (error) {
      db.close();
      throw error;
    }
  }

  private static configure(db: Database.Database): StoreSettings {
    const journalMode = db.pragma('journal_mode = WAL', { simple: true });
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    const synchronous = db.pragma('synchronous', { simple: true });
    if (journalMode !== 'wal' || synchronous !== 2) {
      throw new Error(
        `SQLite reports journal_mode ${String(journalMode)} and synchronous ${String(synchronous)}; the audit store needs wal and 2 (FULL)`,
      );
    }
    return { journalMode, synchronous };
  }

  private static migrate(db: Database.Database): void {
    const version = db.pragma('user_version', { simple: true });
    if (version === SCHEMA_VERSION) {
      return;
    }
    if (version !== 0) {
      throw new ConfigError(
        'CORDON_AUDIT_DB_PATH',
        `the audit database has schema version ${String(version)}, but this service reads version ${SCHEMA_VERSION}; point CORDON_AUDIT_DB_PATH at a database this version wrote`,
      );
    }
    db.transaction(() => db.exec(schemaStatements())).immediate();
  }

  /**
   * Stores a batch of events in one transaction, so one fsync covers them
   * all. Each event is chained to the one before it inside the transaction.
   * The stored time never goes below the previous record's time, so time
   * order follows seq order even when the system clock steps back.
   */
  appendBatch(items: readonly PreparedAppend[]): AppendOutcome[] {
    const append = this.db.transaction((batch: readonly PreparedAppend[]) => {
      const last = this.statements.last.get();
      let seq = last?.seq ?? 0;
      let prevHash = last?.hash ?? GENESIS_HASH;
      const timeMs = Math.max(Date.now(), last?.time_ms ?? 0);

      return batch.map((item): AppendOutcome => {
        const existing = this.statements.byEventId.get(item.key.id);
        if (existing !== undefined) {
          return AuditStore.compareExisting(existing, item);
        }

        seq += 1;
        const hash = recordHash(seq, timeMs, item.eventJson, prevHash);
        this.statements.insertRecord.run(seq, timeMs, item.eventJson, prevHash, hash);
        this.storeFiles(item);
        if (item.excerpt !== undefined) {
          this.statements.insertExcerpt.run(seq, item.excerpt.stdout, item.excerpt.stderr);
        }
        prevHash = hash;
        return { kind: 'stored', seq, hash };
      });
    });
    return append.immediate(items);
  }

  private static compareExisting(existing: ExistingEvent, item: PreparedAppend): AppendOutcome {
    const same =
      existing.service === item.key.service &&
      existing.action === item.key.action &&
      existing.agent_id === item.key.agentId &&
      existing.run_id === item.key.runId;
    return same
      ? { kind: 'duplicate', seq: existing.seq, hash: existing.hash }
      : { kind: 'conflict', seq: existing.seq, action: existing.action };
  }

  private storeFiles(item: PreparedAppend): void {
    const codeSha256 = item.key.codeSha256;
    if (item.files.length === 0 || this.statements.codeExists.get(codeSha256) !== undefined) {
      return;
    }
    for (const file of item.files) {
      this.statements.insertBlob.run(file.sha256, file.content);
      this.statements.insertCodeFile.run(codeSha256, file.path, file.sha256);
    }
  }

  /** Returns the seq of the last record, 0 when the store is empty. */
  lastSeq(): number {
    return this.statements.last.get()?.seq ?? 0;
  }

  record(seq: number): StoredRecord | undefined {
    const row = this.statements.record.get(seq);
    return row === undefined ? undefined : toStoredRecord(row);
  }

  /** Returns up to `limit` records with fromSeq ≤ seq ≤ toSeq, in seq order. */
  recordRange(fromSeq: number, toSeq: number, limit: number): StoredRecord[] {
    return this.statements.range.all(fromSeq, toSeq, limit).map(toStoredRecord);
  }

  /** Returns the records that match every set filter, in seq order. */
  query(filter: RecordFilter): StoredRecord[] {
    const conditions = ['seq > ?'];
    const parameters: (string | number)[] = [filter.afterSeq];
    const equalities: [string, string | undefined][] = [
      ['agent_id', filter.agentId],
      ['action', filter.action],
      ['outcome', filter.outcome],
      ['run_id', filter.runId],
      ['trace_id', filter.traceId],
    ];
    for (const [column, value] of equalities) {
      if (value !== undefined) {
        conditions.push(`${column} = ?`);
        parameters.push(value);
      }
    }
    if (filter.startTimeMs !== undefined) {
      conditions.push('time_ms >= ?');
      parameters.push(filter.startTimeMs);
    }
    if (filter.endTimeMs !== undefined) {
      conditions.push('time_ms < ?');
      parameters.push(filter.endTimeMs);
    }
    parameters.push(filter.limit);

    const sql = `SELECT ${RECORD_COLUMNS} FROM records WHERE ${conditions.join(' AND ')} ORDER BY seq LIMIT ?`;
    let statement = this.queryStatements.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare<unknown[], RecordRow>(sql);
      this.queryStatements.set(sql, statement);
    }
    return statement.all(...parameters).map(toStoredRecord);
  }

  /** Returns the files stored for a code_sha256, by path; empty when none were stored. */
  codeFiles(codeSha256: string): CodeFile[] {
    return this.statements.codeFiles.all(codeSha256).map((row) => ({
      path: row.path,
      blobSha256: row.blob_sha256,
      content: row.content,
    }));
  }

  excerpt(seq: number): { stdout: Buffer; stderr: Buffer } | undefined {
    return this.statements.excerpt.get(seq);
  }

  /** Checkpoints the write-ahead log into the database file and closes it. */
  close(): void {
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.close();
  }
}

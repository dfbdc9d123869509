/**
 * The SQLite schema of the audit store, version 1.
 *
 * `records.event_json` is the canonical JSON of the event, the exact text
 * the hash covers. The columns that queries filter on are generated from
 * it, so they cannot disagree with what Verify checks. The triggers reject
 * UPDATE and DELETE from any client, this service included. Anyone who can
 * write the file can still drop them, and the hash chain detects that.
 */
export const SCHEMA_VERSION = 1;

const TABLES = `
CREATE TABLE records (
  seq INTEGER PRIMARY KEY,
  time_ms INTEGER NOT NULL,
  event_json TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  event_id TEXT GENERATED ALWAYS AS (json_extract(event_json, '$.id')) VIRTUAL,
  agent_id TEXT GENERATED ALWAYS AS (json_extract(event_json, '$.agent_id')) VIRTUAL,
  action TEXT GENERATED ALWAYS AS (json_extract(event_json, '$.action')) VIRTUAL,
  outcome TEXT GENERATED ALWAYS AS (json_extract(event_json, '$.outcome')) VIRTUAL,
  run_id TEXT GENERATED ALWAYS AS (json_extract(event_json, '$.run_id')) VIRTUAL,
  trace_id TEXT GENERATED ALWAYS AS (json_extract(event_json, '$.trace_id')) VIRTUAL
) STRICT;
CREATE UNIQUE INDEX records_event_id ON records (event_id);
CREATE INDEX records_agent ON records (agent_id, seq);
CREATE INDEX records_action ON records (action, seq);
CREATE INDEX records_run ON records (run_id, seq);
CREATE INDEX records_trace ON records (trace_id, seq);
CREATE INDEX records_time ON records (time_ms);

-- File contents, once per SHA-256 of the content.
CREATE TABLE blobs (
  sha256 TEXT PRIMARY KEY,
  content BLOB NOT NULL
) STRICT;

-- The file sets, once per code_sha256.
CREATE TABLE code_files (
  code_sha256 TEXT NOT NULL,
  path TEXT NOT NULL,
  blob_sha256 TEXT NOT NULL REFERENCES blobs (sha256),
  PRIMARY KEY (code_sha256, path)
) STRICT, WITHOUT ROWID;

-- Output excerpts of a record; their size, hash and truncation are audit.* attributes of it.
CREATE TABLE excerpts (
  seq INTEGER PRIMARY KEY REFERENCES records (seq),
  stdout BLOB NOT NULL,
  stderr BLOB NOT NULL
) STRICT;
`;

const APPEND_ONLY_TABLES = ['records', 'blobs', 'code_files', 'excerpts'] as const;

/** Message of the error SQLite raises for an UPDATE or DELETE on an audit table. */
export const APPEND_ONLY_MESSAGE = 'audit tables are append-only';

function appendOnlyTriggers(): string {
  return APPEND_ONLY_TABLES.flatMap((table) =>
    ['UPDATE', 'DELETE'].map(
      (operation) =>
        `CREATE TRIGGER ${table}_no_${operation.toLowerCase()} BEFORE ${operation} ON ${table}
         BEGIN SELECT RAISE(ABORT, '${APPEND_ONLY_MESSAGE}'); END;`,
    ),
  ).join('\n');
}

/** DDL that creates schema version 1 in an empty database. */
export function schemaStatements(): string {
  return `${TABLES}\n${appendOnlyTriggers()}\nPRAGMA user_version = ${SCHEMA_VERSION};`;
}

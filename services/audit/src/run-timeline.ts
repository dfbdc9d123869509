import { status } from '@grpc/grpc-js';
import type { auditV1, commonV1 } from '@cordon/proto';
import { codeSha256FromHashes, CordonError, type Logger } from '@cordon/service-kit';
import { RESERVED_ATTRIBUTE_PREFIX } from './append-attachments.js';
import type { AuditStore, StoredRecord } from './audit-store.js';
import type { ReadScope } from './caller-identity.js';
import { eventFromCanonicalJson, recordHash, sha256Hex } from './canonical.js';

/** Most records GetRun returns; a run has a handful (start, scan, end). */
const MAX_TIMELINE_RECORDS = 1000;

/** Converts a stored row into the AuditRecord message. */
export function toAuditRecord(record: StoredRecord): auditV1.AuditRecord {
  return {
    seq: record.seq,
    time: new Date(record.timeMs),
    event: eventFromCanonicalJson(record.eventJson),
    prevHash: record.prevHash,
    hash: record.hash,
  };
}

function dataLoss(logger: Logger, runId: string, seq: number, what: string): CordonError {
  logger.error({ run_id: runId, seq }, 'stored run data does not match its record');
  return new CordonError(
    status.DATA_LOSS,
    `${what} of seq ${seq} does not match its record; the audit database was changed outside the service; run Verify and restore it from a backup`,
  );
}

function stringAttribute(event: auditV1.AuditEvent, key: string): string | undefined {
  const value = event.attributes[key]?.value;
  return value?.$case === 'stringValue' ? value.value : undefined;
}

function boolAttribute(event: auditV1.AuditEvent, key: string): boolean {
  const value = event.attributes[key]?.value;
  return value?.$case === 'boolValue' ? value.value : false;
}

/** Returns the first stored file set of the timeline, checked against its code_sha256. */
function readFiles(
  store: AuditStore,
  timeline: readonly auditV1.AuditRecord[],
  logger: Logger,
  runId: string,
): commonV1.File[] {
  for (const record of timeline) {
    const expected = record.event?.codeSha256 ?? '';
    const files = expected === '' ? [] : store.codeFiles(expected);
    if (files.length === 0) {
      continue;
    }
    const intact =
      files.every((file) => sha256Hex(file.content) === file.blobSha256) &&
      codeSha256FromHashes(files.map((file) => ({ path: file.path, sha256: file.blobSha256 }))) ===
        expected;
    if (!intact) {
      throw dataLoss(logger, runId, record.seq, 'the stored code');
    }
    return files.map((file) => ({ path: file.path, content: file.content }));
  }
  return [];
}

interface RunOutput {
  stdoutExcerpt: Buffer;
  stderrExcerpt: Buffer;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}

/** Returns the output excerpts of the last record that has them, checked against its attributes. */
function readOutput(
  store: AuditStore,
  timeline: readonly auditV1.AuditRecord[],
  logger: Logger,
  runId: string,
): RunOutput {
  for (const record of [...timeline].reverse()) {
    const excerpt = store.excerpt(record.seq);
    if (excerpt === undefined || record.event === undefined) {
      continue;
    }
    const event = record.event;
    const intact =
      stringAttribute(event, `${RESERVED_ATTRIBUTE_PREFIX}stdout_sha256`) ===
        sha256Hex(excerpt.stdout) &&
      stringAttribute(event, `${RESERVED_ATTRIBUTE_PREFIX}stderr_sha256`) ===
        sha256Hex(excerpt.stderr);
    if (!intact) {
      throw dataLoss(logger, runId, record.seq, 'the stored output excerpt');
    }
    return {
      stdoutExcerpt: excerpt.stdout,
      stderrExcerpt: excerpt.stderr,
      stdoutTruncated: boolAttribute(event, `${RESERVED_ATTRIBUTE_PREFIX}stdout_truncated`),
      stderrTruncated: boolAttribute(event, `${RESERVED_ATTRIBUTE_PREFIX}stderr_truncated`),
    };
  }
  return {
    stdoutExcerpt: Buffer.alloc(0),
    stderrExcerpt: Buffer.alloc(0),
    stdoutTruncated: false,
    stderrTruncated: false,
  };
}

/**
 * Builds a run's timeline with its code and output. Every record, file and
 * excerpt is checked against the hashes the chain covers, so what GetRun
 * returns is what was appended, or the call fails with DATA_LOSS.
 */
export function readRun(
  store: AuditStore,
  runId: string,
  scope: ReadScope,
  logger: Logger,
): auditV1.GetRunResponse {
  if (runId === '') {
    throw CordonError.invalidArgument('run_id', 'is missing; give the run id to look up');
  }

  const stored = store.query({
    runId,
    agentId: scope.kind === 'agent' ? scope.agentId : undefined,
    afterSeq: 0,
    limit: MAX_TIMELINE_RECORDS + 1,
  });
  if (stored.length === 0) {
    throw new CordonError(status.NOT_FOUND, `no records of run "${runId}" were found`);
  }
  if (stored.length > MAX_TIMELINE_RECORDS) {
    throw new CordonError(
      status.FAILED_PRECONDITION,
      `run "${runId}" has more than ${MAX_TIMELINE_RECORDS} records; page through them with Query and run_id`,
    );
  }
  for (const record of stored) {
    if (recordHash(record.seq, record.timeMs, record.eventJson, record.prevHash) !== record.hash) {
      throw dataLoss(logger, runId, record.seq, 'the record');
    }
  }

  const timeline = stored.map(toAuditRecord);
  return {
    runId,
    timeline,
    files: readFiles(store, timeline, logger, runId),
    ...readOutput(store, timeline, logger, runId),
  };
}

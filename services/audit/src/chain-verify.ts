import { setImmediate as nextTurn } from 'node:timers/promises';
import type { auditV1 } from '@cordon/proto';
import type { AuditStore, StoredRecord } from './audit-store.js';
import { GENESIS_HASH, recordHash } from './canonical.js';

/** Records read per step; between steps other calls, Appends among them, get to run. */
const VERIFY_PAGE_RECORDS = 5000;

/** An inclusive seq range with both ends resolved (0 replaced by the first or last seq). */
export interface SeqRange {
  readonly fromSeq: number;
  readonly toSeq: number;
}

function failure(
  seq: number,
  reason: string,
  recordsChecked: number,
  lastHash: string,
): auditV1.VerifyResponse {
  return { ok: false, recordsChecked, firstBadSeq: seq, reason, lastHash };
}

/** Returns why a record breaks the chain, or undefined when it is intact. */
function checkRecord(record: StoredRecord, expectedPrevHash: string): string | undefined {
  if (record.prevHash !== expectedPrevHash) {
    return record.seq === 1
      ? 'prev_hash of the first record is not 64 zeros; the record was changed'
      : `prev_hash does not match the hash of seq ${record.seq - 1}; one of the two records was changed`;
  }
  if (recordHash(record.seq, record.timeMs, record.eventJson, record.prevHash) !== record.hash) {
    return 'the hash does not match the record; the record was changed after it was stored';
  }
  return undefined;
}

/**
 * Recomputes the hash chain over a range: each record's hash from its
 * canonical encoding, each prev_hash against the record before, and seq
 * without gaps. Reports the first record that fails.
 *
 * NOTE: a chain cannot show that records were cut off its end. Compare
 * last_hash with one kept elsewhere (a previous Verify or Export) to
 * detect that.
 */
export async function verifyChain(
  store: AuditStore,
  range: SeqRange,
  signal: AbortSignal,
): Promise<auditV1.VerifyResponse> {
  // Only an open range (to_seq 0) that starts past the last record gets here.
  if (range.fromSeq > range.toSeq) {
    const last = store.record(range.toSeq);
    return { ok: true, recordsChecked: 0, reason: '', lastHash: last?.hash ?? GENESIS_HASH };
  }

  let prevHash = GENESIS_HASH;
  if (range.fromSeq > 1) {
    const before = store.record(range.fromSeq - 1);
    if (before === undefined) {
      return failure(
        range.fromSeq - 1,
        `seq ${range.fromSeq - 1} is missing, so seq ${range.fromSeq} cannot be linked to the chain`,
        0,
        GENESIS_HASH,
      );
    }
    prevHash = before.hash;
  }

  let expectedSeq = range.fromSeq;
  let recordsChecked = 0;
  while (expectedSeq <= range.toSeq) {
    const page = store.recordRange(expectedSeq, range.toSeq, VERIFY_PAGE_RECORDS);
    if (page.length === 0) {
      return failure(
        expectedSeq,
        `seq ${expectedSeq} is missing; the last stored record is seq ${store.lastSeq()}`,
        recordsChecked,
        prevHash,
      );
    }

    for (const record of page) {
      if (record.seq !== expectedSeq) {
        return failure(
          expectedSeq,
          `seq ${expectedSeq} is missing; the next stored record is seq ${record.seq}`,
          recordsChecked,
          prevHash,
        );
      }
      const problem = checkRecord(record, prevHash);
      if (problem !== undefined) {
        return failure(record.seq, problem, recordsChecked, prevHash);
      }
      prevHash = record.hash;
      recordsChecked += 1;
      expectedSeq += 1;
    }

    await nextTurn();
    signal.throwIfAborted();
  }

  return { ok: true, recordsChecked, reason: '', lastHash: prevHash };
}

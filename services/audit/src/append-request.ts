import { auditV1 } from '@cordon/proto';
import { codeSha256FromHashes, CordonError } from '@cordon/service-kit';
import {
  describeExcerpt,
  keepExcerpt,
  prepareFiles,
  RESERVED_ATTRIBUTE_PREFIX,
  type StoredFile,
} from './append-attachments.js';
import type { AuditOptions } from './audit-options.js';
import { canonicalEventJson } from './canonical.js';

/** Fields of a prepared event that the store looks up or compares. */
export interface EventKey {
  readonly id: string;
  readonly service: string;
  readonly action: string;
  readonly agentId: string;
  readonly runId: string;
  readonly codeSha256: string;
}

/**
 * An Append after validation, as the store writer receives it: the event
 * only as canonical JSON, plus the few fields the store needs from it.
 */
export interface PreparedAppend {
  readonly key: EventKey;
  /** Canonical JSON of the event; the store keeps and hashes this text. */
  readonly eventJson: string;
  readonly files: readonly StoredFile[];
  /** The kept output excerpts; undefined when the request carried no output. */
  readonly excerpt: { readonly stdout: Buffer; readonly stderr: Buffer } | undefined;
}

/** Trace and span ids of the Append call, used when the event carries none. */
export interface CallTrace {
  readonly traceId: string;
  readonly spanId: string;
}

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const SERVICE_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;
const ACTION_PATTERN = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;
const MAX_ACTION_LENGTH = 128;
const MAX_AGENT_ID_BYTES = 256;
const MAX_RUN_ID_BYTES = 128;
const TRACE_ID_PATTERN = /^[0-9a-f]{32}$/;
const SPAN_ID_PATTERN = /^[0-9a-f]{16}$/;
const SHA256_PATTERN = /^[0-9a-f]{64}$/;
const MAX_ATTRIBUTES = 256;
const ATTRIBUTE_KEY_PATTERN = /^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$/;
const MAX_ATTRIBUTE_KEY_LENGTH = 128;
const MAX_ATTRIBUTE_STRING_BYTES = 8 * 1024;
/** Latest time ISO 8601 can write with a four-digit year: 9999-12-31T23:59:59.999Z. */
const MAX_TIME_MS = 253_402_300_799_999;
// Unicode category Cc: the C0 controls (NUL among them), DEL and the C1 controls.
const CONTROL_CHARACTER = /\p{Cc}/u;
const KNOWN_OUTCOMES = new Set<number>(
  Object.values(auditV1.AuditOutcome).filter((value) => typeof value === 'number'),
);

/** Returns whether a number is a value of the AuditOutcome enum in this build of the proto. */
export function isKnownOutcome(outcome: number): boolean {
  return KNOWN_OUTCOMES.has(outcome);
}

function invalid(field: string, description: string): CordonError {
  return CordonError.invalidArgument(field, description);
}

function checkRequiredText(value: string, field: string, pattern: RegExp, expected: string): void {
  if (value === '') {
    throw invalid(field, `is missing; set it to ${expected}`);
  }
  if (!pattern.test(value)) {
    throw invalid(field, `${JSON.stringify(value.slice(0, 80))} is invalid; expected ${expected}`);
  }
}

function checkFreeText(value: string, field: string, maxBytes: number): void {
  if (Buffer.byteLength(value) > maxBytes) {
    throw invalid(field, `is longer than ${maxBytes} bytes`);
  }
  if (CONTROL_CHARACTER.test(value)) {
    throw invalid(field, 'contains a NUL or control character; use printable characters only');
  }
}

function checkOptionalHex(value: string, field: string, pattern: RegExp, expected: string): void {
  if (value !== '' && !pattern.test(value)) {
    throw invalid(field, `${JSON.stringify(value.slice(0, 80))} is invalid; expected ${expected}`);
  }
}

function checkTime(time: Date | undefined, field: string): void {
  if (time === undefined) {
    return;
  }
  const ms = time.getTime();
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_TIME_MS) {
    throw invalid(field, 'is outside 1970-01-01 to 9999-12-31; send the time the step happened');
  }
}

function checkAttributes(attributes: Record<string, auditV1.AttributeValue>): void {
  const entries = Object.entries(attributes);
  if (entries.length > MAX_ATTRIBUTES) {
    throw invalid(
      'event.attributes',
      `has ${entries.length} entries; this server accepts at most ${MAX_ATTRIBUTES}`,
    );
  }

  for (const [key, attribute] of entries) {
    const field = `event.attributes[${JSON.stringify(key.slice(0, 80))}]`;
    if (key.length > MAX_ATTRIBUTE_KEY_LENGTH || !ATTRIBUTE_KEY_PATTERN.test(key)) {
      throw invalid(
        field,
        `the key is invalid; expected up to ${MAX_ATTRIBUTE_KEY_LENGTH} ASCII letters, digits and underscores in dot-separated parts, such as limits.memory_bytes`,
      );
    }
    if (key.startsWith(RESERVED_ATTRIBUTE_PREFIX)) {
      throw invalid(
        field,
        `keys starting with "${RESERVED_ATTRIBUTE_PREFIX}" are set by the audit service; rename the attribute`,
      );
    }

    const value = attribute.value;
    if (value === undefined) {
      throw invalid(field, 'has no value; set string_value, int_value, double_value or bool_value');
    }
    if (
      value.$case === 'stringValue' &&
      Buffer.byteLength(value.value) > MAX_ATTRIBUTE_STRING_BYTES
    ) {
      throw invalid(`${field}.string_value`, `is longer than ${MAX_ATTRIBUTE_STRING_BYTES} bytes`);
    }
    if (value.$case === 'doubleValue' && !Number.isFinite(value.value)) {
      throw invalid(
        `${field}.double_value`,
        `${value.value} is not a finite number; send a finite number or a string`,
      );
    }
  }
}

function checkEvent(event: auditV1.AuditEvent): void {
  checkRequiredText(
    event.id,
    'event.id',
    ID_PATTERN,
    'a unique id of up to 128 letters, digits, ".", "_", ":" or "-", such as a UUID',
  );
  checkRequiredText(
    event.service,
    'event.service',
    SERVICE_PATTERN,
    'the lower-case name of the appending service, such as executor',
  );
  checkRequiredText(
    event.action,
    'event.action',
    ACTION_PATTERN,
    'a dotted lower-case action name, such as execution.started',
  );
  if (event.action.length > MAX_ACTION_LENGTH) {
    throw invalid('event.action', `is longer than ${MAX_ACTION_LENGTH} characters`);
  }

  checkFreeText(event.agentId, 'event.agent_id', MAX_AGENT_ID_BYTES);
  checkFreeText(event.runId, 'event.run_id', MAX_RUN_ID_BYTES);
  if (!isKnownOutcome(event.outcome)) {
    throw invalid('event.outcome', `${event.outcome} is not a known AuditOutcome value`);
  }

  checkOptionalHex(
    event.traceId,
    'event.trace_id',
    TRACE_ID_PATTERN,
    '32 lower-case hex digits, or empty',
  );
  checkOptionalHex(
    event.spanId,
    'event.span_id',
    SPAN_ID_PATTERN,
    '16 lower-case hex digits, or empty',
  );
  checkOptionalHex(
    event.codeSha256,
    'event.code_sha256',
    SHA256_PATTERN,
    '64 lower-case hex digits, or empty',
  );

  checkTime(event.occurredTime, 'event.occurred_time');
  checkAttributes(event.attributes);
}

/**
 * Validates an Append and builds the event that will be stored. The trace
 * and span ids of the call fill an empty trace_id, and code_sha256 is
 * computed from the files. Excerpts are cut to CORDON_AUDIT_OUTPUT_BYTES,
 * and their size, hash and truncation become audit.* attributes, so the
 * hash chain covers them too.
 */
export function prepareAppend(
  request: auditV1.AppendRequest,
  options: AuditOptions,
  callTrace: CallTrace | undefined,
): PreparedAppend {
  if (request.event === undefined) {
    throw invalid('event', 'is missing; send the event to record');
  }
  const event: auditV1.AuditEvent = {
    ...request.event,
    attributes: { ...request.event.attributes },
  };
  checkEvent(event);

  if (event.traceId === '' && callTrace !== undefined) {
    event.traceId = callTrace.traceId;
    event.spanId = event.spanId === '' ? callTrace.spanId : event.spanId;
  }

  const files = prepareFiles(request.files, options);
  if (files.length > 0) {
    const computed = codeSha256FromHashes(files);
    if (event.codeSha256 !== '' && event.codeSha256 !== computed) {
      throw invalid(
        'event.code_sha256',
        `${event.codeSha256} does not match the files, whose code_sha256 is ${computed}; compute it with codeSha256 of @cordon/service-kit or leave it empty`,
      );
    }
    event.codeSha256 = computed;
  }

  const hasOutput =
    request.stdoutExcerpt.length > 0 ||
    request.stderrExcerpt.length > 0 ||
    request.stdoutTruncated ||
    request.stderrTruncated;
  let excerpt: PreparedAppend['excerpt'];
  if (hasOutput) {
    const stdout = keepExcerpt(
      request.stdoutExcerpt,
      request.stdoutTruncated,
      'stdout_excerpt',
      options,
    );
    const stderr = keepExcerpt(
      request.stderrExcerpt,
      request.stderrTruncated,
      'stderr_excerpt',
      options,
    );
    describeExcerpt(event.attributes, 'stdout', stdout);
    describeExcerpt(event.attributes, 'stderr', stderr);
    excerpt = { stdout: stdout.bytes, stderr: stderr.bytes };
  }

  const key: EventKey = {
    id: event.id,
    service: event.service,
    action: event.action,
    agentId: event.agentId,
    runId: event.runId,
    codeSha256: event.codeSha256,
  };
  return { key, eventJson: canonicalEventJson(event), files, excerpt };
}

/**
 * The canonical encoding that the hash chain covers. README.md describes it
 * for third parties. Any change here changes the hash of every record, so
 * records already stored would no longer verify.
 */
import { createHash } from 'node:crypto';
import { auditV1 } from '@cordon/proto';

/** prev_hash of the first record. */
export const GENESIS_HASH = '0'.repeat(64);

/** A JSON value as the canonical encoding allows it: no undefined, no non-finite numbers. */
export type CanonicalValue =
  | string
  | number
  | boolean
  | null
  | readonly CanonicalValue[]
  | { readonly [key: string]: CanonicalValue };

/**
 * Serialises a value as JSON with object keys sorted and no whitespace.
 * For strings, safe integers, finite doubles, booleans and null this is the
 * output of RFC 8785 (JSON Canonicalization Scheme): JSON.stringify already
 * prints numbers and escapes strings the way RFC 8785 requires.
 */
export function canonicalJson(value: CanonicalValue): string {
  if (value === null || typeof value !== 'object') {
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map((item: CanonicalValue) => canonicalJson(item)).join(',')}]`;
  }
  const object = value as { readonly [key: string]: CanonicalValue };
  const members = Object.keys(object)
    .sort()
    .map((key) => `${JSON.stringify(key)}:${canonicalJson(object[key] ?? null)}`);
  return `{${members.join(',')}}`;
}

/** Name of the attribute oneof case in the canonical encoding, by ts-proto case. */
const ATTRIBUTE_TAGS = {
  stringValue: 'string_value',
  intValue: 'int_value',
  doubleValue: 'double_value',
  boolValue: 'bool_value',
} as const;

type AttributeTag = (typeof ATTRIBUTE_TAGS)[keyof typeof ATTRIBUTE_TAGS];

/** Encodes an attribute value as a one-member object naming its oneof case. */
function canonicalAttribute(value: auditV1.AttributeValue): CanonicalValue {
  if (value.value === undefined) {
    throw new TypeError('an attribute without a value has no canonical encoding');
  }
  return { [ATTRIBUTE_TAGS[value.value.$case]]: value.value.value };
}

/**
 * Returns the canonical object of an event: every field under its proto
 * name, empty strings kept, the outcome as its enum name, occurred_time as
 * an ISO 8601 string with milliseconds (null when unset).
 */
export function canonicalEvent(event: auditV1.AuditEvent): CanonicalValue {
  const attributes: Record<string, CanonicalValue> = {};
  for (const [key, value] of Object.entries(event.attributes)) {
    attributes[key] = canonicalAttribute(value);
  }
  return {
    action: event.action,
    agent_id: event.agentId,
    attributes,
    code_sha256: event.codeSha256,
    id: event.id,
    occurred_time: event.occurredTime?.toISOString() ?? null,
    outcome: auditV1.auditOutcomeToJSON(event.outcome),
    run_id: event.runId,
    service: event.service,
    span_id: event.spanId,
    trace_id: event.traceId,
  };
}

/** Returns the canonical JSON of an event, as stored and as hashed. */
export function canonicalEventJson(event: auditV1.AuditEvent): string {
  return canonicalJson(canonicalEvent(event));
}

/**
 * Returns the canonical JSON of a whole record: the keys event, prev_hash,
 * seq and time in that (sorted) order. `eventJson` must be the output of
 * canonicalEventJson, which is what the store keeps.
 */
export function canonicalRecordJson(
  seq: number,
  timeMs: number,
  eventJson: string,
  prevHash: string,
): string {
  const time = new Date(timeMs).toISOString();
  return `{"event":${eventJson},"prev_hash":"${prevHash}","seq":${seq},"time":"${time}"}`;
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Returns the record hash: hex SHA-256 of the UTF-8 canonical record JSON. */
export function recordHash(
  seq: number,
  timeMs: number,
  eventJson: string,
  prevHash: string,
): string {
  return sha256Hex(canonicalRecordJson(seq, timeMs, eventJson, prevHash));
}

/** Parses a stored canonical event JSON back into the proto message. */
export function eventFromCanonicalJson(eventJson: string): auditV1.AuditEvent {
  const parsed = JSON.parse(eventJson) as {
    action: string;
    agent_id: string;
    attributes: Record<string, Partial<Record<AttributeTag, string | number | boolean>>>;
    code_sha256: string;
    id: string;
    occurred_time: string | null;
    outcome: string;
    run_id: string;
    service: string;
    span_id: string;
    trace_id: string;
  };

  const attributes: Record<string, auditV1.AttributeValue> = {};
  for (const [key, tagged] of Object.entries(parsed.attributes)) {
    attributes[key] = attributeFromCanonical(tagged);
  }
  return {
    id: parsed.id,
    service: parsed.service,
    agentId: parsed.agent_id,
    action: parsed.action,
    outcome: auditV1.auditOutcomeFromJSON(parsed.outcome),
    traceId: parsed.trace_id,
    spanId: parsed.span_id,
    runId: parsed.run_id,
    attributes,
    codeSha256: parsed.code_sha256,
    occurredTime: parsed.occurred_time === null ? undefined : new Date(parsed.occurred_time),
  };
}

function attributeFromCanonical(
  tagged: Partial<Record<AttributeTag, string | number | boolean>>,
): auditV1.AttributeValue {
  if (typeof tagged.string_value === 'string') {
    return { value: { $case: 'stringValue', value: tagged.string_value } };
  }
  if (typeof tagged.int_value === 'number') {
    return { value: { $case: 'intValue', value: tagged.int_value } };
  }
  if (typeof tagged.double_value === 'number') {
    return { value: { $case: 'doubleValue', value: tagged.double_value } };
  }
  if (typeof tagged.bool_value === 'boolean') {
    return { value: { $case: 'boolValue', value: tagged.bool_value } };
  }
  throw new TypeError(`stored attribute ${JSON.stringify(tagged)} has no known value case`);
}

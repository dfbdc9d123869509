import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { auditV1 } from '@cordon/proto';
import {
  canonicalEventJson,
  canonicalJson,
  canonicalRecordJson,
  GENESIS_HASH,
  recordHash,
} from '../src/canonical.js';

const EVENT = auditV1.AuditEvent.fromPartial({
  id: 'evt-1',
  service: 'executor',
  agentId: 'agent-ä',
  action: 'execution.finished',
  outcome: auditV1.AuditOutcome.AUDIT_OUTCOME_FAILURE,
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  spanId: '00f067aa0ba902b7',
  runId: 'run-1',
  attributes: {
    'usage.cpu_seconds': { value: { $case: 'doubleValue', value: 0.25 } },
    'exit.code': { value: { $case: 'intValue', value: 137 } },
    isolation: { value: { $case: 'stringValue', value: 'runc "hardened"\n' } },
    'limits.wall_time_hit': { value: { $case: 'boolValue', value: true } },
  },
  occurredTime: new Date('2025-01-02T03:04:05.678Z'),
});

describe('canonical encoding', () => {
  it('writes sorted keys and typed attributes', () => {
    expect(canonicalEventJson(EVENT)).toBe(
      '{"action":"execution.finished","agent_id":"agent-ä",' +
        '"attributes":{"exit.code":{"int_value":137},"isolation":{"string_value":"runc \\"hardened\\"\\n"},' +
        '"limits.wall_time_hit":{"bool_value":true},"usage.cpu_seconds":{"double_value":0.25}},' +
        '"code_sha256":"","id":"evt-1","occurred_time":"2025-01-02T03:04:05.678Z",' +
        '"outcome":"AUDIT_OUTCOME_FAILURE","run_id":"run-1","service":"executor",' +
        '"span_id":"00f067aa0ba902b7","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}',
    );
  });

  it('writes unset fields as null or empty', () => {
    const event = auditV1.AuditEvent.fromPartial({ id: 'e', service: 's', action: 'a.b' });

    expect(canonicalEventJson(event)).toBe(
      '{"action":"a.b","agent_id":"","attributes":{},"code_sha256":"","id":"e","occurred_time":null,' +
        '"outcome":"AUDIT_OUTCOME_UNSPECIFIED","run_id":"","service":"s","span_id":"","trace_id":""}',
    );
  });

  it('matches sorting the whole record', () => {
    const eventJson = canonicalEventJson(EVENT);
    const timeMs = Date.parse('2025-01-02T03:04:06.001Z');

    const fast = canonicalRecordJson(7, timeMs, eventJson, GENESIS_HASH);
    const sorted = canonicalJson({
      time: '2025-01-02T03:04:06.001Z',
      seq: 7,
      prev_hash: GENESIS_HASH,
      event: JSON.parse(eventJson) as Record<string, never>,
    });

    expect(fast).toBe(sorted);
    expect(recordHash(7, timeMs, eventJson, GENESIS_HASH)).toBe(
      createHash('sha256').update(sorted, 'utf8').digest('hex'),
    );
  });

  it('prints doubles as ECMAScript does', () => {
    expect(canonicalJson([5, 1e21, 1.5e-7, 0.1 + 0.2, -0])).toBe(
      '[5,1e+21,1.5e-7,0.30000000000000004,0]',
    );
  });
});

import type { Metadata } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  append,
  as,
  cleanUp,
  exportRecords,
  makeEvent,
  makeTempDir,
  startAudit,
} from './support/audit-harness.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_SPAN_ID = '00f067aa0ba902b7';

/** Service metadata carrying a W3C traceparent, as an instrumented caller sends it. */
function tracedServiceMetadata(): Metadata {
  const metadata = as('service');
  metadata.set('traceparent', `00-${TRACE_ID}-${PARENT_SPAN_ID}-01`);
  return metadata;
}

afterEach(async () => {
  expect(await cleanUp()).toBe(0);
});

describe('trace ids of records', () => {
  it('fills an empty trace id from the call', async () => {
    const audit = await startAudit(makeTempDir());

    await append(audit, { event: makeEvent({ traceId: '', spanId: '' }) }, tracedServiceMetadata());
    const [record] = await exportRecords(audit);

    const appendLine = await audit.waitForLog(
      (line) => line['rpc'] === 'cordon.v1.AuditService/Append' && line.msg === 'rpc finished',
    );
    expect(record!.event!.traceId).toBe(TRACE_ID);
    expect(appendLine['trace_id']).toBe(TRACE_ID);
    expect(record!.event!.spanId).toBe(appendLine['span_id']);
    expect(record!.event!.spanId).not.toBe(PARENT_SPAN_ID);
  });

  it('keeps the ids the event carries', async () => {
    const audit = await startAudit(makeTempDir());
    const event = makeEvent({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
    });

    await append(audit, { event }, tracedServiceMetadata());
    const [record] = await exportRecords(audit);

    expect(record!.event!.traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(record!.event!.spanId).toBe('b7ad6b7169203331');
  });
});

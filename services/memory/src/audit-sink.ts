import type { AuditEventInput, AuditSink as KitAuditSink } from '@cordon/service-kit';

export { AUDITING_OFF, GrpcAuditSink } from '@cordon/service-kit';

export type MemoryAction = 'memory.put' | 'memory.delete' | 'auth.denied';

/** An event the memory service records: key names and sizes, never values. */
export type MemoryAuditEvent = AuditEventInput<MemoryAction>;

/** Destination of the memory service's audit events. */
export type AuditSink = KitAuditSink<MemoryAction>;

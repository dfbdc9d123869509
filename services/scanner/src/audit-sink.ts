import type { AuditEventInput, AuditSink as KitAuditSink } from '@cordon/service-kit';

export { AUDITING_OFF, GrpcAuditSink } from '@cordon/service-kit';

export type ScannerAction = 'scan.completed' | 'auth.denied';

/**
 * An event the scanner records: counts and rule ids, never code or
 * snippets. The executor records its own copy of the findings that decided a run.
 */
export type ScanAuditEvent = AuditEventInput<ScannerAction>;

/** Destination of the scanner's audit events. */
export type AuditSink = KitAuditSink<ScannerAction>;

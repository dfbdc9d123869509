import { status } from '@grpc/grpc-js';
import { CordonError, type CallerRole, type VerifiedCaller } from '@cordon/service-kit';

export type { CallerRole } from '@cordon/service-kit';

/** Operation a caller requests. */
export type AuditOperation = 'append' | 'query' | 'get-run' | 'verify' | 'export';

/** Records a caller may see: all of them, or only one agent's. */
export type ReadScope =
  { readonly kind: 'all' } | { readonly kind: 'agent'; readonly agentId: string };

/**
 * Roles that may perform each operation. Only services append; agents read
 * their own records; auditors and admins read, verify and export all of
 * them. Verify and Export walk the whole hash chain, so they are closed
 * to agents rather than filtered.
 */
export const ALLOWED_ROLES: Readonly<Record<AuditOperation, readonly CallerRole[]>> = {
  append: ['service'],
  query: ['agent', 'auditor', 'admin'],
  'get-run': ['agent', 'auditor', 'admin'],
  verify: ['auditor', 'admin'],
  export: ['auditor', 'admin'],
};

/**
 * Decides whether the verified caller may perform an operation, and
 * returns whose records it may see. The server's auth interceptor already
 * enforces ALLOWED_ROLES; checking here again keeps the read scope and the
 * role rule in one place.
 */
export function authorize(caller: VerifiedCaller, operation: AuditOperation): ReadScope {
  const allowed = ALLOWED_ROLES[operation];
  if (!allowed.includes(caller.role)) {
    throw new CordonError(
      status.PERMISSION_DENIED,
      `role ${caller.role} may not call ${operation}; it is open to ${allowed.join(', ')}`,
    );
  }
  return caller.role === 'agent' ? { kind: 'agent', agentId: caller.agentId } : { kind: 'all' };
}

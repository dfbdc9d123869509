import { status, type Metadata } from '@grpc/grpc-js';
import { CordonError } from '@cordon/service-kit';

export const AGENT_ID_METADATA_KEY = 'x-cordon-agent-id';
export const ROLE_METADATA_KEY = 'x-cordon-role';

const ROLES = ['agent', 'auditor', 'service'] as const;

/** Role of a caller. An agent reads its own records, an auditor reads all records, and a service appends. */
export type CallerRole = (typeof ROLES)[number];

export interface CallerIdentity {
  readonly role: CallerRole;
  /** Set for agents; empty for the other roles. */
  readonly agentId: string;
}

/** Operation a caller requests. */
export type AuditOperation = 'append' | 'query' | 'get-run' | 'verify' | 'export';

/** Records a caller may see: all of them, or only one agent's. */
export type ReadScope =
  { readonly kind: 'all' } | { readonly kind: 'agent'; readonly agentId: string };

const MAX_AGENT_ID_BYTES = 256;

function firstText(metadata: Metadata, key: string): string {
  const value = metadata.get(key)[0];
  return typeof value === 'string' ? value : '';
}

/**
 * Reads the caller's identity from gRPC metadata.
 *
 * NOTE: these metadata values are not verified: any client can claim any
 * role. The identity layer will replace this function with one that reads
 * verified tokens; `authorize` stays as it is.
 */
export function callerFromMetadata(metadata: Metadata): CallerIdentity {
  const role = firstText(metadata, ROLE_METADATA_KEY);
  const known = ROLES.find((candidate) => candidate === role);
  if (known === undefined) {
    const shown = role === '' ? 'missing' : `"${role.slice(0, 40)}", which is not a known role`;
    throw new CordonError(
      status.UNAUTHENTICATED,
      `${ROLE_METADATA_KEY} metadata is ${shown}; send agent, auditor or service`,
    );
  }

  const agentId = firstText(metadata, AGENT_ID_METADATA_KEY);
  if (known === 'agent' && (agentId === '' || Buffer.byteLength(agentId) > MAX_AGENT_ID_BYTES)) {
    throw new CordonError(
      status.UNAUTHENTICATED,
      `an agent caller must send its id (1 to ${MAX_AGENT_ID_BYTES} bytes) in ${AGENT_ID_METADATA_KEY} metadata`,
    );
  }
  return { role: known, agentId: known === 'agent' ? agentId : '' };
}

const ALLOWED_ROLES: Record<AuditOperation, readonly CallerRole[]> = {
  append: ['service'],
  query: ['agent', 'auditor'],
  'get-run': ['agent', 'auditor'],
  verify: ['auditor'],
  export: ['auditor'],
};

/**
 * Decides whether the caller may perform an operation, and returns whose
 * records it may see. Agents see only their own records; auditors see all.
 */
export function authorize(caller: CallerIdentity, operation: AuditOperation): ReadScope {
  const allowed = ALLOWED_ROLES[operation];
  if (!allowed.includes(caller.role)) {
    throw new CordonError(
      status.PERMISSION_DENIED,
      `role ${caller.role} may not call ${operation}; it is open to the ${allowed.join(' and ')} role${allowed.length > 1 ? 's' : ''}`,
    );
  }
  return caller.role === 'agent' ? { kind: 'agent', agentId: caller.agentId } : { kind: 'all' };
}

import { status } from '@grpc/grpc-js';
import { auditV1, memoryV1 } from '@cordon/proto';
import {
  AUTH_DENIED_ACTION,
  CordonError,
  defineService,
  denialAttributes,
  type CallContext,
  type ServiceRegistration,
} from '@cordon/service-kit';
import type { AuditSink } from './audit-sink.js';
import { callerAgentId } from './caller.js';
import type { MemoryLimits } from './memory-options.js';
import {
  encodePageToken,
  parseDelete,
  parseGet,
  parseList,
  parsePut,
  versionMismatch,
} from './memory-request.js';
import type { DeleteResult, MemoryStore, PutCommand, PutResult } from './memory-store.js';
import { StoreAccessDenied } from './store-errors.js';
import type { StoreRouter } from './store-router.js';

const { AuditOutcome } = auditV1;

/** Largest Get, Delete or List request: names and a page token, never a value. */
const MAX_READ_REQUEST_BYTES = 64 * 1024;

/** The `reason` attribute of the audit event of a Put that did not store. */
const FAILED_PUT_REASONS = {
  'version-mismatch': 'if_version',
  'too-many-keys': 'quota.keys',
  'too-many-bytes': 'quota.bytes',
} as const;

function deleteAttributes(
  names: { namespace: string; key: string },
  result: DeleteResult,
): Record<string, string | number | boolean> {
  switch (result.kind) {
    case 'deleted':
      return { ...names, deleted: true, version: result.version, size_bytes: result.sizeBytes };
    case 'absent':
      return { ...names, deleted: false };
    case 'version-mismatch':
      return { ...names, deleted: false, reason: 'if_version' };
  }
}

export interface MemoryServiceDependencies {
  readonly router: StoreRouter;
  readonly audit: AuditSink;
  readonly limits: MemoryLimits;
}

/** Settles with the operation, or rejects with the abort reason as soon as the call is cancelled or its deadline passes. */
function untilAborted<T>(operation: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      reject(signal.reason as Error);
    };
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    operation.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

function quotaError(agentId: string, result: PutResult): CordonError | undefined {
  if (result.kind === 'too-many-keys') {
    return new CordonError(
      status.RESOURCE_EXHAUSTED,
      `agent ${agentId} already stores ${result.keys} keys, the maximum per agent of ${result.maxKeys}; delete keys first or ask the operator to raise CORDON_MEMORY_MAX_KEYS_PER_AGENT`,
    );
  }
  if (result.kind === 'too-many-bytes') {
    return new CordonError(
      status.RESOURCE_EXHAUSTED,
      `this write would bring agent ${agentId} to ${result.bytesAfter} bytes of values, above the maximum per agent of ${result.maxBytes}; delete or shrink values first or ask the operator to raise CORDON_MEMORY_MAX_BYTES_PER_AGENT`,
    );
  }
  return undefined;
}

/** Builds the MemoryService handlers: authenticate, validate, run on the agent's store, audit. */
export function createMemoryService(dependencies: MemoryServiceDependencies): ServiceRegistration {
  const { router, audit, limits } = dependencies;

  const authenticate = (context: CallContext): string => {
    try {
      return callerAgentId(context.caller);
    } catch (error) {
      audit.record({
        agentId: '',
        action: 'auth.denied',
        outcome: AuditOutcome.AUDIT_OUTCOME_DENIED,
        attributes: {
          rpc: context.method,
          reason: 'no-agent',
          caller: context.caller.subject,
          role: context.caller.role,
        },
      });
      throw error;
    }
  };

  /**
   * Runs one store operation for the agent. A refusal by the store's own
   * access control is recorded as a denied access; the caller learns the
   * outcome only if it still waits.
   */
  const run = <T>(
    agentId: string,
    context: CallContext,
    names: { namespace: string; key?: string },
    operation: (store: MemoryStore) => Promise<T>,
  ): Promise<T> => {
    const settled = operation(router.storeFor(agentId)).catch((error: unknown) => {
      if (error instanceof StoreAccessDenied) {
        context.logger.error(
          { agent_id: agentId, err: error },
          'memory store refused a key outside the agent; this is a bug in the memory service',
        );
        audit.record({
          agentId,
          action: 'auth.denied',
          outcome: AuditOutcome.AUDIT_OUTCOME_DENIED,
          attributes: { rpc: context.method, reason: 'store.acl', ...names },
        });
      }
      throw error;
    });
    return untilAborted(settled, context.signal);
  };

  const recordPut = (agentId: string, command: PutCommand, result: PutResult): void => {
    const names = {
      namespace: command.namespace,
      key: command.key,
      size_bytes: command.value.length,
    };
    if (result.kind === 'stored') {
      audit.record({
        agentId,
        action: 'memory.put',
        outcome: AuditOutcome.AUDIT_OUTCOME_SUCCESS,
        attributes: { ...names, version: result.version },
      });
      return;
    }
    const reason = FAILED_PUT_REASONS[result.kind];
    audit.record({
      agentId,
      action: 'memory.put',
      outcome: AuditOutcome.AUDIT_OUTCOME_FAILURE,
      attributes: { ...names, reason },
    });
  };

  return defineService(
    memoryV1.MemoryServiceService,
    {
      put: async (request, context) => {
        const agentId = authenticate(context);
        const command = parsePut(request, limits);

        const names = { namespace: command.namespace, key: command.key };
        const result = await run(agentId, context, names, async (store) => {
          const outcome = await store.put(agentId, command);
          recordPut(agentId, command, outcome);
          return outcome;
        });

        if (result.kind === 'version-mismatch') {
          throw versionMismatch(
            command.ifVersion ?? 0,
            result.currentVersion,
            command.namespace,
            command.key,
          );
        }
        const quota = quotaError(agentId, result);
        if (quota !== undefined) {
          throw quota;
        }
        return { version: result.kind === 'stored' ? result.version : 0 };
      },

      get: async (request, context) => {
        const agentId = authenticate(context);
        const { namespace, key } = parseGet(request);

        const found = await run(agentId, context, { namespace, key }, (store) =>
          store.get(agentId, namespace, key),
        );
        if (found === undefined) {
          throw new CordonError(
            status.NOT_FOUND,
            `key ${JSON.stringify(key)} does not exist in namespace ${JSON.stringify(namespace)}`,
          );
        }
        return found;
      },

      delete: async (request, context) => {
        const agentId = authenticate(context);
        const command = parseDelete(request);
        const names = { namespace: command.namespace, key: command.key };

        const result = await run(agentId, context, names, async (store) => {
          const outcome = await store.delete(agentId, command);
          audit.record({
            agentId,
            action: 'memory.delete',
            outcome:
              outcome.kind === 'version-mismatch'
                ? AuditOutcome.AUDIT_OUTCOME_FAILURE
                : AuditOutcome.AUDIT_OUTCOME_SUCCESS,
            attributes: deleteAttributes(names, outcome),
          });
          return outcome;
        });

        if (result.kind === 'version-mismatch') {
          throw versionMismatch(
            command.ifVersion ?? 0,
            result.currentVersion,
            command.namespace,
            command.key,
          );
        }
        return { deleted: result.kind === 'deleted' };
      },

      list: async (request, context) => {
        const agentId = authenticate(context);
        const command = parseList(request, limits);

        const page = await run(agentId, context, { namespace: command.namespace }, (store) =>
          store.list(agentId, command),
        );
        const last = page.keys.at(-1);
        return {
          keys: [...page.keys],
          nextPageToken:
            page.hasMore && last !== undefined
              ? encodePageToken({
                  namespace: command.namespace,
                  prefix: command.prefix,
                  afterKey: last.key,
                })
              : '',
        };
      },
    },
    {
      // A service reaches memory only with a verified acting-for token; callerAgentId rejects it otherwise.
      roles: {
        put: ['agent', 'service'],
        get: ['agent', 'service'],
        delete: ['agent', 'service'],
        list: ['agent', 'service'],
      },
      maxRequestBytes: {
        get: MAX_READ_REQUEST_BYTES,
        delete: MAX_READ_REQUEST_BYTES,
        list: MAX_READ_REQUEST_BYTES,
      },
      onAuthDenied: (denial) => {
        audit.record({
          agentId: denial.claimedSubject,
          action: AUTH_DENIED_ACTION,
          outcome: AuditOutcome.AUDIT_OUTCOME_DENIED,
          attributes: denialAttributes(denial),
        });
      },
    },
  );
}

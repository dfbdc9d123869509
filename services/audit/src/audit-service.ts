import { randomUUID } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { isSpanContextValid, trace } from '@opentelemetry/api';
import { auditV1 } from '@cordon/proto';
import {
  AUTH_DENIED_ACTION,
  CordonError,
  defineService,
  denialAttributes,
  type AuthDenial,
  type CallContext,
  type Logger,
  type ServiceRegistration,
} from '@cordon/service-kit';
import { acknowledge, prepareCallerAppend } from './append-call.js';
import { isKnownOutcome, prepareAppend, type CallTrace } from './append-request.js';
import { appendStreamed } from './append-stream.js';
import type { AuditOptions } from './audit-options.js';
import type { AuditStore, RecordFilter } from './audit-store.js';
import {
  ALLOWED_ROLES,
  authorize,
  type AuditOperation,
  type ReadScope,
} from './caller-identity.js';
import { verifyChain, type SeqRange } from './chain-verify.js';
import type { GroupCommit } from './group-commit.js';
import { readRun, toAuditRecord } from './run-timeline.js';

/** Records Query and Export read per step; between steps other calls, Appends among them, get to run. */
const READ_PAGE_RECORDS = 500;

export interface AuditServiceParts {
  readonly store: AuditStore;
  readonly commit: GroupCommit;
  readonly options: AuditOptions;
  readonly logger: Logger;
}

/** Largest Query, GetRun, Verify or Export request: filters and ranges only. */
const MAX_READ_REQUEST_BYTES = 64 * 1024;

function authorizeCall(context: CallContext, operation: AuditOperation): ReadScope {
  return authorize(context.caller, operation);
}

/** Writes a rejected call of this service straight into the store, without waiting for it. */
function recordDenial(parts: AuditServiceParts, denial: AuthDenial): void {
  const attributes: Record<string, auditV1.AttributeValue> = {};
  for (const [name, value] of Object.entries(denialAttributes(denial))) {
    attributes[name] = { value: { $case: 'stringValue', value } };
  }
  const request = auditV1.AppendRequest.fromPartial({
    event: {
      id: randomUUID(),
      service: 'audit',
      agentId: denial.claimedSubject,
      action: AUTH_DENIED_ACTION,
      outcome: auditV1.AuditOutcome.AUDIT_OUTCOME_DENIED,
      occurredTime: new Date(),
      attributes,
    },
  });
  parts.commit.append(prepareAppend(request, parts.options, undefined)).catch((error: unknown) => {
    parts.logger.error({ err: error, rpc: denial.method }, 'could not record a denied call');
  });
}

/** Returns the trace and span id of the active span, the server span of the call. */
function activeCallTrace(): CallTrace | undefined {
  const spanContext = trace.getActiveSpan()?.spanContext();
  if (spanContext === undefined || !isSpanContextValid(spanContext)) {
    return undefined;
  }
  return { traceId: spanContext.traceId, spanId: spanContext.spanId };
}

function optionalText(value: string): string | undefined {
  return value === '' ? undefined : value;
}

function queryFilter(
  request: auditV1.QueryRequest,
  scope: ReadScope,
  options: AuditOptions,
): RecordFilter {
  if (request.limit > options.queryMaxLimit) {
    throw CordonError.invalidArgument(
      'limit',
      `${request.limit} is above this server's maximum ${options.queryMaxLimit} (CORDON_AUDIT_QUERY_MAX_LIMIT); page with after_seq`,
    );
  }
  const startTimeMs = request.startTime?.getTime();
  const endTimeMs = request.endTime?.getTime();
  if (startTimeMs !== undefined && endTimeMs !== undefined && startTimeMs >= endTimeMs) {
    throw CordonError.invalidArgument(
      'start_time',
      `${request.startTime?.toISOString() ?? ''} is not before end_time ${request.endTime?.toISOString() ?? ''}`,
    );
  }

  if (!isKnownOutcome(request.outcome)) {
    throw CordonError.invalidArgument(
      'outcome',
      `${request.outcome} is not a known AuditOutcome value`,
    );
  }
  let outcome: string | undefined;
  if (request.outcome !== auditV1.AuditOutcome.AUDIT_OUTCOME_UNSPECIFIED) {
    outcome = auditV1.auditOutcomeToJSON(request.outcome);
  }
  return {
    // An agent gets only its own records, whatever agent_id it sends.
    agentId: scope.kind === 'agent' ? scope.agentId : optionalText(request.agentId),
    action: optionalText(request.action),
    outcome,
    runId: optionalText(request.runId),
    traceId: optionalText(request.traceId),
    startTimeMs,
    endTimeMs,
    afterSeq: request.afterSeq,
    limit: request.limit === 0 ? options.queryDefaultLimit : request.limit,
  };
}

/** Resolves 0 to the first or last seq and checks that the range is not reversed. */
function seqRange(request: { fromSeq: number; toSeq: number }, store: AuditStore): SeqRange {
  if (request.toSeq !== 0 && request.fromSeq > request.toSeq) {
    throw CordonError.invalidArgument(
      'from_seq',
      `${request.fromSeq} is above to_seq ${request.toSeq}; give from_seq ≤ to_seq`,
    );
  }
  return {
    fromSeq: request.fromSeq === 0 ? 1 : request.fromSeq,
    toSeq: request.toSeq === 0 ? store.lastSeq() : request.toSeq,
  };
}

/** Builds the AuditService handlers over one store. */
export function auditServiceRegistration(parts: AuditServiceParts): ServiceRegistration {
  const { store, commit, options } = parts;

  return defineService(
    auditV1.AuditServiceService,
    {
      append: async (request, context) => {
        authorizeCall(context, 'append');
        const prepared = prepareCallerAppend(context, request, options, activeCallTrace());

        const outcome = await commit.append(prepared);
        return acknowledge(prepared, outcome, context.logger);
      },

      appendStream: async function* (requests, context) {
        authorizeCall(context, 'append');
        yield* appendStreamed(requests, context, { commit, options });
      },

      query: async function* (request, context) {
        const scope = authorizeCall(context, 'query');
        const filter = queryFilter(request, scope, options);
        let afterSeq = filter.afterSeq;
        let remaining = filter.limit;
        while (remaining > 0) {
          const page = store.query({
            ...filter,
            afterSeq,
            limit: Math.min(remaining, READ_PAGE_RECORDS),
          });
          for (const record of page) {
            yield { record: toAuditRecord(record) };
          }
          const last = page.at(-1);
          if (last === undefined || page.length < READ_PAGE_RECORDS) {
            return;
          }
          afterSeq = last.seq;
          remaining -= page.length;
          await nextTurn();
        }
      },

      getRun: async (request, context) => {
        const scope = authorizeCall(context, 'get-run');
        // readRun is synchronous; the async handler turns its errors into a rejection.
        return Promise.resolve(readRun(store, request.runId, scope, context.logger));
      },

      verify: async (request, context) => {
        authorizeCall(context, 'verify');
        const range = seqRange(request, store);
        const result = await verifyChain(store, range, context.signal);
        if (!result.ok) {
          context.logger.warn(
            { first_bad_seq: result.firstBadSeq, reason: result.reason },
            'audit hash chain verification failed',
          );
        }
        return result;
      },

      export: async function* (request, context) {
        authorizeCall(context, 'export');
        const range = seqRange(request, store);
        let nextSeq = range.fromSeq;
        while (nextSeq <= range.toSeq) {
          const page = store.recordRange(nextSeq, range.toSeq, READ_PAGE_RECORDS);
          const last = page.at(-1);
          if (last === undefined) {
            return;
          }
          for (const record of page) {
            yield { record: toAuditRecord(record) };
          }
          nextSeq = last.seq + 1;
          await nextTurn();
        }
      },
    },
    {
      roles: {
        append: ALLOWED_ROLES.append,
        appendStream: ALLOWED_ROLES.append,
        query: ALLOWED_ROLES.query,
        getRun: ALLOWED_ROLES['get-run'],
        verify: ALLOWED_ROLES.verify,
        export: ALLOWED_ROLES.export,
      },
      maxRequestBytes: {
        query: MAX_READ_REQUEST_BYTES,
        getRun: MAX_READ_REQUEST_BYTES,
        verify: MAX_READ_REQUEST_BYTES,
        export: MAX_READ_REQUEST_BYTES,
      },
      onAuthDenied: (denial) => {
        recordDenial(parts, denial);
      },
    },
  );
}

/** The steps Append and AppendStream share for each event: admission, validation, acknowledgement. */
import { status } from '@grpc/grpc-js';
import type { auditV1 } from '@cordon/proto';
import { CordonError, type CallContext, type Logger } from '@cordon/service-kit';
import { prepareAppend, type CallTrace, type PreparedAppend } from './append-request.js';
import type { AuditOptions } from './audit-options.js';
import type { AppendOutcome } from './audit-store.js';

/**
 * Rejects an Append for another agent than the one the calling service
 * proved it acts for. A service not acting for an agent may record any
 * agent's events, as it must for replayed and denial records.
 */
function checkActingFor(context: CallContext, request: auditV1.AppendRequest): void {
  const actingFor = context.caller.agentId;
  const eventAgent = request.event?.agentId ?? '';
  if (actingFor !== '' && eventAgent !== actingFor) {
    throw new CordonError(
      status.PERMISSION_DENIED,
      `service ${context.caller.subject} acts for agent ${actingFor} but sent an event of agent ${JSON.stringify(eventAgent.slice(0, 64))}`,
    );
  }
}

/** Checks that the caller may record the event and validates it; throws a CordonError saying what is wrong. */
export function prepareCallerAppend(
  context: CallContext,
  request: auditV1.AppendRequest,
  options: AuditOptions,
  callTrace: CallTrace | undefined,
): PreparedAppend {
  checkActingFor(context, request);
  return prepareAppend(request, options, callTrace);
}

/**
 * Returns the response for a committed event: its seq and hash, also for
 * an id stored before with the same event. Throws ALREADY_EXISTS for an id
 * stored before for a different event.
 */
export function acknowledge(
  prepared: PreparedAppend,
  outcome: AppendOutcome,
  logger: Logger,
): auditV1.AppendResponse {
  if (outcome.kind === 'conflict') {
    throw new CordonError(
      status.ALREADY_EXISTS,
      `event.id "${prepared.key.id}" is already stored as seq ${outcome.seq} for a different event (action ${outcome.action}); give every event a new UUID`,
    );
  }
  if (outcome.kind === 'duplicate') {
    logger.info(
      { event_id: prepared.key.id, seq: outcome.seq },
      'append of a stored event id; returning the stored record',
    );
  }
  return { seq: outcome.seq, hash: outcome.hash };
}

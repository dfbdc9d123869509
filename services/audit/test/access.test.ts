import { Metadata, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  append,
  as,
  AUDITOR,
  cleanUp,
  exportRecords,
  failureOf,
  getRun,
  makeEvent,
  makeTempDir,
  query,
  startAudit,
  verify,
  type RunningAudit,
} from './support/audit-harness.js';

describe('who may read and write', () => {
  let audit: RunningAudit;

  beforeAll(async () => {
    audit = await startAudit(makeTempDir());
    await append(audit, { event: makeEvent({ agentId: 'agent-a', runId: 'run-a' }) });
    await append(audit, { event: makeEvent({ agentId: 'agent-b', runId: 'run-b' }) });
    await append(audit, { event: makeEvent({ agentId: 'agent-a', runId: 'run-a2' }) });
  });

  afterAll(async () => {
    expect(await cleanUp()).toBe(0);
  });

  it('shows an agent only its own records', async () => {
    const agentA = as('agent', 'agent-a');

    const own = await query(audit, {}, agentA);
    const asked = await query(audit, { agentId: 'agent-b' }, agentA);

    expect(own.map((record) => [record.seq, record.event!.agentId])).toEqual([
      [1, 'agent-a'],
      [3, 'agent-a'],
    ]);
    expect(asked.map((record) => record.seq)).toEqual([1, 3]);
  });

  it('shows an auditor the records of every agent', async () => {
    const all = await query(audit, {}, AUDITOR);
    const agentB = await query(audit, { agentId: 'agent-b' }, AUDITOR);

    expect(all.map((record) => record.event!.agentId)).toEqual(['agent-a', 'agent-b', 'agent-a']);
    expect(agentB.map((record) => record.seq)).toEqual([2]);
  });

  it('hides the run of another agent from GetRun', async () => {
    const error = await failureOf(getRun(audit, 'run-b', as('agent', 'agent-a')));
    const own = await getRun(audit, 'run-a', as('agent', 'agent-a'));
    const byAuditor = await getRun(audit, 'run-b', AUDITOR);

    expect(error.code).toBe(status.NOT_FOUND);
    expect(error.details).toBe('no records of run "run-b" were found');
    expect(own.timeline.map((record) => record.seq)).toEqual([1]);
    expect(byAuditor.timeline.map((record) => record.seq)).toEqual([2]);
  });

  it.each([
    [
      'an agent',
      as('agent', 'agent-a'),
      'role agent may not call cordon.v1.AuditService/Append; it is open to service',
    ],
    [
      'an auditor',
      AUDITOR,
      'role auditor may not call cordon.v1.AuditService/Append; it is open to service',
    ],
  ])('refuses Append from %s', async (_caller, metadata, message) => {
    const error = await failureOf(append(audit, { event: makeEvent() }, metadata));
    const stored = await exportRecords(audit);

    expect(error.code).toBe(status.PERMISSION_DENIED);
    expect(error.details).toBe(message);
    expect(stored.filter((record) => record.event!.action !== 'auth.denied')).toHaveLength(3);
    expect(stored.at(-1)!.event!.action).toBe('auth.denied');
  });

  it('refuses Verify and Export to agents and services', async () => {
    const verifyByAgent = await failureOf(verify(audit, {}, as('agent', 'agent-a')));
    const exportByService = await failureOf(exportRecords(audit, {}, as('service')));

    expect(verifyByAgent.code).toBe(status.PERMISSION_DENIED);
    expect(verifyByAgent.details).toBe(
      'role agent may not call cordon.v1.AuditService/Verify; it is open to auditor, admin',
    );
    expect(exportByService.code).toBe(status.PERMISSION_DENIED);
    expect(exportByService.details).toBe(
      'role service may not call cordon.v1.AuditService/Export; it is open to auditor, admin',
    );
  });

  it('refuses a Query from a service', async () => {
    const error = await failureOf(query(audit, {}, as('service')));

    expect(error.code).toBe(status.PERMISSION_DENIED);
    expect(error.details).toBe(
      'role service may not call cordon.v1.AuditService/Query; it is open to agent, auditor, admin',
    );
  });

  it.each([
    [
      'no token',
      new Metadata(),
      'no token: send authorization: Bearer <token> metadata (an admin mints one with cordon token create)',
    ],
    [
      'an unknown role',
      as('intruder'),
      "the token's cordon_role claim is not one of agent, auditor, admin, service",
    ],
    [
      'an agent without an id',
      as('agent'),
      "the token's sub claim is not 1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit",
    ],
  ])('rejects a caller with %s as UNAUTHENTICATED', async (_case, metadata, message) => {
    const error = await failureOf(query(audit, {}, metadata));

    expect(error.code).toBe(status.UNAUTHENTICATED);
    expect(error.details).toBe(message);
  });
});

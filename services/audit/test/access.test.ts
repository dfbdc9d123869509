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
      'role agent may not call append; it is open to the service role',
    ],
    ['an auditor', AUDITOR, 'role auditor may not call append; it is open to the service role'],
  ])('refuses Append from %s', async (_caller, metadata, message) => {
    const error = await failureOf(append(audit, { event: makeEvent() }, metadata));

    expect(error.code).toBe(status.PERMISSION_DENIED);
    expect(error.details).toBe(message);
    expect((await exportRecords(audit)).length).toBe(3);
  });

  it('refuses Verify and Export to agents and services', async () => {
    const verifyByAgent = await failureOf(verify(audit, {}, as('agent', 'agent-a')));
    const exportByService = await failureOf(exportRecords(audit, {}, as('service')));

    expect(verifyByAgent.code).toBe(status.PERMISSION_DENIED);
    expect(verifyByAgent.details).toBe(
      'role agent may not call verify; it is open to the auditor role',
    );
    expect(exportByService.code).toBe(status.PERMISSION_DENIED);
    expect(exportByService.details).toBe(
      'role service may not call export; it is open to the auditor role',
    );
  });

  it('refuses a Query from a service', async () => {
    const error = await failureOf(query(audit, {}, as('service')));

    expect(error.code).toBe(status.PERMISSION_DENIED);
    expect(error.details).toBe(
      'role service may not call query; it is open to the agent and auditor roles',
    );
  });

  it.each([
    [
      'no role',
      new Metadata(),
      'x-cordon-role metadata is missing; send agent, auditor or service',
    ],
    [
      'an unknown role',
      as('admin' as 'agent'),
      'x-cordon-role metadata is "admin", which is not a known role; send agent, auditor or service',
    ],
    [
      'an agent without an id',
      as('agent'),
      'an agent caller must send its id (1 to 256 bytes) in x-cordon-agent-id metadata',
    ],
  ])('rejects a caller with %s as UNAUTHENTICATED', async (_case, metadata, message) => {
    const error = await failureOf(query(audit, {}, metadata));

    expect(error.code).toBe(status.UNAUTHENTICATED);
    expect(error.details).toBe(message);
  });
});

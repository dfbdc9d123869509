import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Metadata } from '@grpc/grpc-js';
import { auditV1 } from '@cordon/proto';
import { codeSha256 } from '@cordon/service-kit';
import {
  cleanUpHarness,
  failureOf,
  startFakeAudit,
  startScanner,
  type FakeAudit,
  type ScannerUnderTest,
} from './support/scanner-harness.js';
import { agentMetadata } from '../../../test/support/test-tokens.js';

let audit: FakeAudit;
let scanner: ScannerUnderTest;

beforeAll(async () => {
  audit = await startFakeAudit();
  scanner = await startScanner({ CORDON_AUDIT_ADDRESS: audit.address });
});

afterAll(async () => {
  await scanner.stop();
  await audit.stop();
  await cleanUpHarness();
});

function attribute(event: auditV1.AuditEvent, name: string): unknown {
  return event.attributes[name]?.value?.value;
}

describe('audit records', () => {
  it('appends scan.completed with the agent, run, code hash and counts, and no code', async () => {
    const files = [
      {
        path: 'main.py',
        content: Buffer.from('import os\nos.system(cmd)\nDB_PASSWORD = "hunter22"\n'),
      },
      { path: 'data.txt', content: Buffer.from('not scanned') },
    ];
    audit.appended.length = 0;

    await scanner.scan({ language: 'python', files, runId: 'run-42' }, agentMetadata('agent-7'));
    const [append] = await audit.waitForAppends(1);
    const event = append!.event;

    expect(append!.role).toBe('service');
    expect(append!.subject).toBe('scanner');
    expect(event).toEqual(
      expect.objectContaining({
        service: 'scanner',
        action: 'scan.completed',
        agentId: 'agent-7',
        runId: 'run-42',
        outcome: auditV1.AuditOutcome.AUDIT_OUTCOME_SUCCESS,
        codeSha256: codeSha256(files),
      }),
    );
    expect(attribute(event, 'scan.files')).toBe(2);
    expect(attribute(event, 'scan.files_scanned')).toBe(1);
    expect(attribute(event, 'scan.findings.critical')).toBe(1);
    expect(attribute(event, 'scan.findings.high')).toBe(1);
    expect(attribute(event, 'scan.rule_ids')).toBe(
      'command.shell-injection,secrets.hardcoded-credential',
    );
    expect(attribute(event, 'scan.language')).toBe('python');
    expect(JSON.stringify(auditV1.AuditEvent.toJSON(event))).not.toContain('os.system');
  });

  it('appends auth.denied for a call without a token', async () => {
    audit.appended.length = 0;

    const failure = await failureOf(
      scanner.scan({ files: [{ path: 'a.py', content: Buffer.from('x = 1\n') }] }, new Metadata()),
    );
    const [append] = await audit.waitForAppends(1);

    expect(failure.code).toBe('UNAUTHENTICATED');
    expect(append!.event.action).toBe('auth.denied');
    expect(append!.event.outcome).toBe(auditV1.AuditOutcome.AUDIT_OUTCOME_DENIED);
  });
});

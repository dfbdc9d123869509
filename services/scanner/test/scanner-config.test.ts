import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startServiceProcess } from '../../../test/support/service-process.js';
import { cleanUpHarness, SCANNER_MAIN, startScanner } from './support/scanner-harness.js';

afterAll(async () => {
  await cleanUpHarness();
});

async function exitOf(
  env: Record<string, string>,
): Promise<{ code: number | null; stderr: string }> {
  const service = startServiceProcess(SCANNER_MAIN, [], {
    CORDON_SCANNER_ADDRESS: '127.0.0.1:0',
    ...env,
  });
  const { code } = await service.exited;
  return { code, stderr: service.stderr() };
}

describe('configuration', () => {
  it('exits 2 on an invalid size', async () => {
    const { code, stderr } = await exitOf({ CORDON_SCANNER_MAX_FILE_BYTES: 'lots' });

    expect(code).toBe(2);
    expect(stderr).toBe(
      'cordon-scanner: invalid configuration: CORDON_SCANNER_MAX_FILE_BYTES="lots" is invalid: expected a size from 1 to 64MiB, in bytes or with a unit such as 64k, 16m or 1g\n',
    );
  });

  it('stops when the per-file limit is above the per-scan limit', async () => {
    const { code, stderr } = await exitOf({
      CORDON_SCANNER_MAX_FILE_BYTES: '4m',
      CORDON_SCANNER_MAX_TOTAL_BYTES: '1m',
    });

    expect(code).toBe(2);
    expect(stderr).toBe(
      'cordon-scanner: invalid configuration: CORDON_SCANNER_MAX_FILE_BYTES (4MiB) is above CORDON_SCANNER_MAX_TOTAL_BYTES (1MiB); lower the first or raise the second\n',
    );
  });

  it('fails start-up on a broken rule', async () => {
    const rulesDir = mkdtempSync(join(tmpdir(), 'cordon-scanner-rules-'));
    writeFileSync(
      join(rulesDir, 'broken.yaml'),
      'rules:\n  - id: broken.rule\n    title: t\n    cwe: CWE-1\n    severity: SEVERE\n',
    );
    try {
      const service = startServiceProcess(SCANNER_MAIN, [], {
        CORDON_SCANNER_ADDRESS: '127.0.0.1:0',
        CORDON_SCANNER_RULES_DIR: rulesDir,
      });
      const fatal = await service.waitForLog((line) => line.msg === 'service failed to start');

      expect((await service.exited).code).toBe(1);
      expect((fatal['err'] as { message: string }).message).toBe(
        'broken.yaml rule broken.rule: severity must be one of INFO, LOW, MEDIUM, HIGH, CRITICAL',
      );
    } finally {
      rmSync(rulesDir, { recursive: true, force: true });
    }
  });

  it('starts with the shipped rules and logs what it loaded', async () => {
    const scanner = await startScanner();
    const ready = await scanner.process.waitForLog((line) => line.msg === 'scanner ready');

    expect(ready['rules']).toBe(21);
    expect(ready['audit_address']).toBe(null);
    await scanner.stop();
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toSarif, type SarifLog } from '@cordon/client';
import { readCorpus } from './support/corpus.js';
import {
  cleanUpHarness,
  sarifSchemaErrors,
  startScanner,
  type ScannerUnderTest,
} from './support/scanner-harness.js';

let scanner: ScannerUnderTest;

beforeAll(async () => {
  scanner = await startScanner();
});

afterAll(async () => {
  await scanner.stop();
  await cleanUpHarness();
});

describe('SARIF export', () => {
  it('writes reports of every corpus language as SARIF 2.1.0 that the schema accepts', async () => {
    const { rules } = await scanner.listRules();
    for (const language of ['python', 'javascript', 'typescript', 'java', 'csharp']) {
      const textFiles = readCorpus()
        .filter((file) => file.language === language)
        .slice(0, 40);
      const report = await scanner.scan({ textFiles });

      const log = toSarif(report, rules);

      expect(report.findings.length).toBeGreaterThan(10);
      expect(sarifSchemaErrors(log), language).toEqual([]);
    }
  });

  it('maps a finding to a result with its rule, level, location and snippet', async () => {
    const { rules } = await scanner.listRules();
    const report = await scanner.scan({
      textFiles: [{ path: 'src/my app.py', text: 'import pickle\nobj = pickle.loads(blob)\n' }],
    });

    const log = toSarif(report, rules);
    const run = log.runs[0]!;
    const driverRules = run.tool.driver.rules;
    const result = run.results[0]!;

    expect(sarifSchemaErrors(log)).toEqual([]);
    expect(run.results).toHaveLength(1);
    expect(result).toEqual({
      ruleId: 'deserialize.unsafe',
      ruleIndex: driverRules.findIndex((rule) => rule['id'] === 'deserialize.unsafe'),
      level: 'error',
      message: {
        text: 'This deserializer can construct arbitrary objects, and with them run code, from the data it reads. Fix: Use a data-only format (JSON, yaml.safe_load, a DTO with a type allow-list) and never deserialize untrusted bytes with a native serializer.',
      },
      locations: [
        {
          physicalLocation: {
            artifactLocation: { uri: 'src/my%20app.py' },
            region: {
              startLine: 2,
              startColumn: 7,
              endLine: 2,
              endColumn: 25,
              snippet: { text: 'obj = pickle.loads(blob)' },
            },
          },
        },
      ],
      properties: { severity: 'HIGH', confidence: 'high', cwe: 'CWE-502' },
    });
    expect(driverRules[result['ruleIndex'] as number]).toEqual(
      expect.objectContaining({
        id: 'deserialize.unsafe',
        defaultConfiguration: { level: 'error' },
        properties: {
          tags: ['security', 'CWE-502'],
          precision: 'high',
          'security-severity': '8.0',
        },
      }),
    );
    expect(run.tool.driver['name']).toBe('cordon-scanner');
    expect(run.columnKind).toBe('utf16CodeUnits');
  });

  it('rejects a log that breaks the schema, so the validation can fail', () => {
    const broken = { version: '2.1.0', runs: [{ results: [] }] } as unknown as SarifLog;

    expect(sarifSchemaErrors(broken)).toContain("/runs/0 must have required property 'tool'");
  });
});

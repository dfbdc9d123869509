import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRules, type LanguageId } from '../src/index.js';
import { cleanUpHarness, startScanner, type ScannerUnderTest } from './support/scanner-harness.js';

const EXTENSION: Readonly<Record<LanguageId, string>> = {
  python: 'py',
  javascript: 'js',
  typescript: 'ts',
  java: 'java',
  csharp: 'cs',
};

const { rules } = loadRules();
const samples = rules.flatMap((rule) =>
  [...rule.samples].map(([language, pair]) => ({ rule, language, pair })),
);

let scanner: ScannerUnderTest;

beforeAll(async () => {
  scanner = await startScanner();
});

afterAll(async () => {
  await scanner.stop();
  await cleanUpHarness();
});

describe('every rule against its own samples', () => {
  it('has samples for every language it has patterns for', () => {
    expect(samples.length).toBeGreaterThanOrEqual(rules.length * 4);
    for (const rule of rules) {
      expect([...rule.samples.keys()].sort()).toEqual(
        expect.arrayContaining([...rule.patterns.keys()].sort()),
      );
    }
  });

  it.each(samples.map((sample) => [sample.rule.id, sample.language, sample] as const))(
    '%s flags its positive %s sample and not its negative one',
    async (_id, language, { rule, pair }) => {
      const path = `sample.${EXTENSION[language]}`;
      const positive = await scanner.scan({ textFiles: [{ path, text: pair.positive }] });
      const negative = await scanner.scan({ textFiles: [{ path, text: pair.negative }] });

      const ruleIds = (report: typeof positive): string[] =>
        report.findings.map((finding) => finding.ruleId);
      expect(ruleIds(positive)).toContain(rule.id);
      expect(ruleIds(negative)).not.toContain(rule.id);
    },
  );
});

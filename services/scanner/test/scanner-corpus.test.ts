import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCorpus, scoreFile, type CorpusFile, type Score } from './support/corpus.js';
import { cleanUpHarness, startScanner, type ScannerUnderTest } from './support/scanner-harness.js';

const MIN_PRECISION = 0.9;
const MIN_RECALL = 0.9;
/** The scanner accepts at most 100 files per scan by default. */
const FILES_PER_SCAN = 50;

const corpus = readCorpus();
const languages = [...new Set(corpus.map((file) => file.language))].sort();

let scanner: ScannerUnderTest;
const scores = new Map<string, Score & { files: number; lookAlikes: number }>();

async function scoreLanguage(
  files: readonly CorpusFile[],
): Promise<Score & { files: number; lookAlikes: number }> {
  const total = {
    truePositives: 0,
    falsePositives: 0,
    falseNegatives: 0,
    missed: [] as string[],
    unexpected: [] as string[],
    files: files.length,
    lookAlikes: 0,
  };
  for (let start = 0; start < files.length; start += FILES_PER_SCAN) {
    const batch = files.slice(start, start + FILES_PER_SCAN);
    const report = await scanner.scan({ textFiles: batch });
    for (const file of batch) {
      const findings = report.findings
        .filter((finding) => finding.file === file.path)
        .map((finding) => ({ line: finding.startLine, ruleId: finding.ruleId }));
      const score = scoreFile(file, findings);
      total.truePositives += score.truePositives;
      total.falsePositives += score.falsePositives;
      total.falseNegatives += score.falseNegatives;
      total.missed.push(...score.missed);
      total.unexpected.push(...score.unexpected);
      total.lookAlikes += file.lookAlikes;
    }
  }
  return total;
}

beforeAll(async () => {
  scanner = await startScanner();
  for (const language of languages) {
    scores.set(language, await scoreLanguage(corpus.filter((file) => file.language === language)));
  }
  const rows = [...scores].map(([language, score]) => {
    const precision = score.truePositives / (score.truePositives + score.falsePositives);
    const recall = score.truePositives / (score.truePositives + score.falseNegatives);
    return `${language.padEnd(11)} ${String(score.files).padStart(5)} ${String(score.truePositives + score.falseNegatives).padStart(8)} ${String(score.lookAlikes).padStart(11)} ${String(score.falsePositives).padStart(9)} ${String(score.falseNegatives).padStart(9)} ${precision.toFixed(3).padStart(9)} ${recall.toFixed(3).padStart(6)}`;
  });
  process.stdout.write(
    `\nlabelled corpus: ${corpus.length} files\nlanguage    files   labels look-alikes false pos false neg precision recall\n${rows.join('\n')}\n`,
  );
});

afterAll(async () => {
  await scanner.stop();
  await cleanUpHarness();
});

describe('the labelled corpus', () => {
  it('has at least 150 labelled files across the five languages', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(150);
    expect(languages).toEqual(['csharp', 'java', 'javascript', 'python', 'typescript']);
    // Files named clean_* or Clean* hold ordinary code with nothing to find.
    const unlabelled = corpus.filter(
      (file) => file.expected.length + file.lookAlikes === 0 && !/\/(clean_|Clean)/.test(file.path),
    );
    expect(unlabelled.map((file) => file.path)).toEqual([]);
  });

  it.each(languages)('reaches precision and recall of 0.9 or more in %s', (language) => {
    const score = scores.get(language)!;
    const precision = score.truePositives / (score.truePositives + score.falsePositives);
    const recall = score.truePositives / (score.truePositives + score.falseNegatives);
    const mistakes = JSON.stringify({ missed: score.missed, unexpected: score.unexpected });
    expect(precision, mistakes).toBeGreaterThanOrEqual(MIN_PRECISION);
    expect(recall, mistakes).toBeGreaterThanOrEqual(MIN_RECALL);
  });
});

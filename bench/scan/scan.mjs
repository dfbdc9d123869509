// Compares the scanner with Bandit (Debian's bandit package) on the same
// Python files in one run:
//  - accuracy: both tools over the labelled Python corpus of the scanner's
//    tests, scored per line (a finding counts when a label sits on its line,
//    since the two tools name their rules differently);
//  - throughput: both tools as fresh processes over COPIES copies of that
//    corpus, timed from process start to exit, median of ROUNDS runs; and
//    the scanner's engine warm, in this process, over the same files.
//
// Bandit's import checks (B401-B413, "consider the security implications of
// importing X") flag every import of subprocess, pickle and the like; a
// second Bandit row leaves them out. Debian's Bandit 1.6.2 also skips its
// string-literal checks (hard-coded passwords, SQL strings, bind-all, /tmp)
// on Python 3.11, so its recall here is lower than on older Pythons.
//
// Usage: node bench/scan/scan.mjs [--copies 20] [--rounds 3]
// Needs `npx tsc -b services/scanner` first and `bandit` on PATH (apt-get install bandit).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { availableParallelism } from 'node:os';
import { createLogger } from '@cordon/service-kit';
import { ScanEngine, ScanPool } from '../../services/scanner/dist/index.js';
import { printTable, quantile } from '../support/stats.mjs';
import { readCorpus, score } from './corpus-labels.mjs';

const SCAN_FILES = fileURLToPath(new URL('./cordon-scan-files.mjs', import.meta.url));

const { values: args } = parseArgs({
  options: { copies: { type: 'string', default: '20' }, rounds: { type: 'string', default: '3' } },
});
const copies = Number(args.copies);
const rounds = Number(args.rounds);

function banditVersion() {
  const result = spawnSync('bandit', ['--version'], { encoding: 'utf8' });
  if (result.error !== undefined) {
    process.stderr.write('bandit is not installed; run apt-get install bandit\n');
    process.exit(1);
  }
  return result.stdout.split('\n')[0].trim();
}

/** Runs bandit over a folder; returns { file, line, testId } per result. Exit 1 means "found issues". */
function runBandit(dir) {
  const result = spawnSync('bandit', ['-r', dir, '-f', 'json', '-q'], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 ** 2,
  });
  if (result.status !== 0 && result.status !== 1) {
    throw new Error(`bandit failed with exit code ${result.status}: ${result.stderr}`);
  }
  return JSON.parse(result.stdout).results.map((item) => ({
    file: item.filename.slice(dir.length + 1),
    line: item.line_number,
    testId: item.test_id,
  }));
}

function runCordon(dir) {
  const output = execFileSync(process.execPath, [SCAN_FILES, dir], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 ** 2,
  });
  return output === ''
    ? []
    : output
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line));
}

function timed(run) {
  const startedAt = performance.now();
  const result = run();
  return { ms: performance.now() - startedAt, result };
}

/** Precision and recall of a tool's findings over the labelled files. */
function accuracy(files, findingsOf, options) {
  const totals = { truePositives: 0, falsePositives: 0, falseNegatives: 0 };
  for (const file of files) {
    const scored = score(file, findingsOf(file.path.slice('python/'.length)), options);
    totals.truePositives += scored.truePositives;
    totals.falsePositives += scored.falsePositives;
    totals.falseNegatives += scored.falseNegatives;
  }
  const { truePositives: tp, falsePositives: fp, falseNegatives: fn } = totals;
  return { ...totals, precision: tp / (tp + fp), recall: tp / (tp + fn) };
}

const files = readCorpus().filter((file) => file.language === 'python');
const bandit = banditVersion();

/** Writes the Python corpus under `dir` as plain .py files, the names both tools see. */
function writeCorpus(dir) {
  mkdirSync(dir, { recursive: true });
  for (const file of files) writeFileSync(join(dir, file.path.slice('python/'.length)), file.text);
}
const IMPORT_CHECK = /^B4(0[1-9]|1[0-3])$/;

const workDir = mkdtempSync(join(tmpdir(), 'cordon-bench-scan-'));
try {
  // Accuracy on the labelled files.
  const labelledDir = join(workDir, 'labelled');
  writeCorpus(labelledDir);
  const banditFindings = runBandit(labelledDir);
  const cordonFindings = runCordon(labelledDir);
  const of = (findings) => (path) => findings.filter((finding) => finding.file === path);
  const accuracyRows = [
    ['tool', 'true pos', 'false pos', 'false neg', 'precision', 'recall'],
    ...[
      ['cordon scanner (same rule and line)', accuracy(files, of(cordonFindings))],
      ['cordon scanner (line only)', accuracy(files, of(cordonFindings), { byLine: true })],
      [`${bandit} (line only)`, accuracy(files, of(banditFindings), { byLine: true })],
      [
        `${bandit} without import checks`,
        accuracy(files, of(banditFindings.filter((f) => !IMPORT_CHECK.test(f.testId))), {
          byLine: true,
        }),
      ],
    ].map(([name, a]) => [
      name,
      a.truePositives,
      a.falsePositives,
      a.falseNegatives,
      a.precision.toFixed(3),
      a.recall.toFixed(3),
    ]),
  ];

  // Throughput over copies of the corpus.
  const copiesDir = join(workDir, 'copies');
  for (let copy = 0; copy < copies; copy += 1) writeCorpus(join(copiesDir, `copy-${copy}`));
  const fileCount = files.length * copies;
  const samples = { bandit: [], cordon: [], warm: [], pool: [] };
  const engine = await ScanEngine.create();
  const poolSize = availableParallelism();
  const pool = await ScanPool.start({
    size: poolSize,
    rulesDir: undefined,
    logger: createLogger({ service: 'bench', level: 'silent' }),
  });
  const texts = files.map((file) => ({ path: file.path, text: file.text, language: 'python' }));
  for (let round = 0; round < rounds; round += 1) {
    samples.bandit.push(timed(() => runBandit(copiesDir)).ms);
    samples.cordon.push(timed(() => runCordon(copiesDir)).ms);
    const startedAt = performance.now();
    for (let copy = 0; copy < copies; copy += 1) {
      for (const file of texts) await engine.scanFile(file, performance.now() + 60_000);
    }
    samples.warm.push(performance.now() - startedAt);
    // The service's path: every file of a request split across the worker threads.
    const poolStartedAt = performance.now();
    for (let copy = 0; copy < copies; copy += 1) await pool.scan(texts, 60_000);
    samples.pool.push(performance.now() - poolStartedAt);
  }
  await pool.close();
  const banditMs = quantile(samples.bandit, 0.5);
  const row = (name, values) => {
    const median = quantile(values, 0.5);
    return [
      name,
      `${median.toFixed(0)} ms`,
      (fileCount / (median / 1000)).toFixed(0),
      `${(banditMs / median).toFixed(1)}x`,
    ];
  };

  process.stdout.write(
    `\nScan accuracy on ${files.length} labelled Python files (${files.reduce((n, f) => n + f.expected.length, 0)} labelled findings)\n`,
  );
  printTable(accuracyRows);
  process.stdout.write(
    `\nThroughput over ${fileCount} Python files (${copies} copies of the corpus), median of ${rounds} runs\n`,
  );
  printTable([
    ['tool', 'wall time', 'files/s', 'vs bandit'],
    row(`${bandit}, new process`, samples.bandit),
    row('cordon scanner, new process', samples.cordon),
    row('cordon scanner engine, warm, 1 thread', samples.warm),
    row(`cordon scan pool, warm, ${poolSize} worker threads`, samples.pool),
  ]);
} finally {
  rmSync(workDir, { recursive: true, force: true });
}

// Reads the labelled corpus under services/scanner/test/fixtures/corpus: each
// file marks the findings it must produce with `expect: rule-id[, rule-id]`
// comments on the finding's first line (or `expect@N: rule-id` for line N),
// and its look-alikes with `look-alike`. Every other finding is a false positive.
import { readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';

export const CORPUS_DIR = new URL('../../services/scanner/test/fixtures/corpus/', import.meta.url)
  .pathname;

const LANGUAGE_OF_EXTENSION = {
  '.py': 'python',
  '.js': 'javascript',
  '.ts': 'typescript',
  '.tsx': 'typescript',
  '.java': 'java',
  '.cs': 'csharp',
};

/** Returns [{ path, language, text, expected: [{line, ruleId}], lookAlikes }] for every corpus file. */
export function readCorpus(dir = CORPUS_DIR) {
  const files = [];
  for (const folder of readdirSync(dir).sort()) {
    for (const fileName of readdirSync(join(dir, folder)).sort()) {
      const name = fileName.replace(/\.fixture$/, '');
      const language = LANGUAGE_OF_EXTENSION[extname(name)];
      if (language === undefined || name === fileName) continue;
      const text = readFileSync(join(dir, folder, fileName), 'utf8');
      files.push({ path: `${folder}/${name}`, language, text, ...labelsOf(text) });
    }
  }
  return files;
}

export function labelsOf(text) {
  const expected = [];
  let lookAlikes = 0;
  text.split('\n').forEach((line, index) => {
    const match = /(?:#|\/\/)\s*expect(?:@(\d+))?:\s*([\w.,\s-]+?)\s*$/.exec(line);
    if (match !== null) {
      const lineNumber = match[1] === undefined ? index + 1 : Number(match[1]);
      for (const ruleId of match[2]
        .split(',')
        .map((id) => id.trim())
        .filter(Boolean)) {
        expected.push({ line: lineNumber, ruleId });
      }
    }
    if (/(?:#|\/\/)\s*look-alike\b/.test(line)) lookAlikes += 1;
  });
  return { expected, lookAlikes };
}

/**
 * Scores findings ({ line, ruleId }) against a file's labels. With
 * `byLine`, a finding counts when any label sits on its line, whatever the
 * rule: the measure used for tools whose rule ids differ from ours.
 */
export function score(file, findings, { byLine = false } = {}) {
  const key = (item) => (byLine ? `${item.line}` : `${item.line}:${item.ruleId}`);
  const expected = new Set(file.expected.map(key));
  const found = new Set(findings.map(key));
  let truePositives = 0;
  for (const item of found) if (expected.has(item)) truePositives += 1;
  return {
    truePositives,
    falsePositives: found.size - truePositives,
    falseNegatives: expected.size - truePositives,
    missed: [...expected].filter((item) => !found.has(item)),
    extra: [...found].filter((item) => !expected.has(item)),
  };
}

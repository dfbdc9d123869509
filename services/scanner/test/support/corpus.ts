import { readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The labelled corpus: each file marks the findings it must produce with
 * `expect: rule-id[, rule-id]` comments on the finding's first line (or
 * `expect@N: rule-id` for line N), and the look-alikes it must not flag with
 * `look-alike`. bench/scan/corpus-labels.mjs reads the same labels.
 *
 * Corpus files end in `.fixture`, so no linter, formatter or compiler of the
 * repository reads them. Some do not parse, on purpose. The scanner gets each
 * file under its name without that suffix.
 */
export const CORPUS_DIR = fileURLToPath(new URL('../fixtures/corpus/', import.meta.url));

const LANGUAGE_OF_EXTENSION: Readonly<Record<string, string>> = {
  '.py': 'python',
  '.js': 'javascript',
  '.ts': 'typescript',
  '.tsx': 'typescript',
  '.java': 'java',
  '.cs': 'csharp',
};

export interface Label {
  readonly line: number;
  readonly ruleId: string;
}

export interface CorpusFile {
  /** Path under the corpus folder, such as python/eval_builtin.py. */
  readonly path: string;
  readonly language: string;
  readonly text: string;
  readonly expected: readonly Label[];
  readonly lookAlikes: number;
}

const EXPECT = /(?:#|\/\/)\s*expect(?:@(\d+))?:\s*([\w.,\s-]+?)\s*$/;

export function readCorpus(): CorpusFile[] {
  const files: CorpusFile[] = [];
  for (const folder of readdirSync(CORPUS_DIR).sort()) {
    for (const fileName of readdirSync(join(CORPUS_DIR, folder)).sort()) {
      const name = fileName.replace(/\.fixture$/, '');
      const language = LANGUAGE_OF_EXTENSION[extname(name)];
      if (language === undefined || name === fileName) continue;
      const text = readFileSync(join(CORPUS_DIR, folder, fileName), 'utf8');
      const expected: Label[] = [];
      let lookAlikes = 0;
      text.split('\n').forEach((line, index) => {
        const match = EXPECT.exec(line);
        if (match?.[2] !== undefined) {
          const lineNumber = match[1] === undefined ? index + 1 : Number(match[1]);
          for (const ruleId of match[2].split(',').map((id) => id.trim())) {
            if (ruleId !== '') expected.push({ line: lineNumber, ruleId });
          }
        }
        if (/(?:#|\/\/)\s*look-alike\b/.test(line)) lookAlikes += 1;
      });
      files.push({ path: `${folder}/${name}`, language, text, expected, lookAlikes });
    }
  }
  return files;
}

export interface Score {
  truePositives: number;
  falsePositives: number;
  falseNegatives: number;
  /** `line:rule` of labels no finding met, and of findings no label expected. */
  readonly missed: string[];
  readonly unexpected: string[];
}

/** Scores a file's findings against its labels; a finding meets a label with its rule on its line. */
export function scoreFile(file: CorpusFile, findings: readonly Label[]): Score {
  const key = (label: Label): string => `${label.line}:${label.ruleId}`;
  const expected = new Set(file.expected.map(key));
  const found = new Set(findings.map(key));
  const missed = [...expected].filter((item) => !found.has(item));
  const unexpected = [...found].filter((item) => !expected.has(item));
  return {
    truePositives: found.size - unexpected.length,
    falsePositives: unexpected.length,
    falseNegatives: missed.length,
    missed: missed.map((item) => `${file.path}:${item}`),
    unexpected: unexpected.map((item) => `${file.path}:${item}`),
  };
}

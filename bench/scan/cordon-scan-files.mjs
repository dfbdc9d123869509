// Scans the .py files under a folder with the scanner's engine in a fresh
// process and prints the findings as JSON Lines ({ file, line, ruleId }), so
// the benchmark can time it from process start like the bandit command.
// Usage: node bench/scan/cordon-scan-files.mjs DIR
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ScanEngine } from '../../services/scanner/dist/index.js';

const root = process.argv[2];
const engine = await ScanEngine.create();
const lines = [];

function* pythonFiles(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* pythonFiles(path);
    else if (entry.name.endsWith('.py')) yield path;
  }
}

for (const path of pythonFiles(root)) {
  const file = { path: relative(root, path), text: readFileSync(path, 'utf8'), language: 'python' };
  for (const finding of await engine.scanFile(file, performance.now() + 60_000)) {
    lines.push(
      JSON.stringify({ file: file.path, line: finding.startLine, ruleId: finding.ruleId }),
    );
  }
}
process.stdout.write(lines.length === 0 ? '' : `${lines.join('\n')}\n`);

import { writeFileSync } from 'node:fs';
import { extname } from 'node:path';
import { toSarif } from '@cordon/client';
import { commonV1, scannerV1 } from '@cordon/proto';
import { parseCommand } from '../arguments.js';
import { connect } from '../connect.js';
import { EXIT } from '../exit-codes.js';
import { collectFiles, type SubmittedFile } from '../run-files.js';
import { writeLine, type Terminal } from '../terminal.js';
import { UsageError } from '../usage-error.js';

const { Severity } = commonV1;

const SCAN_OPTIONS = {
  language: { type: 'string' },
  sarif: { type: 'string' },
  'fail-on': { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** Languages the scanner reads, by file extension. */
const LANGUAGES: Readonly<Record<string, string>> = {
  '.py': 'python',
  '.js': 'javascript',
  '.mjs': 'javascript',
  '.cjs': 'javascript',
  '.ts': 'typescript',
  '.mts': 'typescript',
  '.cts': 'typescript',
  '.java': 'java',
  '.cs': 'csharp',
};

const SEVERITIES: readonly (readonly [string, commonV1.Severity])[] = [
  ['info', Severity.SEVERITY_INFO],
  ['low', Severity.SEVERITY_LOW],
  ['medium', Severity.SEVERITY_MEDIUM],
  ['high', Severity.SEVERITY_HIGH],
  ['critical', Severity.SEVERITY_CRITICAL],
];
const SEVERITY_NAMES = SEVERITIES.map(([name]) => name);

export function severityName(severity: commonV1.Severity): string {
  return SEVERITIES.find(([, value]) => value === severity)?.[0] ?? 'unspecified';
}

function parseFailOn(text: string | undefined): commonV1.Severity | undefined {
  if (text === undefined || text === 'none') return undefined;
  const severity = SEVERITIES.find(([name]) => name === text)?.[1];
  if (severity === undefined) {
    throw new UsageError(
      `scan: --fail-on "${text}" is not a severity; use one of none, ${SEVERITY_NAMES.join(', ')}`,
    );
  }
  return severity;
}

function groupByLanguage(
  files: readonly SubmittedFile[],
  language: string | undefined,
): Map<string, SubmittedFile[]> {
  const groups = new Map<string, SubmittedFile[]>();
  for (const file of files) {
    const chosen = language ?? LANGUAGES[extname(file.path).toLowerCase()];
    if (chosen === undefined) {
      throw new UsageError(
        `scan: cannot tell the language of ${file.path} from its extension; pass --language (python, javascript, typescript, java or csharp)`,
      );
    }
    groups.set(chosen, [...(groups.get(chosen) ?? []), file]);
  }
  return groups;
}

function printFindings(findings: readonly commonV1.Finding[], terminal: Terminal): void {
  const byFile = new Map<string, commonV1.Finding[]>();
  for (const finding of findings) {
    byFile.set(finding.file, [...(byFile.get(finding.file) ?? []), finding]);
  }
  for (const file of [...byFile.keys()].sort()) {
    writeLine(terminal.stdout, file);
    const sorted = (byFile.get(file) ?? []).sort(
      (a, b) => a.startLine - b.startLine || a.startColumn - b.startColumn,
    );
    for (const finding of sorted) {
      const where = `${finding.startLine}:${finding.startColumn}`.padEnd(7);
      const cwe = finding.cwe === '' ? '' : ` ${finding.cwe}`;
      writeLine(
        terminal.stdout,
        `  ${where} ${severityName(finding.severity).padEnd(8)} ${finding.ruleId}${cwe}  ${finding.title}`,
      );
      if (finding.fixHint !== '') writeLine(terminal.stdout, `          fix: ${finding.fixHint}`);
    }
  }
}

function countLine(findings: readonly commonV1.Finding[], filesScanned: number): string {
  const parts = [...SEVERITIES]
    .reverse()
    .map(([name, severity]) => {
      const count = findings.filter((finding) => finding.severity === severity).length;
      return count === 0 ? '' : `${count} ${name}`;
    })
    .filter((part) => part !== '');
  const noun = findings.length === 1 ? 'finding' : 'findings';
  const files = `${filesScanned} file${filesScanned === 1 ? '' : 's'} scanned`;
  return parts.length === 0
    ? `no findings in ${files}`
    : `${findings.length} ${noun} (${parts.join(', ')}) in ${files}`;
}

/** `cordon scan FILE...`: scans files and prints the findings grouped by file. */
export async function scanCommand(args: readonly string[], terminal: Terminal): Promise<number> {
  const { values: flags, positionals } = parseCommand(args, SCAN_OPTIONS, 'scan');
  const failOn = parseFailOn(flags['fail-on']);
  // Without --language, a folder's files that no scanned language has, such as a README, are left out.
  const extensions = Object.keys(LANGUAGES);
  const { files, skipped } = collectFiles(
    positionals,
    'scan',
    flags.language === undefined
      ? {
          keep: (path) => Object.hasOwn(LANGUAGES, extname(path).toLowerCase()),
          takes: `files ending in ${extensions.join(', ')}`,
        }
      : undefined,
  );
  if (skipped.length > 0) {
    const listed = skipped.slice(0, 3).join(', ');
    const more = skipped.length > 3 ? ` and ${skipped.length - 3} more` : '';
    writeLine(
      terminal.stderr,
      `cordon: scan: left out ${skipped.length} file${skipped.length === 1 ? '' : 's'} in a folder whose language is unknown (${listed}${more}); name a file, or pass --language, to scan it`,
    );
  }
  const groups = groupByLanguage(files, flags.language);

  const client = connect(flags.address, terminal);
  let reports: scannerV1.ScanReport[];
  let rules: readonly scannerV1.Rule[] = [];
  try {
    reports = await Promise.all(
      [...groups].map(([language, group]) => client.scanner.scan({ language, files: group })),
    );
    // SARIF describes each rule a finding names, from the scanner's own rule list.
    if (flags.sarif !== undefined) rules = (await client.scanner.listRules()).rules;
  } finally {
    client.close();
  }

  const findings = reports.flatMap((report) => report.findings);
  if (flags.sarif !== undefined) {
    const merged = scannerV1.ScanReport.fromPartial({
      findings,
      engineVersion: reports[0]?.engineVersion ?? '',
      rulesVersion: reports[0]?.rulesVersion ?? '',
      filesScanned: reports.reduce((sum, report) => sum + report.filesScanned, 0),
    });
    writeFileSync(flags.sarif, `${JSON.stringify(toSarif(merged, rules), null, 2)}\n`);
  }
  if (flags.json === true) {
    for (const finding of findings)
      writeLine(terminal.stdout, JSON.stringify(commonV1.Finding.toJSON(finding)));
  } else {
    printFindings(findings, terminal);
    const scanned = reports.reduce((sum, report) => sum + report.filesScanned, 0);
    writeLine(terminal.stdout, countLine(findings, scanned));
  }

  const failing =
    failOn === undefined ? [] : findings.filter((finding) => finding.severity >= failOn);
  if (failing.length > 0) {
    writeLine(
      terminal.stderr,
      `cordon: ${failing.length} finding${failing.length === 1 ? '' : 's'} at or above ${severityName(failOn ?? Severity.SEVERITY_INFO)}`,
    );
    return EXIT.negative;
  }
  return EXIT.ok;
}

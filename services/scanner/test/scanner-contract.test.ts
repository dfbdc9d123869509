import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Metadata } from '@grpc/grpc-js';
import { commonV1 } from '@cordon/proto';
import { bearerMetadata } from '../../../test/support/test-tokens.js';
import {
  cleanUpHarness,
  failureOf,
  severityOf,
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

const DEPLOY_PY = [
  'import subprocess as sp',
  '',
  'def deploy(branch):',
  '    sp.call("git checkout " + branch, shell=True)',
  '',
].join('\n');

describe('Scan', () => {
  it('reports a finding with its rule, CWE, severity, position, source line and fix', async () => {
    const report = await scanner.scan({
      language: 'python',
      textFiles: [{ path: 'app/deploy.py', text: DEPLOY_PY }],
    });

    expect(report.findings).toEqual([
      {
        ruleId: 'command.shell-injection',
        title: 'Shell command built from non-literal input',
        cwe: 'CWE-78',
        severity: commonV1.Severity.SEVERITY_CRITICAL,
        confidence: commonV1.Confidence.CONFIDENCE_HIGH,
        file: 'app/deploy.py',
        startLine: 4,
        startColumn: 5,
        endLine: 4,
        endColumn: 49,
        snippet: '    sp.call("git checkout " + branch, shell=True)',
        message:
          'A shell runs a command line that is not a constant; input that reaches it can run any command.',
        fixHint:
          'Run the program directly with an argument list and no shell (subprocess.run([...]), execFile, ProcessBuilder with separate arguments).',
      },
    ]);
    expect(severityOf(report.findings[0]!)).toBe('CRITICAL');
    expect(report.counts).toEqual({ info: 0, low: 0, medium: 0, high: 0, critical: 1 });
    expect(report.filesScanned).toBe(1);
    expect(report.engineVersion).toMatch(/^cordon-scanner 0\.1\.0 \(web-tree-sitter 0\.25\.\d+\)$/);
    expect(report.rulesVersion).toMatch(/^sha256-[0-9a-f]{16}$/);
  });

  it('picks languages by extension', async () => {
    const report = await scanner.scan({
      language: 'python',
      textFiles: [
        { path: 'run', text: 'import os\nos.system(cmd)\n' },
        { path: 'lib/util.js', text: "require('child_process').exec(cmd);\n" },
        { path: 'notes.txt', text: 'os.system(cmd)\n' },
        { path: 'data.bin', text: '\u0000\u0001' },
      ],
    });

    expect(report.filesScanned).toBe(2);
    expect(report.findings.map((finding) => [finding.file, finding.ruleId])).toEqual([
      ['lib/util.js', 'command.shell-injection'],
      ['run', 'command.shell-injection'],
    ]);
  });

  it('maps executor runtime ids to languages', async () => {
    const report = await scanner.scan({
      language: 'node',
      textFiles: [{ path: 'main', text: 'eval(code);\n' }],
    });

    expect(report.findings.map((finding) => finding.ruleId)).toEqual(['code.dynamic-eval']);
  });

  it('does not flag dangerous calls written in strings or comments', async () => {
    const report = await scanner.scan({
      textFiles: [
        { path: 'a.py', text: '# os.system(cmd)\nhelp = "os.system(cmd)"\n' },
        { path: 'b.js', text: "// eval(code)\nconst doc = 'eval(code)';\n" },
      ],
    });

    expect(report.findings).toEqual([]);
    expect(report.counts).toEqual({ info: 0, low: 0, medium: 0, high: 0, critical: 0 });
  });

  it('refuses an unknown language and says which are accepted', async () => {
    const failure = await failureOf(
      scanner.scan({ language: 'cobol', textFiles: [{ path: 'a', text: '' }] }),
    );

    expect(failure.code).toBe('INVALID_ARGUMENT');
    expect(failure.message).toBe(
      'language: "cobol" is not supported; use one of python, python3, javascript, node, nodejs, typescript, java, csharp, dotnet, c#, or leave it empty to go by file extension',
    );
    expect(failure.details?.fieldViolations[0]?.field).toBe('language');
  });

  it('refuses a call without a token', async () => {
    const failure = await failureOf(
      scanner.scan({ textFiles: [{ path: 'a.py', text: 'x = 1\n' }] }, new Metadata()),
    );

    expect(failure.code).toBe('UNAUTHENTICATED');
  });
});

describe('ListRules', () => {
  it('lists every rule with its CWE and languages, and the rules version', async () => {
    const response = await scanner.listRules();
    const shell = response.rules.find((rule) => rule.id === 'command.shell-injection');

    expect(response.rules.length).toBe(23);
    expect(shell).toEqual(
      expect.objectContaining({
        cwe: 'CWE-78',
        languages: ['python', 'javascript', 'java', 'csharp', 'typescript'],
      }),
    );
    expect(response.rules.map((rule) => rule.id)).toContain('parse.syntax-error');
    expect(response.rulesVersion).toMatch(/^sha256-[0-9a-f]{16}$/);
  });

  it('filters by language, runtime ids included', async () => {
    const java = await scanner.listRules('java');

    expect(java.rules.every((rule) => rule.languages.includes('java'))).toBe(true);
    expect((await scanner.listRules('node')).rules.length).toBe(
      (await scanner.listRules('javascript')).rules.length,
    );
  });

  it('is open to auditors but refuses an unknown language', async () => {
    const auditor = await scanner.listRules('', bearerMetadata('auditor-1', 'auditor'));
    const failure = await failureOf(scanner.listRules('fortran'));

    expect(auditor.rules.length).toBe(23);
    expect(failure.code).toBe('INVALID_ARGUMENT');
  });
});

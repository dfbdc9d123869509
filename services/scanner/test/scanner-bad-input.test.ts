import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkHealth } from '../../../test/support/grpc-probes.js';
import {
  cleanUpHarness,
  failureOf,
  severityOf,
  startScanner,
  type ScannerUnderTest,
} from './support/scanner-harness.js';

let scanner: ScannerUnderTest;

beforeAll(async () => {
  scanner = await startScanner({
    CORDON_SCANNER_MAX_FILES: '3',
    CORDON_SCANNER_MAX_FILE_BYTES: '256k',
    CORDON_SCANNER_MAX_TOTAL_BYTES: '400k',
    CORDON_SCANNER_SCAN_TIMEOUT_MS: '2s',
    CORDON_SCANNER_WORKERS: '2',
  });
});

afterAll(async () => {
  await scanner.stop();
  await cleanUpHarness();
});

describe('code that does not parse', () => {
  it('is scanned and reported as INFO', async () => {
    const text = ['import os', 'def broken(:', '    pass', 'os.system(user_cmd)', ''].join('\n');
    const report = await scanner.scan({ textFiles: [{ path: 'broken.py', text }] });

    expect(
      report.findings.map((finding) => [finding.ruleId, severityOf(finding), finding.startLine]),
    ).toEqual([
      ['command.shell-injection', 'CRITICAL', 4],
      ['parse.syntax-error', 'INFO', 2],
    ]);
    expect(report.findings[1]?.cwe).toBe('');
    expect(report.counts).toEqual({ info: 1, low: 0, medium: 0, high: 0, critical: 1 });
  });
});

describe('input the scanner refuses', () => {
  it('refuses a file with a NUL byte and names it', async () => {
    const failure = await failureOf(
      scanner.scan({ files: [{ path: 'src/main.py', content: Buffer.from('x = 1\u0000\n') }] }),
    );

    expect(failure.code).toBe('INVALID_ARGUMENT');
    expect(failure.message).toBe(
      'files[0].content: src/main.py holds a NUL byte at offset 5; the scanner reads UTF-8 source text, not binary files',
    );
  });

  it('refuses a file that is not UTF-8 and names it', async () => {
    const failure = await failureOf(
      scanner.scan({
        files: [
          { path: 'ok.py', content: Buffer.from('x = 1\n') },
          { path: 'latin1.js', content: Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]) },
        ],
      }),
    );

    expect(failure.code).toBe('INVALID_ARGUMENT');
    expect(failure.message).toBe(
      'files[1].content: latin1.js is not valid UTF-8; the scanner reads UTF-8 source text, not binary files',
    );
  });

  it('refuses an over-size file', async () => {
    const failure = await failureOf(
      scanner.scan({ textFiles: [{ path: 'big.py', text: 'x = 1\n'.repeat(50_000) }] }),
    );

    expect(failure.code).toBe('INVALID_ARGUMENT');
    expect(failure.message).toBe(
      "files[0].content: big.py is 300000 bytes, above this scanner's maximum of 256KiB (262144 bytes) per file (CORDON_SCANNER_MAX_FILE_BYTES)",
    );
  });

  it('refuses files that add up to more than the total limit', async () => {
    const text = 'x = 1\n'.repeat(40_000);
    const failure = await failureOf(
      scanner.scan({
        textFiles: [
          { path: 'a.py', text },
          { path: 'b.py', text },
        ],
      }),
    );

    expect(failure.code).toBe('INVALID_ARGUMENT');
    expect(failure.message).toBe(
      "files: the files up to b.py add up to 480000 bytes, above this scanner's maximum of 400KiB (409600 bytes) per scan (CORDON_SCANNER_MAX_TOTAL_BYTES)",
    );
  });

  it('refuses more files than the limit', async () => {
    const textFiles = ['a', 'b', 'c', 'd'].map((name) => ({ path: `${name}.py`, text: '' }));
    const failure = await failureOf(scanner.scan({ textFiles }));

    expect(failure.code).toBe('INVALID_ARGUMENT');
    expect(failure.message).toBe(
      "files: 4 files is above this scanner's maximum of 3 per scan (CORDON_SCANNER_MAX_FILES); send fewer files per scan",
    );
  });

  it.each([
    [
      '/etc/passwd.py',
      'files[0].path: "/etc/passwd.py" must be a relative path without "..", empty parts or a leading "/"',
    ],
    [
      '../up.py',
      'files[0].path: "../up.py" must be a relative path without "..", empty parts or a leading "/"',
    ],
    ['', 'files[0].path: is empty; give the file a relative path such as main.py'],
  ])('refuses the path %j', async (path, message) => {
    const failure = await failureOf(scanner.scan({ textFiles: [{ path, text: '' }] }));

    expect(failure.code).toBe('INVALID_ARGUMENT');
    expect(failure.message).toBe(message);
  });

  it('refuses a request without files', async () => {
    const failure = await failureOf(scanner.scan({ language: 'python' }));

    expect(failure.message).toBe('files: is empty; send at least one file');
  });
});

describe('hostile input', () => {
  it.each([
    ['python', 'deep.py', `x = ${'('.repeat(100_000)}1${')'.repeat(100_000)}\n`],
    ['python', 'lists.py', `x = ${'['.repeat(60_000)}${']'.repeat(60_000)}\n`],
    ['javascript', 'deep.js', `const x = ${'-'.repeat(200_000)}1;\n`],
    ['java', 'Deep.java', `class D { int x = ${'('.repeat(80_000)}1${')'.repeat(80_000)}; }\n`],
    [
      'csharp',
      'Deep.cs',
      `class D { object x = ${'new[]{'.repeat(30_000)}${'}'.repeat(30_000)}; }\n`,
    ],
  ])(
    'scans deeply nested %s code without failing the service (%s)',
    async (_language, path, text) => {
      const report = await scanner.scan({ textFiles: [{ path, text }] });

      expect(report.filesScanned).toBe(1);
      expect(await checkHealth(scanner.address)).toBe('SERVING');
    },
  );

  it('stops a scan that runs past its deadline with DEADLINE_EXCEEDED and keeps serving', async () => {
    // 100 000 unclosed brackets send tree-sitter's error recovery into a long search.
    const text = `eval(${'['.repeat(100_000)}\n`;
    const failure = await failureOf(scanner.scan({ textFiles: [{ path: 'unclosed.py', text }] }));

    expect(failure.code).toBe('DEADLINE_EXCEEDED');
    expect(failure.message).toBe(
      'the scan did not finish within 2000 ms (CORDON_SCANNER_SCAN_TIMEOUT_MS); it stopped in unclosed.py. Send fewer or smaller files',
    );
    expect(await checkHealth(scanner.address)).toBe('SERVING');
  });

  it('answers other scans and health checks while a long scan runs', async () => {
    let slowSettled = false;
    const slow = failureOf(
      scanner.scan({ textFiles: [{ path: 'unclosed.py', text: `eval(${'['.repeat(100_000)}\n` }] }),
    ).finally(() => {
      slowSettled = true;
    });

    const quick = await scanner.scan({ textFiles: [{ path: 'quick.py', text: 'eval(x)\n' }] });
    const health = await checkHealth(scanner.address);

    expect(quick.findings.map((finding) => finding.ruleId)).toEqual(['code.dynamic-eval']);
    expect(health).toBe('SERVING');
    expect(slowSettled).toBe(false);
    expect((await slow).code).toBe('DEADLINE_EXCEEDED');
  });

  it('still finds a call at the end of a deeply nested file', async () => {
    const text = `x = ${'('.repeat(50_000)}1${')'.repeat(50_000)}\nimport os\nos.system(cmd)\n`;
    const report = await scanner.scan({ textFiles: [{ path: 'tail.py', text }] });

    expect(report.findings.map((finding) => [finding.ruleId, finding.startLine])).toEqual([
      ['command.shell-injection', 3],
    ]);
  });
});

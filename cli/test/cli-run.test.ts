import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CORDON_BIN, cordon, EXAMPLES, startMesh, token, type Mesh } from './mesh-harness.js';

let mesh: Mesh;
let env: Record<string, string>;

beforeAll(async () => {
  mesh = await startMesh();
  env = { ...mesh.env, CORDON_TOKEN: token('agent-cli') };
});

afterAll(async () => {
  const leftovers = await mesh.stop();
  expect(leftovers, 'containers left behind').toEqual([]);
});

const SUMMARY =
  /^cordon: (?<status>[a-z ]+), (?<outcome>[^;]+); wall [\d.]+ m?s, cpu [\d.]+ m?s, peak memory [\d.]+ (B|KiB|MiB); run (?<run>[0-9a-f-]{36}); trace (?<trace>[0-9a-f]{32})\n$/;

function expected(example: string): string {
  return readFileSync(join(EXAMPLES, example), 'utf8');
}

describe('cordon run', () => {
  it('runs the Python package tests inside the sandbox', async () => {
    const result = await cordon(
      ['run', 'examples/python-stats/run_tests.py', 'examples/python-stats'],
      env,
    );

    expect(result.stdout).toBe(expected('expected/python-stats-tests.txt'));
    expect(result.stderr).toMatch(SUMMARY);
    expect(SUMMARY.exec(result.stderr)?.groups?.['outcome']).toBe('exit code 0');
    expect(result.code).toBe(0);
  });

  it('passes arguments to the Python program', async () => {
    const result = await cordon(
      [
        'run',
        'examples/python-stats/main.py',
        'examples/python-stats',
        '--arg',
        '3',
        '--arg',
        '1',
        '--arg',
        '4',
        '--arg',
        '1',
        '--arg',
        '5',
      ],
      env,
    );

    expect(result.stdout).toBe('count=5 min=1 max=5 mean=2.80 median=3\n');
    expect(result.code).toBe(0);
  });

  it('feeds a file as stdin to the Node.js report', async () => {
    const result = await cordon(
      ['run', 'examples/node-report/report.js', '--stdin', 'examples/node-report/orders.json'],
      env,
    );

    expect(result.stdout).toBe(expected('expected/node-report.txt'));
    expect(result.stderr).toMatch(SUMMARY);
    expect(result.code).toBe(0);
  });

  it('feeds the CLI stdin to the program with --stdin -', async () => {
    const orders = readFileSync(join(EXAMPLES, 'node-report/orders.json'), 'utf8');
    const result = await cordon(
      ['run', 'examples/node-report/report.js', '--stdin', '-'],
      env,
      orders,
    );

    expect(result.stdout).toBe(expected('expected/node-report.txt'));
    expect(result.code).toBe(0);
  });

  it('compiles and runs the two-class Java program', async () => {
    const result = await cordon(
      [
        'run',
        'examples/java-inventory/Main.java',
        'examples/java-inventory/Inventory.java',
        '--stdin',
        'examples/java-inventory/input.txt',
      ],
      env,
    );

    expect(result.stdout).toBe(expected('expected/java-inventory.txt'));
    expect(result.stderr.split('\n')[0]).toBe('line 4: cannot take 9 pear, only 4 in stock');
    expect(result.stderr.split('\n').slice(1).join('\n')).toMatch(SUMMARY);
    expect(result.code).toBe(0);
  });

  it('exits 124 when the fork bomb reaches the wall clock', async () => {
    const result = await cordon(
      ['run', 'examples/misbehaving/fork_bomb.py', '--timeout', '3s', '--pids', '32'],
      env,
    );

    expect(result.stdout).toBe('fork refused: Resource temporarily unavailable\n');
    const summary = SUMMARY.exec(result.stderr)?.groups;
    expect(summary?.['status']).toBe('wall timeout');
    expect(summary?.['outcome']).toBe('killed at the run wall-clock limit of 3000 ms');
    expect(result.code).toBe(124);
  });

  it('exits 137 when the allocation bomb reaches the memory limit', async () => {
    const result = await cordon(
      ['run', 'examples/misbehaving/alloc_bomb.py', '--memory', '128m'],
      env,
    );

    expect(result.stdout).toBe('allocating\n');
    const summary = SUMMARY.exec(result.stderr)?.groups;
    expect(summary?.['status']).toBe('memory limit');
    expect(summary?.['outcome']).toBe('out of memory at the limit of 134217728 bytes');
    expect(result.code).toBe(137);
  });

  it('exits with the program exit code', async () => {
    const result = await cordon(
      ['run', 'examples/python-stats/main.py', 'examples/python-stats'],
      env,
    );

    expect(result.stdout).toBe('');
    expect(result.stderr.split('\n')[0]).toBe('usage: main.py NUMBER...');
    expect(SUMMARY.exec(result.stderr.split('\n').slice(1).join('\n'))?.groups?.['outcome']).toBe(
      'exited with status 2',
    );
    expect(result.code).toBe(2);
  });

  it('prints one JSON object per event with --json', async () => {
    const result = await cordon(
      ['run', 'examples/python-stats/main.py', 'examples/python-stats', '--arg', '7', '--json'],
      env,
    );

    const events = result.stdout
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, Record<string, unknown>>);
    const kinds = events.map((event) => Object.keys(event)[0]);
    // The mesh's scan policy is "report", so the scan comes before the run starts.
    expect(kinds.slice(0, 2)).toEqual(['scan', 'started']);
    expect(kinds.at(-1)).toBe('exited');
    expect(new Set(kinds.slice(2, -1))).toEqual(new Set(['output']));
    expect(events[0]?.['scan']?.['skipped']).toBeUndefined();
    expect(events[1]?.['started']?.['runtime']).toBe('python');
    const outputs = events.slice(2, -1).map((event) => event['output']);
    expect(new Set(outputs.map((output) => output?.['stream']))).toEqual(
      new Set(['OUTPUT_STREAM_STDOUT']),
    );
    expect(new Set(outputs.map((output) => output?.['phase']))).toEqual(new Set(['RUN_PHASE_RUN']));
    const text = outputs
      .map((output) => Buffer.from(String(output?.['data']), 'base64').toString())
      .join('');
    expect(text).toBe('count=1 min=7 max=7 mean=7.00 median=7\n');
    expect(events.at(-1)?.['exited']?.['status']).toBe('RUN_STATUS_OK');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('records the run under the trace id it printed', async () => {
    const result = await cordon(
      ['run', 'examples/python-stats/main.py', 'examples/python-stats', '--arg', '1'],
      env,
    );
    const summary = SUMMARY.exec(result.stderr)?.groups;
    const runId = summary?.['run'] ?? '';

    const timeline = await cordon(['audit', 'run', runId], env);

    expect(timeline.code).toBe(0);
    const lines = timeline.stdout.split('\n');
    expect(lines[0]).toBe(`run ${runId}`);
    expect(lines).toContain('  agent      agent-cli');
    expect(lines).toContain(`  trace      ${summary?.['trace'] ?? ''}`);
    expect(lines).toContain('  outcome    RUN_STATUS_OK, exit code 0 (success)');
    const size = readFileSync(join(EXAMPLES, 'python-stats/main.py')).length;
    expect(lines).toContain(`               main.py  ${size} B`);
    expect(lines).toContain('    | count=1 min=1 max=1 mean=1.00 median=1');
    expect(timeline.stdout).toMatch(/ {2}code {7}sha256 [0-9a-f]{64}, 6 files\n/);
  });
});

describe('cordon as a filter', () => {
  it('ends quietly when its reader goes away, as piped into head', async () => {
    const program = join(mesh.folder, 'many_lines.py');
    writeFileSync(program, 'for i in range(10**7):\n    print(i)\n');
    const child = spawn(process.execPath, [CORDON_BIN, 'run', '--timeout', '20s', program], {
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env },
    });
    let stderr = '';
    child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
    child.stdout.once('data', () => child.stdout.destroy());

    const code = await new Promise((resolve) => child.on('exit', resolve));

    expect(code).toBe(0);
    expect(stderr).not.toContain('EPIPE');
  });
});

describe('cordon run rejects bad input before calling the mesh', () => {
  it.each([
    [['run'], 'cordon: run: missing FILE; usage: cordon run FILE... [flags]\n'],
    [
      ['run', 'examples/python-stats/main.py', '--timeout', '10'],
      'cordon: --timeout "10" is not a duration; use a number with a unit such as 500ms, 10s, 2m or 1h\n',
    ],
    [
      ['run', 'examples/python-stats/main.py', '--timeout', '-5s'],
      'cordon: --timeout "-5s" is not a duration; use a number with a unit such as 500ms, 10s, 2m or 1h\n',
    ],
    [
      ['run', 'examples/python-stats/main.py', '--memory', '99999999999999999999g'],
      'cordon: --memory "99999999999999999999g" is too large; the most a flag takes is 9007199254740991\n',
    ],
    [
      ['run', 'examples/python-stats/main.py', '--memory', 'lots'],
      'cordon: --memory "lots" is not a size; use bytes or a unit such as 64k, 256m or 1g\n',
    ],
    [
      ['run', 'examples/python-stats/main.py', '--bogus'],
      'cordon: run: unknown flag --bogus; see "cordon run --help"\n',
    ],
    [
      ['run', 'examples/python-stats/main.py', '--timeout'],
      'cordon: run: flag --timeout needs a value; see "cordon run --help"\n',
    ],
    [['run', 'examples/no-such.py'], 'cordon: examples/no-such.py: no such file or folder\n'],
    [
      ['run', 'examples/python-stats'],
      'cordon: run: the first argument examples/python-stats must be the file to run, not a folder; put folders after it\n',
    ],
    [
      ['run', 'examples/python-stats/main.py', '--env', 'NOVALUE'],
      'cordon: run: --env "NOVALUE" is not NAME=value\n',
    ],
    [
      ['launch'],
      'cordon: unknown command "launch"; use run, scan, memory, audit, runtimes, health or token (cordon --help lists them)\n',
    ],
  ])('%j exits 2', async (args, message) => {
    const result = await cordon(args, { CORDON_ADDRESS: '127.0.0.1' });

    expect(result.stderr).toBe(message);
    expect(result.stdout).toBe('');
    expect(result.code).toBe(2);
  });

  it('rejects an entry file no runtime runs', async () => {
    const result = await cordon(['run', 'examples/node-report/orders.json'], env);

    expect(result.stderr).toBe(
      'cordon: run: no runtime of this executor runs ".json" files; pass --runtime with one of python (.py), javascript (.js .mjs .cjs), java (.java)\n',
    );
    expect(result.code).toBe(2);
  });
});

describe('cordon and mesh errors', () => {
  it('says the executor is unreachable in one sentence and exits 125', async () => {
    const result = await cordon(['run', 'examples/python-stats/main.py'], {
      CORDON_EXECUTOR_ADDRESS: '127.0.0.1:1',
      CORDON_TOKEN: token('agent-cli'),
    });

    expect(result.stderr).toBe(
      'cordon: cannot reach the executor service at 127.0.0.1:1; start the mesh with "npm start", or set CORDON_ADDRESS (or CORDON_EXECUTOR_ADDRESS) to where it runs\n',
    );
    expect(result.stdout).toBe('');
    expect(result.code).toBe(125);
  });

  it('exits 2 with the server sentence for a limit above the maximum', async () => {
    const result = await cordon(['run', 'examples/python-stats/main.py', '--memory', '4g'], env);

    expect(result.stderr).toBe(
      "cordon: executor: the request was rejected (INVALID_ARGUMENT): limits.memory_bytes: 4294967296 is above this server's maximum 1073741824; lower it or raise CORDON_MAX_MEMORY_BYTES\n",
    );
    expect(result.code).toBe(2);
  });

  it('reports an over-large --timeout as the wall limit', async () => {
    const result = await cordon(['run', 'examples/python-stats/main.py', '--timeout', '10m'], env);

    expect(result.stderr).toBe(
      "cordon: executor: the request was rejected (INVALID_ARGUMENT): limits.wall_time_ms: 600000 is above this server's maximum 300000; lower it or raise CORDON_MAX_WALL_TIME_MS\n",
    );
    expect(result.code).toBe(2);
  });

  it('says a call without a token was not accepted', async () => {
    const result = await cordon(['runtimes'], mesh.env);

    expect(result.stderr).toMatch(
      /^cordon: executor: the mesh did not accept the credentials \(UNAUTHENTICATED\): .+; cordon reads the token from CORDON_TOKEN, else \/tmp\/cordon-cli-no-home\/\.config\/cordon\/token\n$/,
    );
    expect(result.code).toBe(125);
  });
});

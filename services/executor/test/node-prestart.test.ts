import { executorV1 } from '@cordon/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  RunStatus,
  startExecutor,
  waitForDepth,
  type ExecutorUnderTest,
  type RunResult,
} from './executor-harness.js';

const { StartPath } = executorV1;

// A warm JavaScript sandbox has Node.js running before its run arrives. These
// tests hold it to what `node <entry>` in a cold sandbox does.
let warm: ExecutorUnderTest;
let cold: ExecutorUnderTest;

beforeAll(async () => {
  [warm, cold] = await Promise.all([
    startExecutor({ CORDON_WARM_POOL_SIZE: 'python=0,javascript=2,java=0' }),
    startExecutor({ CORDON_WARM_POOL_SIZE: '0' }),
  ]);
});

afterAll(async () => {
  const leftovers = [
    ...(await warm.leftoverRunContainers()),
    ...(await cold.leftoverRunContainers()),
  ];
  await Promise.all([warm.stop(), cold.stop()]);
  expect(leftovers, 'run containers left behind by the executors').toEqual([]);
});

function javascript(
  path: string,
  code: string,
  extra: Partial<executorV1.ExecuteRequest> = {},
): Partial<executorV1.ExecuteRequest> {
  return { runtime: 'javascript', files: [{ path, content: Buffer.from(code) }], ...extra };
}

/** Runs a request in a warm sandbox (after the pool has refilled) and in a cold one. */
async function warmAndCold(
  request: Partial<executorV1.ExecuteRequest>,
): Promise<{ warmRun: RunResult; coldRun: RunResult }> {
  await waitForDepth(warm, 'javascript 2/2');
  const warmRun = await warm.run(request);
  expect(warmRun.started?.startPath).toBe(StartPath.START_PATH_WARM);
  const coldRun = await cold.run(request);
  expect(coldRun.started?.startPath).toBe(StartPath.START_PATH_COLD);
  return { warmRun, coldRun };
}

// HOSTNAME is each container's own id. The order of the environment is the
// shell's in a cold sandbox and is not compared.
const DESCRIBE_PROCESS = `
const env = Object.fromEntries(Object.entries(process.env).sort());
delete env.HOSTNAME;
console.log(JSON.stringify({
  argv: process.argv,
  argv0: process.argv0,
  execArgv: process.execArgv,
  env,
  cwd: process.cwd(),
  title: process.title,
  isMain: require.main === module,
  mainModule: process.mainModule === module,
  filename: __filename,
  cached: Object.keys(require.cache),
  globals: [typeof globalThis.require, typeof globalThis.module, typeof globalThis.exports],
  stdin: require('node:fs').readFileSync(0, 'utf8'),
  listeners: ['exit', 'uncaughtException', 'SIGTERM'].map((name) => process.listenerCount(name)),
}));
`;

describe('prestarted Node.js in warm sandboxes', () => {
  it('gives the program the argv, environment, stdin and module state of node <entry>', async () => {
    const request = javascript('main.js', DESCRIBE_PROCESS, {
      args: ['one', 'two words', "it's"],
      env: { GREETING: 'hello\nworld', EMPTY: '' },
      stdin: Buffer.from('line 1\nline 2\n'),
    });

    const { warmRun, coldRun } = await warmAndCold(request);

    expect(warmRun.exited?.status).toBe(RunStatus.RUN_STATUS_OK);
    const seen = JSON.parse(warmRun.stdout.toString()) as Record<string, unknown>;
    expect(seen).toMatchObject({
      argv: ['/usr/bin/node', '/work/main.js', 'one', 'two words', "it's"],
      execArgv: [],
      cwd: '/work',
      isMain: true,
      mainModule: true,
      filename: '/work/main.js',
      cached: ['/work/main.js'],
      globals: ['undefined', 'undefined', 'undefined'],
      stdin: 'line 1\nline 2\n',
      listeners: [0, 0, 0],
    });
    expect(seen['env']).toMatchObject({ GREETING: 'hello\nworld', EMPTY: '' });
    expect(warmRun.stdout.toString()).toBe(coldRun.stdout.toString());
    expect(warmRun.stderr.toString()).toBe('');
  });

  it('runs an ES module entry as node does', async () => {
    const request = javascript(
      'main.mjs',
      [
        "import { readFileSync } from 'node:fs';",
        'const stdin = readFileSync(0, "utf8");',
        'await new Promise((resolve) => setTimeout(resolve, 10));',
        'console.log(import.meta.url, typeof require, process.argv.slice(1).join(","), stdin);',
      ].join('\n'),
      { args: ['x'], stdin: Buffer.from('input') },
    );

    const { warmRun, coldRun } = await warmAndCold(request);

    expect(warmRun.stdout.toString()).toBe(
      'file:///work/main.mjs undefined /work/main.mjs,x input\n',
    );
    expect(warmRun.stdout.toString()).toBe(coldRun.stdout.toString());
    expect(warmRun.exited?.exitCode).toBe(0);
  });

  it('reports exit codes and uncaught errors as node does', async () => {
    const cases = [
      ['process.exit(7)', 7],
      ['process.exitCode = 3', 3],
      ['throw new TypeError("bad input")', 1],
      ['Promise.reject(new Error("rejected"))', 1],
    ] as const;
    for (const [code, exitCode] of cases) {
      const { warmRun, coldRun } = await warmAndCold(javascript('main.js', code));

      expect(warmRun.exited?.exitCode, code).toBe(exitCode);
      expect(coldRun.exited?.exitCode, code).toBe(exitCode);
      // Stack frames below the program differ in Node.js's own internals: the
      // program starts from the event loop in a warm sandbox.
      const withoutFrames = (run: RunResult): string =>
        run.stderr
          .toString()
          .split('\n')
          .filter((line) => !line.startsWith('    at '))
          .join('\n');
      expect(withoutFrames(warmRun), code).toBe(withoutFrames(coldRun));
      expect(warmRun.stderr.toString(), code).not.toContain('prestart');
    }
  });

  it('starts a run that sets NODE_OPTIONS cold', async () => {
    await waitForDepth(warm, 'javascript 2/2');

    const result = await warm.run(
      javascript('main.js', 'console.log(process.title)', {
        env: { NODE_OPTIONS: '--title=cordon-test' },
      }),
    );

    expect(result.stdout.toString()).toBe('cordon-test\n');
    expect(result.started?.startPath).toBe(StartPath.START_PATH_COLD);
    expect(result.started?.coldReason).toBe(
      'warm sandboxes start node before the run, so env NODE_OPTIONS, which it reads only at its start, needs a cold one',
    );
  });

  it('holds the prestarted interpreter to the run limits', async () => {
    await waitForDepth(warm, 'javascript 2/2');
    const limits = await warm.run(
      javascript(
        'main.js',
        "console.log(require('node:fs').readFileSync('/proc/self/limits', 'utf8').split('\\n').filter((line) => /^Max (open files|file size|cpu time)/.test(line)).map((line) => line.split(/\\s{2,}/).slice(0, 3).join('|')).join('\\n'))",
        { limits: { maxOpenFiles: 40, maxFileBytes: 1024 * 1024, cpuTimeMs: 2000 } },
      ),
    );
    expect(limits.started?.startPath).toBe(StartPath.START_PATH_WARM);
    expect(limits.stdout.toString()).toBe(
      ['Max cpu time|3|4', 'Max file size|1048576|1048576', 'Max open files|40|40', ''].join('\n'),
    );

    await waitForDepth(warm, 'javascript 2/2');
    const memory = await warm.run(
      javascript('main.js', 'const kept = [];\nfor (;;) kept.push(Buffer.alloc(8 << 20, 1));', {
        limits: { memoryBytes: 96 * 1024 ** 2 },
      }),
    );
    expect(memory.started?.startPath).toBe(StartPath.START_PATH_WARM);
    expect(memory.exited?.status).toBe(RunStatus.RUN_STATUS_MEMORY_LIMIT);

    await waitForDepth(warm, 'javascript 2/2');
    const busy = await warm.run(
      javascript('main.js', 'for (;;) {}', { limits: { cpuTimeMs: 800, wallTimeMs: 10_000 } }),
    );
    expect(busy.exited?.status).toBe(RunStatus.RUN_STATUS_CPU_TIMEOUT);
    expect(busy.exited?.cpuTimeMs).toBeGreaterThanOrEqual(800);
    expect(busy.exited?.cpuTimeMs).toBeLessThan(1500);

    await waitForDepth(warm, 'javascript 2/2');
    const idle = await warm.run(
      javascript('main.js', 'setInterval(() => {}, 1000);', { limits: { wallTimeMs: 1200 } }),
    );
    expect(idle.exited?.status).toBe(RunStatus.RUN_STATUS_WALL_TIMEOUT);
    expect(idle.exited?.message).toBe('killed at the run wall-clock limit of 1200 ms');
  });

  it('does not count the CPU time Node.js spent starting before the run', async () => {
    const { warmRun, coldRun } = await warmAndCold(javascript('main.js', 'console.log("hello")'));

    expect(warmRun.stdout.toString()).toBe('hello\n');
    // Starting Node.js costs about 70 ms of CPU here; the cold run pays it, the warm one did earlier.
    expect(warmRun.exited?.cpuTimeMs).toBeLessThan(coldRun.exited?.cpuTimeMs ?? 0);
    expect(warmRun.exited?.cpuTimeMs).toBeLessThan(40);
  });
});

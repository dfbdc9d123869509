import { execFileSync } from 'node:child_process';
import { executorV1 } from '@cordon/proto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  poolDepth,
  python,
  RunStatus,
  startExecutor,
  waitForDepth,
  type ExecutorUnderTest,
} from './executor-harness.js';

const { StartPath } = executorV1;

const started: ExecutorUnderTest[] = [];

async function executorWith(env: Record<string, string> = {}): Promise<ExecutorUnderTest> {
  const executor = await startExecutor({
    CORDON_WARM_POOL_SIZE: 'python=2,javascript=1,java=0',
    ...env,
  });
  started.push(executor);
  return executor;
}

afterEach(async () => {
  const leftovers: string[] = [];
  for (const executor of started) leftovers.push(...(await executor.leftoverRunContainers()));
  for (const executor of started.splice(0)) await executor.stop();
  expect(leftovers, 'run containers left behind by the executors').toEqual([]);
});

/** Names of an executor's containers that start with `prefix`. */
function containerNames(executor: ExecutorUnderTest, prefix: string): string[] {
  const output = execFileSync(
    'docker',
    [
      'ps',
      '-a',
      '--filter',
      `label=cordon.executor-id=${executor.executorId}`,
      '--filter',
      `name=${prefix}`,
      '--format',
      '{{.Names}}',
    ],
    { encoding: 'utf8' },
  );
  return output
    .split('\n')
    .filter((name) => name !== '')
    .sort();
}

/** Names of the idle warm sandboxes of an executor. */
function warmNames(executor: ExecutorUnderTest): string[] {
  return containerNames(executor, 'cordon-warm-');
}

const FULL = 'python 2/2, javascript 1/1';

describe('warm pool', () => {
  it('starts a run in a warm sandbox and refills the pool behind it', async () => {
    const executor = await executorWith();
    await waitForDepth(executor, FULL);

    const result = await executor.run(python('print("hello")'));

    expect(result.stdout.toString()).toBe('hello\n');
    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_OK);
    expect(result.started?.startPath).toBe(StartPath.START_PATH_WARM);
    expect(result.started?.coldReason).toBe('');
    expect(result.started?.sandboxWaitMs).toBeLessThan(100);
    await waitForDepth(executor, FULL);
  });

  it('names a warm sandbox after a run that lasts', async () => {
    const executor = await executorWith();
    await waitForDepth(executor, FULL);
    let named: Promise<string[]> | undefined;

    const result = await executor.run(
      python('import time\nprint("started", flush=True)\ntime.sleep(1.5)'),
      {
        onOutput: () => {
          named ??= new Promise((resolve) =>
            setTimeout(() => resolve(containerNames(executor, 'cordon-run-')), 600),
          );
        },
      },
    );

    expect(result.started?.startPath).toBe(StartPath.START_PATH_WARM);
    expect(await named).toEqual([`cordon-run-${result.started?.runId ?? ''}`]);
  });

  it('never gives a sandbox that served one run to another', async () => {
    const executor = await executorWith();
    const program = python(
      [
        'import os, socket',
        'print(socket.gethostname(), sorted(os.listdir("/tmp")), sorted(os.listdir("/work")))',
        'open("/tmp/left-behind", "w").write("secret of the previous run")',
        'open("/work/left-behind", "w").write("secret of the previous run")',
      ].join('\n'),
    );

    const hosts: string[] = [];
    for (let run = 0; run < 6; run += 1) {
      await waitForDepth(executor, FULL);
      const result = await executor.run(program);
      expect(result.started?.startPath).toBe(StartPath.START_PATH_WARM);
      const [host, rest] = result.stdout.toString().split(' ', 2);
      expect(result.stdout.toString().slice(`${host} `.length)).toBe("[] ['main.py']\n");
      expect(rest).toBe('[]');
      hosts.push(host ?? '');
    }

    expect(new Set(hosts).size).toBe(6);
  });

  it('sets the run limits on a warm sandbox before the program starts', async () => {
    const executor = await executorWith();
    await waitForDepth(executor, FULL);
    const limits = {
      memoryBytes: 64 * 1024 ** 2,
      maxProcesses: 7,
      maxOpenFiles: 40,
      maxFileBytes: 1000,
      cpuTimeMs: 2500,
    };

    const result = await executor.run(
      python(
        [
          'import resource',
          'memory = open("/sys/fs/cgroup/memory/memory.limit_in_bytes").read().strip()',
          'pids = open("/sys/fs/cgroup/pids/pids.max").read().strip()',
          'print(memory, pids,',
          '      resource.getrlimit(resource.RLIMIT_NOFILE),',
          '      resource.getrlimit(resource.RLIMIT_FSIZE),',
          '      resource.getrlimit(resource.RLIMIT_CPU))',
        ].join('\n'),
        { limits },
      ),
    );

    expect(result.started?.startPath).toBe(StartPath.START_PATH_WARM);
    // Two processes of the launcher come on top of the program's own.
    expect(result.stdout.toString()).toBe('67108864 9 (40, 40) (1000, 1000) (4, 5)\n');
  });

  it('holds a warm run to a smaller memory limit than the pool started with', async () => {
    const executor = await executorWith();
    await waitForDepth(executor, FULL);

    const result = await executor.run(
      python('blocks = []\nwhile True:\n    blocks.append(bytearray(8 * 1024 * 1024))', {
        limits: { memoryBytes: 48 * 1024 ** 2 },
      }),
    );

    expect(result.started?.startPath).toBe(StartPath.START_PATH_WARM);
    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_MEMORY_LIMIT);
    expect(result.exited?.message).toBe(`out of memory at the limit of ${48 * 1024 ** 2} bytes`);
  });

  it('takes the cold path for another tmpfs size and says why', async () => {
    const executor = await executorWith();
    await waitForDepth(executor, FULL);

    const result = await executor.run(
      python('print("cold")', { limits: { tmpBytes: 32 * 1024 ** 2 } }),
    );

    expect(result.stdout.toString()).toBe('cold\n');
    expect(result.started?.startPath).toBe(StartPath.START_PATH_COLD);
    expect(result.started?.coldReason).toBe(
      'warm sandboxes have limits.tmp_bytes 67108864, fixed at their start',
    );
    expect(await poolDepth(executor)).toBe(FULL);
  });

  it('takes the cold path for a higher rlimit than the pool started with', async () => {
    const executor = await executorWith();
    await waitForDepth(executor, FULL);

    const result = await executor.run(
      python('import resource\nprint(resource.getrlimit(resource.RLIMIT_NOFILE))', {
        limits: { maxOpenFiles: 512 },
      }),
    );

    expect(result.stdout.toString()).toBe('(512, 512)\n');
    expect(result.started?.startPath).toBe(StartPath.START_PATH_COLD);
    expect(result.started?.coldReason).toBe(
      'warm sandboxes cannot raise limits.max_open_files above 256',
    );
  });

  it('takes the cold path for a runtime without a pool', async () => {
    const executor = await executorWith();

    const result = await executor.run({
      runtime: 'java',
      files: [
        {
          path: 'Main.java',
          content: Buffer.from(
            'public class Main { public static void main(String[] a) { System.out.println("java cold"); } }',
          ),
        },
      ],
    });

    expect(result.stdout.toString()).toBe('java cold\n');
    expect(result.started?.startPath).toBe(StartPath.START_PATH_COLD);
    expect(result.started?.coldReason).toBe('the warm pool is off for this runtime');
  });

  it('replaces sandboxes that idled past the maximum age', async () => {
    const executor = await executorWith({ CORDON_WARM_POOL_MAX_IDLE_MS: '1500' });
    await waitForDepth(executor, FULL);
    const first = warmNames(executor);
    expect(first).toHaveLength(3);

    const deadline = Date.now() + 15_000;
    let current = first;
    while (Date.now() < deadline && current.some((name) => first.includes(name))) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      current = warmNames(executor);
    }

    expect(current.filter((name) => first.includes(name))).toEqual([]);
    await waitForDepth(executor, FULL);
  });

  it('removes every warm sandbox at shutdown', async () => {
    const executor = await executorWith();
    await waitForDepth(executor, FULL);

    executor.process.child.kill('SIGTERM');

    expect(await executor.process.exited).toEqual({ code: 0, signal: null });
    expect(executor.containers()).toEqual([]);
  });

  it('has the warm sandboxes of a killed executor reaped by the next one', async () => {
    const crashed = await executorWith();
    await waitForDepth(crashed, FULL);
    crashed.process.child.kill('SIGKILL');
    await crashed.process.exited;
    expect(crashed.containers()).toHaveLength(3);

    const next = await executorWith({ CORDON_WARM_POOL_SIZE: '0' });

    const reaped = next.process.logs.find(
      (line) => line.msg === 'removed sandboxes left by executors that are gone',
    );
    expect(reaped?.['removed']).toBeGreaterThanOrEqual(3);
    expect(crashed.containers()).toEqual([]);
    expect(await poolDepth(next)).toBe('off');
  });
});

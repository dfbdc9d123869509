import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { executorV1 } from '@cordon/proto';
import { checkHealth } from '../../../test/support/grpc-probes.js';
import { DockerProxy } from './docker-proxy.js';
import { mintTestToken } from '../../../test/support/test-tokens.js';
import {
  python,
  RunStatus,
  startExecutor,
  TEST_AGENT_ID,
  testClientOptions,
  type ExecutorUnderTest,
} from './executor-harness.js';

const started: ExecutorUnderTest[] = [];
const proxies: DockerProxy[] = [];

async function executorWith(env: Record<string, string> = {}): Promise<ExecutorUnderTest> {
  // These tests count a run's containers, so no warm sandbox may be among them.
  const executor = await startExecutor({ CORDON_WARM_POOL_SIZE: '0', ...env });
  started.push(executor);
  return executor;
}

afterEach(async () => {
  const leftovers: string[] = [];
  for (const executor of started) leftovers.push(...(await executor.leftoverRunContainers()));
  for (const executor of started.splice(0)) await executor.stop();
  for (const proxy of proxies.splice(0)) await proxy.dispose();
  expect(leftovers, 'containers left behind by the executors').toEqual([]);
});

async function waitFor(check: () => boolean, timeoutMs: number): Promise<number> {
  const startedAt = Date.now();
  while (!check()) {
    if (Date.now() - startedAt > timeoutMs)
      throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return Date.now() - startedAt;
}

const LONG_RUN = python('import time\nprint("running", flush=True)\ntime.sleep(60)', {
  limits: { wallTimeMs: 120_000 },
});

function runFinishedLines(executor: ExecutorUnderTest): Record<string, unknown>[] {
  return executor.process.logs.filter((line) => line.msg === 'run finished');
}

describe('client cancel', () => {
  it('kills and removes the container within 2 s and ends the run CANCELLED', async () => {
    const executor = await executorWith();
    const call = executor.client.execute(executorV1.ExecuteRequest.fromPartial(LONG_RUN));
    const errors: ServiceError[] = [];
    call.on('error', (error: ServiceError) => errors.push(error));
    await new Promise<void>((resolve) => call.once('data', () => resolve()));
    await waitFor(() => executor.containers().length === 1, 5000);

    call.cancel();
    const removedMs = await waitFor(() => executor.containers().length === 0, 5000);

    expect(removedMs).toBeLessThan(2000);
    await executor.process.waitForLog((line) => line.msg === 'rpc cancelled by client');
    const finished = runFinishedLines(executor);
    expect(finished).toHaveLength(1);
    expect(finished[0]?.['status']).toBe('RUN_STATUS_CANCELLED');
    expect(executor.process.logs.filter((line) => line.level === 'error')).toEqual([]);
    expect(errors.map((error) => error.code)).toEqual([status.CANCELLED]);
  });

  it('cleans up when the client process dies mid-run', async () => {
    const executor = await executorWith();
    const client = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { credentials, Metadata } from '@grpc/grpc-js';
         import { executorV1 } from '@cordon/proto';
         const client = new executorV1.ExecutorServiceClient('127.0.0.1:${executor.process.port}', credentials.createInsecure());
         const metadata = new Metadata();
         metadata.set('authorization', 'Bearer ${mintTestToken({ subject: TEST_AGENT_ID, role: 'agent' })}');
         client.execute(executorV1.ExecuteRequest.fromPartial(${JSON.stringify({
           runtime: 'python',
           limits: { wallTimeMs: 120000 },
         })
           .slice(0, -1)
           .concat(
             ', files: [{ path: "main.py", content: Buffer.from("import time\\ntime.sleep(60)") }] }',
           )}), metadata, { deadline: Date.now() + 120000 })
           .on('data', () => {}).on('error', () => {});`,
      ],
      { cwd: fileURLToPath(new URL('../../..', import.meta.url)), stdio: 'ignore' },
    );
    await waitFor(() => executor.containers().length === 1, 10_000);

    client.kill('SIGKILL');
    const removedMs = await waitFor(() => executor.containers().length === 0, 5000);

    expect(removedMs).toBeLessThan(2000);
    const finished = await executor.process.waitForLog((line) => line.msg === 'run finished');
    expect(finished['status']).toBe('RUN_STATUS_CANCELLED');
  });
});

describe('graceful shutdown', () => {
  it('drains, cancels past the deadline, exits 0', async () => {
    const executor = await executorWith({ CORDON_SHUTDOWN_DRAIN_MS: '1500ms' });
    const short = executor.run(
      python('import time\ntime.sleep(0.8)\nprint("done")', { limits: { wallTimeMs: 5000 } }),
    );
    const long = executor.run(LONG_RUN);
    await waitFor(() => executor.containers().length === 2, 10_000);

    executor.process.child.kill('SIGTERM');
    await executor.process.waitForLog((line) => line.msg === 'server draining');
    const late = await executor.run(python('print(1)'));
    const [shortResult, longResult] = await Promise.all([short, long]);
    const exit = await executor.process.exited;

    expect(late.error?.code).toBe(status.UNAVAILABLE);
    expect(shortResult.stdout.toString()).toBe('done\n');
    expect(shortResult.exited?.status).toBe(RunStatus.RUN_STATUS_OK);
    expect(longResult.error?.code).toBe(status.UNAVAILABLE);
    expect(longResult.error?.details).toBe(
      'the server shut down before the call finished; try again',
    );
    expect(exit).toEqual({ code: 0, signal: null });
    expect(executor.containers()).toEqual([]);
  });
});

describe('crash recovery', () => {
  it('removes what a killed executor left and never touches a live one', async () => {
    const crashed = await executorWith();
    const live = await executorWith();
    void crashed.run(LONG_RUN);
    const liveRun = live.run(
      python('import time\ntime.sleep(4)\nprint("live ok")', { limits: { wallTimeMs: 20_000 } }),
    );
    await waitFor(
      () => crashed.containers().length === 1 && live.containers().length === 1,
      10_000,
    );

    crashed.process.child.kill('SIGKILL');
    await crashed.process.exited;
    expect(crashed.containers()).toHaveLength(1);
    const restarted = await executorWith();

    const reaped = restarted.process.logs.find(
      (line) => line.msg === 'removed sandboxes left by executors that are gone',
    );
    expect(reaped?.['removed']).toBeGreaterThanOrEqual(1);
    expect(crashed.containers()).toEqual([]);
    expect(live.containers()).toHaveLength(1);
    expect((await liveRun).stdout.toString()).toBe('live ok\n');
  });
});

describe('concurrency', () => {
  it('queues runs in order and rejects one beyond the queue', async () => {
    const executor = await executorWith({
      CORDON_MAX_CONCURRENT_RUNS: '1',
      CORDON_MAX_QUEUED_RUNS: '1',
    });
    const first = executor.run(python('import time\ntime.sleep(1.5)\nprint("first")'));
    await waitFor(() => executor.containers().length === 1, 10_000);
    const second = executor.run(python('print("second")'));
    await new Promise((resolve) => setTimeout(resolve, 200));

    const third = await executor.run(python('print("third")'));

    expect(third.error?.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(third.error?.details).toBe(
      'the run queue is full (1 of 1 waiting, 1 running); try again later',
    );
    expect((await first).stdout.toString()).toBe('first\n');
    const secondResult = await second;
    expect(secondResult.stdout.toString()).toBe('second\n');
    expect(secondResult.started?.queuedMs).toBeGreaterThan(900);
  });

  it('rejects a run that waits longer than the queue timeout', async () => {
    const executor = await executorWith({
      CORDON_MAX_CONCURRENT_RUNS: '1',
      CORDON_QUEUE_TIMEOUT_MS: '500ms',
    });
    const first = executor.run(python('import time\ntime.sleep(2)'));
    await waitFor(() => executor.containers().length === 1, 10_000);

    const second = await executor.run(python('print(1)'));

    expect(second.error?.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(second.error?.details).toBe(
      'no sandbox slot became free within the queue timeout of 500 ms (1 running); try again later',
    );
    expect((await first).exited?.status).toBe(RunStatus.RUN_STATUS_OK);
  });
});

describe('Docker engine faults', () => {
  it('survives the engine going away', async () => {
    const proxy = new DockerProxy();
    proxies.push(proxy);
    await proxy.start();
    const executor = await executorWith({ CORDON_DOCKER_SOCKET: proxy.socketPath });
    const address = `127.0.0.1:${executor.process.port}`;
    let printed = false;
    const inFlight = executor.run(
      python('import time\nprint("started", flush=True)\ntime.sleep(10)', {
        limits: { wallTimeMs: 30_000 },
      }),
      { onOutput: () => (printed = true) },
    );
    await waitFor(() => printed, 10_000);

    await proxy.stop();
    const broken = await inFlight;
    await waitFor(
      () =>
        executor.process.logs.some(
          (line) => line.msg === 'the Docker engine does not respond; not serving',
        ),
      6000,
    );
    const healthWhileAway = await checkHealth(address);
    await proxy.start();
    await waitFor(
      () =>
        executor.process.logs.some(
          (line) => line.msg === 'the Docker engine responds again; serving',
        ),
      6000,
    );
    const next = await executor.run(python('print("back")'));
    await waitFor(() => executor.containers().length === 0, 6000);

    expect(broken.stdout.toString()).toBe('started\n');
    expect(broken.exited?.status).toBe(RunStatus.RUN_STATUS_INTERNAL_ERROR);
    expect(broken.exited?.message).toBe(
      'lost the connection to the Docker engine during the run; the run was abandoned, try it again',
    );
    expect(healthWhileAway).toBe('NOT_SERVING');
    expect(await checkHealth(address)).toBe('SERVING');
    expect(next.stdout.toString()).toBe('back\n');
  });
});

describe('backpressure', () => {
  it('stops reading output while the client pauses, then delivers every line once', async () => {
    const executor = await executorWith({ CORDON_MAX_OUTPUT_BYTES: '64m' });
    const rssBefore = residentBytes(executor.process.child.pid);
    const client = new executorV1.ExecutorServiceClient(
      `127.0.0.1:${executor.process.port}`,
      credentials.createInsecure(),
      testClientOptions(),
    );
    const chunks: Buffer[] = [];
    let peakRss = 0;

    const exited = await new Promise<executorV1.RunExited | undefined>((resolve, reject) => {
      let paused = false;
      let result: executorV1.RunExited | undefined;
      const call = client.execute(
        executorV1.ExecuteRequest.fromPartial(
          python('import sys\nfor i in range(200000):\n    sys.stdout.write(f"{i:06d}\\n")', {
            limits: { maxOutputBytes: 2 * 1024 ** 2, wallTimeMs: 60_000 },
          }),
        ),
      );
      call.on('data', (response: executorV1.ExecuteResponse) => {
        if (response.event?.$case === 'output') {
          chunks.push(response.event.value.data);
          if (!paused) {
            paused = true;
            call.pause();
            setTimeout(() => {
              peakRss = residentBytes(executor.process.child.pid);
              call.resume();
            }, 3000);
          }
        } else if (response.event?.$case === 'exited') {
          result = response.event.value;
        }
      });
      call.on('error', reject);
      call.on('end', () => resolve(result));
    });
    client.close();

    const lines = Buffer.concat(chunks).toString().split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(200_000);
    expect(lines.every((line, index) => line === String(index).padStart(6, '0'))).toBe(true);
    expect(exited?.status).toBe(RunStatus.RUN_STATUS_OK);
    expect(peakRss - rssBefore).toBeLessThan(16 * 1024 ** 2);
  });
});

function residentBytes(pid: number | undefined): number {
  const line = readFileSync(`/proc/${pid ?? 0}/status`, 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith('VmRSS:'));
  return Number(line?.split(/\s+/)[1] ?? 0) * 1024;
}

export function openDescriptors(pid: number | undefined): number {
  return readdirSync(`/proc/${pid ?? 0}/fd`).length;
}

export function containerCount(label: string): number {
  return execFileSync('docker', ['ps', '-aq', '--filter', `label=${label}`], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line !== '').length;
}

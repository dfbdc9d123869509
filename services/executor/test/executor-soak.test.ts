import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { executorV1 } from '@cordon/proto';
import { python, RunStatus, startExecutor, type ExecutorUnderTest } from './executor-harness.js';

const RUNS = 500;
const CONCURRENCY = 8;

let executor: ExecutorUnderTest;

beforeAll(async () => {
  executor = await startExecutor();
});

afterAll(async () => {
  await executor.stop();
});

function openDescriptors(pid: number | undefined): number {
  return readdirSync(`/proc/${pid ?? 0}/fd`).length;
}

function residentBytes(pid: number | undefined): number {
  const line = readFileSync(`/proc/${pid ?? 0}/status`, 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith('VmRSS:'));
  return Number(line?.split(/\s+/)[1] ?? 0) * 1024;
}

/** Starts a long run and cancels it once its first output arrives. */
function cancelledRun(): Promise<executorV1.RunStatus | 'cancelled'> {
  return new Promise((resolve) => {
    const call = executor.client.execute(
      executorV1.ExecuteRequest.fromPartial(
        python('import time\nprint("go", flush=True)\ntime.sleep(30)'),
      ),
    );
    call.once('data', () => call.cancel());
    call.on('error', () => resolve('cancelled'));
    call.on('end', () => resolve('cancelled'));
  });
}

const KINDS = [
  { name: 'ok', expected: RunStatus.RUN_STATUS_OK, request: python('print("ok")') },
  {
    name: 'timeout',
    expected: RunStatus.RUN_STATUS_WALL_TIMEOUT,
    request: python('import time\ntime.sleep(5)', { limits: { wallTimeMs: 300 } }),
  },
  {
    name: 'oom',
    expected: RunStatus.RUN_STATUS_MEMORY_LIMIT,
    request: python('a = []\nwhile True:\n    a.append(bytearray(4 << 20))', {
      limits: { memoryBytes: 32 * 1024 ** 2 },
    }),
  },
  {
    name: 'fork bomb',
    expected: RunStatus.RUN_STATUS_WALL_TIMEOUT,
    request: python(
      'import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass',
      {
        limits: { maxProcesses: 16, wallTimeMs: 800 },
      },
    ),
  },
] as const;

describe('soak', () => {
  it('runs 500 mixed runs at concurrency 8 and returns to where it started', async () => {
    // Warm up at the same concurrency, so pooled connections to Docker exist before the baseline.
    await Promise.all(Array.from({ length: CONCURRENCY }, () => executor.run(python('print(1)'))));
    const pid = executor.process.child.pid;
    const descriptorsBefore = openDescriptors(pid);
    const rssBefore = residentBytes(pid);

    const outcomes = new Map<string, number>();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < RUNS) {
        const index = next;
        next += 1;
        if (index % 5 === 4) {
          const result = await cancelledRun();
          outcomes.set(`cancel:${result}`, (outcomes.get(`cancel:${result}`) ?? 0) + 1);
          continue;
        }
        const kind = KINDS[index % 5] ?? KINDS[0];
        const result = await executor.run(kind.request);
        const key = `${kind.name}:${result.exited?.status === kind.expected ? 'expected' : `got ${String(result.exited?.status ?? result.error?.details)}`}`;
        outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    await new Promise((resolve) => setTimeout(resolve, 2000));

    expect(Object.fromEntries(outcomes)).toEqual({
      'ok:expected': 100,
      'timeout:expected': 100,
      'oom:expected': 100,
      'fork bomb:expected': 100,
      'cancel:cancelled': 100,
    });
    expect(await executor.leftoverRunContainers()).toEqual([]);
    expect(openDescriptors(pid)).toBeLessThanOrEqual(descriptorsBefore + 4);
    expect(residentBytes(pid) - rssBefore).toBeLessThan(64 * 1024 ** 2);
  }, 600_000);
});

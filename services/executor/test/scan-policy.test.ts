import { fileURLToPath } from 'node:url';
import { status, type ServiceError } from '@grpc/grpc-js';
import { commonV1, executorV1 } from '@cordon/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startListeningService,
  type ServiceProcess,
} from '../../../test/support/service-process.js';
import {
  containersCreatedSince,
  python,
  RunStatus,
  startExecutor,
  type ExecutorUnderTest,
} from './executor-harness.js';

const SCANNER_MAIN = fileURLToPath(new URL('../../scanner/dist/main.js', import.meta.url));
/** Nothing listens on port 1, so a scanner there is unreachable. */
const NO_SCANNER = '127.0.0.1:1';

const DANGEROUS = python(
  'import subprocess, sys\nsubprocess.call("echo " + sys.argv[0], shell=True)\nprint("ran")',
);
const CLEAN = python('print("clean")');

let scanner: ServiceProcess & { port: number };
const executors: ExecutorUnderTest[] = [];

beforeAll(async () => {
  scanner = await startListeningService(SCANNER_MAIN, [], {
    CORDON_SCANNER_ADDRESS: '127.0.0.1:0',
  });
});

afterAll(async () => {
  for (const executor of executors) await executor.stop();
  scanner.child.kill('SIGTERM');
  await scanner.exited;
});

async function executorWithPolicy(policy: string, scannerAddress?: string) {
  const executor = await startExecutor({
    CORDON_SCAN_POLICY: policy,
    CORDON_SCANNER_ADDRESS: scannerAddress ?? `127.0.0.1:${scanner.port}`,
    CORDON_WARM_POOL_SIZE: '0',
  });
  executors.push(executor);
  return executor;
}

function errorDetails(error: ServiceError | undefined): commonV1.ErrorDetails | undefined {
  const bytes = error?.metadata.get('cordon-error-details-bin')[0];
  return bytes instanceof Buffer ? commonV1.ErrorDetails.decode(bytes) : undefined;
}

/** Runs a request and also keeps the scan event, which the harness does not collect. */
async function runWithScan(
  executor: ExecutorUnderTest,
  request: Partial<executorV1.ExecuteRequest>,
) {
  let scan: executorV1.ScanReported | undefined;
  let firstEvent: string | undefined;
  const call = executor.client.execute(executorV1.ExecuteRequest.fromPartial(request));
  call.on('data', (response: executorV1.ExecuteResponse) => {
    firstEvent ??= response.event?.$case;
    if (response.event?.$case === 'scan') scan = response.event.value;
  });
  await new Promise((resolve) => call.on('close', resolve).on('error', resolve));
  return { scan, firstEvent };
}

describe('scan policy block:HIGH', () => {
  it('refuses a run with a high finding before any container exists', async () => {
    const executor = await executorWithPolicy('block:HIGH');
    const since = Date.now();

    const result = await executor.run(DANGEROUS);

    expect(result.error?.code).toBe(status.FAILED_PRECONDITION);
    expect(result.error?.details).toBe(
      'the scan policy block:HIGH blocked this run: 1 finding(s) at or above HIGH; no sandbox was started',
    );
    const findings = errorDetails(result.error)?.findings ?? [];
    expect(findings.map((finding) => [finding.ruleId, finding.file, finding.startLine])).toEqual([
      ['command.shell-injection', 'main.py', 2],
    ]);
    expect(result.started).toBeUndefined();
    expect(containersCreatedSince(executor.executorId, since)).toBe(0);
  });

  it('runs clean code without a scan event', async () => {
    const executor = await executorWithPolicy('block:HIGH');

    const result = await executor.run(CLEAN);
    const { firstEvent } = await runWithScan(executor, CLEAN);

    expect(result.stdout.toString()).toBe('clean\n');
    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_OK);
    expect(firstEvent).toBe('started');
  });

  it('lets a finding below the threshold run', async () => {
    const executor = await executorWithPolicy('block:CRITICAL');

    const result = await executor.run(
      python('import hashlib\nprint(hashlib.md5(b"x").hexdigest()[:4])'),
    );

    expect(result.stdout.toString()).toBe('9dd4\n');
    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_OK);
  });

  it('fails closed with UNAVAILABLE when the scanner cannot be reached', async () => {
    const executor = await executorWithPolicy('block:HIGH', NO_SCANNER);
    const since = Date.now();

    const result = await executor.run(CLEAN);

    expect(result.error?.code).toBe(status.UNAVAILABLE);
    expect(result.error?.details).toBe(
      'the scanner could not be reached, and the scan policy block:HIGH runs nothing unscanned; no sandbox was started',
    );
    expect(containersCreatedSince(executor.executorId, since)).toBe(0);
  });

  it('refuses files the scanner will not take', async () => {
    const executor = await executorWithPolicy('block:HIGH');
    const big = `x = 1\n${'# padding\n'.repeat(110_000)}`;

    const result = await executor.run(python(big));

    expect(result.error?.code).toBe(status.FAILED_PRECONDITION);
    expect(result.error?.details).toMatch(
      /^the scanner refused the files: .*main\.py.*, and the scan policy block:HIGH runs nothing unscanned; no sandbox was started$/,
    );
  });
});

describe('scan policy report', () => {
  it('sends the findings before the run starts, then runs', async () => {
    const executor = await executorWithPolicy('report');

    const { scan, firstEvent } = await runWithScan(executor, DANGEROUS);

    expect(firstEvent).toBe('scan');
    expect(scan?.skipped).toBe(false);
    expect(scan?.report?.findings.map((finding) => finding.ruleId)).toEqual([
      'command.shell-injection',
    ]);
    expect(scan?.report?.counts?.critical).toBe(1);
  });

  it('runs and says the scan was skipped when the scanner cannot be reached', async () => {
    const executor = await executorWithPolicy('report', NO_SCANNER);

    const { scan } = await runWithScan(executor, CLEAN);
    const result = await executor.run(CLEAN);

    expect(scan?.skipped).toBe(true);
    expect(scan?.skippedReason).toBe('the scanner could not be reached');
    expect(result.stdout.toString()).toBe('clean\n');
  });
});

import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import {
  credentials,
  InterceptingCall,
  Metadata,
  type Interceptor,
  type ServiceError,
} from '@grpc/grpc-js';
import { executorV1 } from '@cordon/proto';
import {
  killLeftoverProcesses,
  startListeningService,
  type ServiceProcess,
} from '../../../test/support/service-process.js';
import { tokenInterceptor } from '../../../test/support/test-tokens.js';
import { checkHealthDetails } from '../../../test/support/grpc-probes.js';

export const { RunStatus, RunPhase, OutputStream } = executorV1;

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

/** Agent id of the harness's calls. */
export const TEST_AGENT_ID = 'agent-test';
/** Deadline the harness gives calls that set none, because Execute requires one. */
export const TEST_DEADLINE_MS = 300_000;

/** Gives a call without a deadline the harness's default deadline. */
const defaultDeadline: Interceptor = (options, nextCall) =>
  new InterceptingCall(
    nextCall({ ...options, deadline: options.deadline ?? Date.now() + TEST_DEADLINE_MS }),
  );

/**
 * Client options that make a plain executor client call as the test agent,
 * with a deadline when the test sets none.
 */
export function testClientOptions(): { interceptors: Interceptor[] } {
  return { interceptors: [tokenInterceptor(TEST_AGENT_ID), defaultDeadline] };
}

/** OCI runtime the suites run under: runc, or runsc when CORDON_TEST_DOCKER_RUNTIME is runsc. */
export const TEST_RUNTIME =
  process.env['CORDON_TEST_DOCKER_RUNTIME'] === 'runsc' ? 'runsc' : 'runc';

/** Sandbox driver the suites run under: docker, or bubblewrap when CORDON_TEST_SANDBOX_DRIVER is process. */
export const TEST_DRIVER =
  process.env['CORDON_TEST_SANDBOX_DRIVER'] === 'process' ? 'process' : 'docker';

/** The isolation RunStarted reports under the suite's driver and runtime. */
export const TEST_ISOLATION =
  TEST_DRIVER === 'process' ? 'process/bubblewrap' : `docker/${TEST_RUNTIME}`;

/**
 * Warm sandboxes per runtime in the suites: the product default of 2, or
 * CORDON_TEST_WARM_POOL_SIZE, so CI runs the behaviour suites with the pool on and off.
 */
export const TEST_WARM_POOL_SIZE = process.env['CORDON_TEST_WARM_POOL_SIZE'] ?? '2';

/** How long a finished run's container may take to be removed in the background. */
const REMOVAL_GRACE_MS = 10_000;

export interface RunResult {
  started: executorV1.RunStarted | undefined;
  exited: executorV1.RunExited | undefined;
  error: ServiceError | undefined;
  stdout: Buffer;
  stderr: Buffer;
  compileStdout: Buffer;
  compileStderr: Buffer;
  /** Milliseconds from RunStarted to the first output chunk, if any arrived. */
  firstOutputMs: number | undefined;
  /** Milliseconds from RunStarted to RunExited. */
  exitedMs: number | undefined;
}

export interface ExecutorUnderTest {
  readonly process: ServiceProcess & { port: number };
  readonly executorId: string;
  readonly client: executorV1.ExecutorServiceClient;
  run(request: Partial<executorV1.ExecuteRequest>, options?: RunOptions): Promise<RunResult>;
  /** Ids of containers of this executor that still exist, warm ones included. */
  containers(): string[];
  /** Ids of containers a run has had that still exist after the removal grace time; [] when all are gone. */
  leftoverRunContainers(): Promise<string[]>;
  stop(): Promise<void>;
}

/** Starts a real executor process on a free loopback port, labelled with a fresh executor id. */
export async function startExecutor(env: Record<string, string> = {}): Promise<ExecutorUnderTest> {
  const executorId = `test-${randomUUID()}`;
  const service = await startListeningService(MAIN, [], {
    CORDON_EXECUTOR_ADDRESS: '127.0.0.1:0',
    CORDON_EXECUTOR_ID: executorId,
    CORDON_DOCKER_RUNTIME: TEST_RUNTIME,
    CORDON_SANDBOX_DRIVER: TEST_DRIVER,
    CORDON_EXECUTOR_AUDIT: 'off',
    CORDON_WARM_POOL_SIZE: TEST_WARM_POOL_SIZE,
    // These suites test the sandbox; the scan policy and per-agent limits have suites of their own.
    CORDON_SCAN_POLICY: 'off',
    CORDON_EXECUTOR_RUNS_PER_MINUTE: '100000',
    CORDON_EXECUTOR_CONCURRENT_RUNS_PER_AGENT: '10000',
    ...env,
  });
  const client = new executorV1.ExecutorServiceClient(
    `127.0.0.1:${service.port}`,
    credentials.createInsecure(),
    {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      ...testClientOptions(),
    },
  );

  const listContainers = (): { id: string; name: string }[] => {
    if (TEST_DRIVER === 'process') {
      // The process driver's analogue of a container is a run's cgroup; every suite shares the parent.
      const parent = '/sys/fs/cgroup/pids/cordon';
      return existsSync(parent)
        ? readdirSync(parent, { withFileTypes: true })
            .filter((entry) => entry.isDirectory())
            .map((entry) => ({ id: entry.name, name: entry.name }))
        : [];
    }
    const output = execFileSync(
      'docker',
      [
        'ps',
        '-a',
        '--filter',
        `label=cordon.executor-id=${executorId}`,
        '--format',
        '{{.ID}} {{.Names}}',
      ],
      { encoding: 'utf8' },
    );
    return output
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => {
        const [id = '', name = ''] = line.split(' ');
        return { id, name };
      });
  };
  const containers = (): string[] => listContainers().map((container) => container.id);
  // A warm sandbox is renamed after the run it is given, so the name tells idle ones apart.
  const runContainers = (): string[] =>
    listContainers()
      .filter((container) => !container.name.startsWith('cordon-warm-'))
      .map((container) => container.id);

  return {
    process: service,
    executorId,
    client,
    run: (request, options) => runProgram(client, request, options),
    containers,
    leftoverRunContainers: async () => {
      const deadline = Date.now() + REMOVAL_GRACE_MS;
      while (runContainers().length > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return runContainers();
    },
    stop: async () => {
      client.close();
      await killLeftoverProcesses();
      for (const id of containers()) {
        execFileSync('docker', ['rm', '-f', id]);
      }
    },
  };
}

export interface RunOptions {
  metadata?: Metadata;
  /** Called with every output chunk as it arrives. */
  onOutput?: (data: Buffer) => void;
  /** False to drop output after onOutput, for runs that print more than a test should hold. */
  keepOutput?: boolean;
}

/** Returns the warm pool depth an executor's health check reports, e.g. "python 2/2, javascript 1/1". */
export async function poolDepth(executor: ExecutorUnderTest): Promise<string | undefined> {
  const health = await checkHealthDetails(`127.0.0.1:${executor.process.port}`);
  return health.trailers['cordon-warm-pool'];
}

/** Waits up to 20 s until the executor's warm pool reports `depth`. */
export async function waitForDepth(executor: ExecutorUnderTest, depth: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  let seen: string | undefined;
  while (Date.now() < deadline) {
    seen = await poolDepth(executor);
    if (seen === depth) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the warm pool did not reach "${depth}" within 20 s; last seen "${seen}"`);
}

/** Runs one request and collects everything the stream delivered. */
export function runProgram(
  client: executorV1.ExecutorServiceClient,
  request: Partial<executorV1.ExecuteRequest>,
  options: RunOptions = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    const result: RunResult = {
      started: undefined,
      exited: undefined,
      error: undefined,
      stdout: Buffer.alloc(0),
      stderr: Buffer.alloc(0),
      compileStdout: Buffer.alloc(0),
      compileStderr: Buffer.alloc(0),
      firstOutputMs: undefined,
      exitedMs: undefined,
    };
    let startedAt = 0;
    const chunks: Record<'stdout' | 'stderr' | 'compileStdout' | 'compileStderr', Buffer[]> = {
      stdout: [],
      stderr: [],
      compileStdout: [],
      compileStderr: [],
    };
    const finish = (): void => {
      for (const key of ['stdout', 'stderr', 'compileStdout', 'compileStderr'] as const) {
        result[key] = Buffer.concat(chunks[key]);
      }
      resolve(result);
    };
    const call = client.execute(
      executorV1.ExecuteRequest.fromPartial(request),
      options.metadata ?? new Metadata(),
    );
    call.on('data', (response: executorV1.ExecuteResponse) => {
      const event = response.event;
      if (event?.$case === 'started') {
        startedAt = performance.now();
        result.started = event.value;
      } else if (event?.$case === 'output') {
        result.firstOutputMs ??= performance.now() - startedAt;
        const { stream, phase, data } = event.value;
        const key =
          phase === RunPhase.RUN_PHASE_COMPILE
            ? stream === OutputStream.OUTPUT_STREAM_STDOUT
              ? 'compileStdout'
              : 'compileStderr'
            : stream === OutputStream.OUTPUT_STREAM_STDOUT
              ? 'stdout'
              : 'stderr';
        options.onOutput?.(data);
        if (options.keepOutput !== false) chunks[key].push(data);
      } else if (event?.$case === 'exited') {
        result.exitedMs = performance.now() - startedAt;
        result.exited = event.value;
      }
    });
    call.on('error', (error: ServiceError) => {
      result.error = error;
      finish();
    });
    call.on('end', finish);
  });
}

/** Builds a request that runs one Python file. */
export function python(
  code: string,
  extra: Partial<executorV1.ExecuteRequest> = {},
): Partial<executorV1.ExecuteRequest> {
  return { runtime: 'python', files: [{ path: 'main.py', content: Buffer.from(code) }], ...extra };
}

/**
 * Counts container create events of one executor's runs since a moment, to
 * prove a request created nothing; warm sandboxes refilling the pool do not count.
 */
export function containersCreatedSince(executorId: string, sinceMs: number): number {
  const output = execFileSync(
    'docker',
    [
      'events',
      '--since',
      (sinceMs / 1000).toFixed(3),
      '--until',
      (Date.now() / 1000).toFixed(3),
      '--filter',
      `label=cordon.executor-id=${executorId}`,
      '--filter',
      'event=create',
      '--format',
      '{{.Actor.Attributes.name}}',
    ],
    { encoding: 'utf8' },
  );
  return output.split('\n').filter((name) => name !== '' && !name.startsWith('cordon-warm-'))
    .length;
}

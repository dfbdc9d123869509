import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { executorV1 } from '@cordon/proto';
import {
  killLeftoverProcesses,
  startListeningService,
  type ServiceProcess,
} from '../../../test/support/service-process.js';

export const { RunStatus, RunPhase, OutputStream } = executorV1;

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

/** OCI runtime the suites run under: runc, or runsc when CORDON_TEST_DOCKER_RUNTIME is runsc. */
export const TEST_RUNTIME =
  process.env['CORDON_TEST_DOCKER_RUNTIME'] === 'runsc' ? 'runsc' : 'runc';

/** Sandbox driver the suites run under: docker, or bubblewrap when CORDON_TEST_SANDBOX_DRIVER is process. */
export const TEST_DRIVER =
  process.env['CORDON_TEST_SANDBOX_DRIVER'] === 'process' ? 'process' : 'docker';

/** The isolation RunStarted reports under the suite's driver and runtime. */
export const TEST_ISOLATION =
  TEST_DRIVER === 'process' ? 'process/bubblewrap' : `docker/${TEST_RUNTIME}`;

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
  /** Ids of containers of this executor that still exist. */
  containers(): string[];
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
    ...env,
  });
  const client = new executorV1.ExecutorServiceClient(
    `127.0.0.1:${service.port}`,
    credentials.createInsecure(),
    {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    },
  );

  const containers = (): string[] => {
    if (TEST_DRIVER === 'process') {
      // The process driver's analogue of a container is a run's cgroup; every suite shares the parent.
      const parent = '/sys/fs/cgroup/pids/cordon';
      return existsSync(parent)
        ? readdirSync(parent, { withFileTypes: true })
            .filter((entry) => entry.isDirectory())
            .map((entry) => entry.name)
        : [];
    }
    const output = execFileSync(
      'docker',
      ['ps', '-aq', '--filter', `label=cordon.executor-id=${executorId}`],
      {
        encoding: 'utf8',
      },
    );
    return output.split('\n').filter((line) => line !== '');
  };

  return {
    process: service,
    executorId,
    client,
    run: (request, options) => runProgram(client, request, options),
    containers,
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

/** Counts container create events of one executor since a moment, to prove nothing was created. */
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
      '{{.ID}}',
    ],
    { encoding: 'utf8' },
  );
  return output.split('\n').filter((line) => line !== '').length;
}

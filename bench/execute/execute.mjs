// Measures hello world end to end through the executor's gRPC API, with the
// warm pool on and off. The baselines are bare `docker run --rm` of the same
// image with the same isolation flags, and the interpreter on the host. All
// paths run interleaved in the same run, so machine noise hits them alike.
//
// Usage: node bench/execute/execute.mjs [runs]   (default 30 per path and
// runtime; needs the images and a running Docker engine, as after
// scripts/setup-host). The executors run with auditing and the scan policy
// off, so the figures are the executor's own. Auditing adds one local gRPC
// call at each end of a run, and a scan adds one more before the start.
import { execFile, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata } from '@grpc/grpc-js';
import { executorV1 } from '@cordon/proto';
import { createToken } from '@cordon/service-kit';
import { ms, printTable, quantile } from '../support/stats.mjs';

const runs = Number(process.argv[2] ?? '30');
const CONCURRENCY = 8;
const THROUGHPUT_RUNS = 48;
const executorMain = fileURLToPath(
  new URL('../../services/executor/dist/main.js', import.meta.url),
);
const execFileAsync = promisify(execFile);

// The executors verify tokens signed with a key of this run.
const keyFolder = mkdtempSync(join(tmpdir(), 'cordon-bench-'));
const keyFile = join(keyFolder, 'token.key');
writeFileSync(keyFile, randomBytes(32).toString('base64url'), { mode: 0o600 });
const metadata = new Metadata();
metadata.set(
  'authorization',
  `Bearer ${await createToken({ agentId: 'bench', role: 'agent', ttl: '1h', keyFile })}`,
);

const RUNTIMES = {
  python: {
    image: 'cordon-sandbox-python:latest',
    file: 'main.py',
    code: 'print("hello")',
    dockerCommand: ['python3', '-c', 'print("hello")'],
    host: ['/usr/bin/python3', ['-c', 'print("hello")']],
    hostName: 'python3 on the host',
  },
  javascript: {
    image: 'cordon-sandbox-javascript:latest',
    file: 'main.js',
    code: 'console.log("hello")',
    dockerCommand: ['node', '-e', 'console.log("hello")'],
    host: [process.execPath, ['-e', 'console.log("hello")']],
    hostName: 'node on the host',
  },
};

// The flags the executor gives every sandbox at its default limits.
const dockerFlags = [
  'run',
  '--rm',
  '-i',
  '--network',
  'none',
  '--read-only',
  '--tmpfs',
  '/work:rw,nosuid,nodev,noexec,size=67108864,uid=10001,gid=10001,mode=0700',
  '--tmpfs',
  '/tmp:rw,nosuid,nodev,noexec,size=67108864,mode=1777',
  '--user',
  '10001:10001',
  '--workdir',
  '/work',
  '--cap-drop',
  'ALL',
  '--security-opt',
  'no-new-privileges',
  '--pids-limit',
  '66',
  '--memory',
  '256m',
  '--memory-swap',
  '256m',
  '--cpus',
  '1',
  '--ulimit',
  'nofile=256:256',
  '--ulimit',
  'fsize=67108864:67108864',
  '--ulimit',
  'cpu=11:12',
  '--ulimit',
  'core=0:0',
  '--log-driver',
  'none',
  '--ipc',
  'private',
  '--oom-score-adj',
  '1000',
];

function startExecutor(poolSize) {
  const child = spawn(
    process.execPath,
    ['--import', '@cordon/service-kit/register', executorMain],
    {
      env: {
        PATH: process.env.PATH,
        CORDON_EXECUTOR_ADDRESS: '127.0.0.1:0',
        CORDON_EXECUTOR_AUDIT: 'off',
        CORDON_SCAN_POLICY: 'off',
        CORDON_TOKEN_KEY_FILE: keyFile,
        CORDON_EXECUTOR_RUNS_PER_MINUTE: '100000',
        CORDON_EXECUTOR_CONCURRENT_RUNS_PER_AGENT: '1000',
        CORDON_WARM_POOL_SIZE: `${poolSize},java=0`,
        CORDON_LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const entry = JSON.parse(line);
      if (entry.msg === 'service started') {
        const client = new executorV1.ExecutorServiceClient(
          `127.0.0.1:${entry.port}`,
          credentials.createInsecure(),
        );
        resolve({ child, client });
      }
    });
    child.once('exit', (exitCode) => reject(new Error(`executor exited with ${exitCode}`)));
  });
}

/** Runs one hello through Execute; resolves with the milliseconds until the call ended, and the start path. */
function execute(client, runtime) {
  const spec = RUNTIMES[runtime];
  const started = performance.now();
  return new Promise((resolve, reject) => {
    let stdout = '';
    let startPath;
    const call = client.execute(
      executorV1.ExecuteRequest.fromPartial({
        runtime,
        files: [{ path: spec.file, content: Buffer.from(spec.code) }],
      }),
      metadata,
      { deadline: Date.now() + 60_000 },
    );
    call.on('data', (response) => {
      const event = response.event;
      if (event?.$case === 'started') startPath = event.value.startPath;
      if (event?.$case === 'output') stdout += event.value.data.toString();
    });
    call.on('error', reject);
    call.on('end', () => {
      if (stdout !== 'hello\n') reject(new Error(`unexpected output ${JSON.stringify(stdout)}`));
      resolve({ elapsedMs: performance.now() - started, startPath });
    });
  });
}

async function dockerRun(runtime) {
  const spec = RUNTIMES[runtime];
  const started = performance.now();
  const { stdout } = await execFileAsync('docker', [
    ...dockerFlags,
    spec.image,
    ...spec.dockerCommand,
  ]);
  if (stdout !== 'hello\n') throw new Error(`unexpected output ${JSON.stringify(stdout)}`);
  return performance.now() - started;
}

async function onHost(runtime) {
  const [command, args] = RUNTIMES[runtime].host;
  const started = performance.now();
  await execFileAsync(command, args);
  return performance.now() - started;
}

/** Waits until a warm executor's runs start warm again, so light-load samples measure the warm path. */
async function settle(client, runtime) {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const probe = await execute(client, runtime);
    if (probe.startPath === executorV1.StartPath.START_PATH_WARM) return;
  }
  throw new Error('the warm pool never refilled');
}

/** Runs `total` jobs, `CONCURRENCY` at a time; returns runs per second. */
async function throughput(job) {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < THROUGHPUT_RUNS) {
        next += 1;
        await job();
      }
    }),
  );
  return THROUGHPUT_RUNS / ((performance.now() - started) / 1000);
}

const warm = await startExecutor(CONCURRENCY);
const cold = await startExecutor(0);
try {
  for (const runtime of Object.keys(RUNTIMES)) {
    for (let warmup = 0; warmup < 3; warmup += 1) {
      await settle(warm.client, runtime);
      await execute(cold.client, runtime);
      await dockerRun(runtime);
    }
    const samples = { warm: [], cold: [], docker: [], host: [] };
    let coldStartsInWarm = 0;
    for (let run = 0; run < runs; run += 1) {
      await new Promise((resolve) => setTimeout(resolve, 150));
      const warmRun = await execute(warm.client, runtime);
      if (warmRun.startPath !== executorV1.StartPath.START_PATH_WARM) coldStartsInWarm += 1;
      samples.warm.push(warmRun.elapsedMs);
      samples.cold.push((await execute(cold.client, runtime)).elapsedMs);
      samples.docker.push(await dockerRun(runtime));
      samples.host.push(await onHost(runtime));
    }

    await settle(warm.client, runtime);
    const rates = {
      warm: await throughput(() => execute(warm.client, runtime)),
      cold: await throughput(() => execute(cold.client, runtime)),
      docker: await throughput(() => dockerRun(runtime)),
    };

    const dockerMedian = quantile(samples.docker, 0.5);
    const rows = {
      'cordon Execute, warm pool': ['warm', samples.warm],
      'cordon Execute, pool off (cold)': ['cold', samples.cold],
      'docker run --rm, same image and flags': ['docker', samples.docker],
      [RUNTIMES[runtime].hostName]: ['host', samples.host],
    };
    process.stdout.write(
      `\n${runtime} hello: ${runs} runs per path, interleaved, one at a time` +
        ` (${coldStartsInWarm} of the warm executor's runs found the pool empty);` +
        ` then ${THROUGHPUT_RUNS} runs at concurrency ${CONCURRENCY}\n`,
    );
    printTable([
      [
        'path',
        'median',
        'p90',
        'median / docker run',
        `runs/s at c=${CONCURRENCY}`,
        'rate / docker run',
      ],
      ...Object.entries(rows).map(([name, [key, values]]) => [
        name,
        ms(quantile(values, 0.5)),
        ms(quantile(values, 0.9)),
        (quantile(values, 0.5) / dockerMedian).toFixed(2),
        rates[key] === undefined ? '-' : rates[key].toFixed(1),
        rates[key] === undefined ? '-' : (rates[key] / rates.docker).toFixed(2),
      ]),
    ]);
  }
} finally {
  warm.client.close();
  cold.client.close();
  warm.child.kill('SIGTERM');
  cold.child.kill('SIGTERM');
  rmSync(keyFolder, { recursive: true, force: true });
}

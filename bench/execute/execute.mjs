// Python hello end to end through the executor's gRPC API, against bare
// `docker run --rm` of the same image with the same isolation flags, measured
// in the same run and interleaved so machine noise hits both alike.
//
// Usage: node bench/execute/execute.mjs [runs]   (default 30; needs the images
// and a running Docker engine, as after scripts/setup-host)
import { execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { credentials } from '@grpc/grpc-js';
import { executorV1 } from '@cordon/proto';
import { ms, printTable, quantile } from '../support/stats.mjs';

const runs = Number(process.argv[2] ?? '30');
const executorMain = fileURLToPath(
  new URL('../../services/executor/dist/main.js', import.meta.url),
);
const image = 'cordon-sandbox-python:latest';
const code = 'print("hello")';

// The flags the executor gives every sandbox at its default limits.
const dockerArgs = [
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
  image,
  'python3',
  '-c',
  code,
];

function startExecutor() {
  const child = spawn(
    process.execPath,
    ['--import', '@cordon/service-kit/register', executorMain],
    {
      env: {
        PATH: process.env.PATH,
        CORDON_EXECUTOR_ADDRESS: '127.0.0.1:0',
        CORDON_LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const entry = JSON.parse(line);
      if (entry.msg === 'service started') resolve({ child, port: entry.port });
    });
    child.once('exit', (exitCode) => reject(new Error(`executor exited with ${exitCode}`)));
  });
}

function runThroughExecutor(client) {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    let stdout = '';
    const call = client.execute(
      executorV1.ExecuteRequest.fromPartial({
        runtime: 'python',
        files: [{ path: 'main.py', content: Buffer.from(code) }],
      }),
    );
    call.on('data', (response) => {
      if (response.event?.$case === 'output') stdout += response.event.value.data.toString();
    });
    call.on('error', reject);
    call.on('end', () => {
      if (stdout !== 'hello\n') reject(new Error(`unexpected output ${JSON.stringify(stdout)}`));
      resolve(performance.now() - started);
    });
  });
}

function runDockerDirectly() {
  const started = performance.now();
  const stdout = execFileSync('docker', dockerArgs, { encoding: 'utf8', input: '' });
  if (stdout !== 'hello\n') throw new Error(`unexpected output ${JSON.stringify(stdout)}`);
  return performance.now() - started;
}

// Debian's interpreter, not a version manager's shim that would add its own start-up.
const hostPython = '/usr/bin/python3';

function runOnHost() {
  const started = performance.now();
  execFileSync(hostPython, ['-c', code]);
  return performance.now() - started;
}

const { child, port } = await startExecutor();
const client = new executorV1.ExecutorServiceClient(
  `127.0.0.1:${port}`,
  credentials.createInsecure(),
);
try {
  for (let warmup = 0; warmup < 3; warmup += 1) {
    await runThroughExecutor(client);
    runDockerDirectly();
  }
  const samples = { cordon: [], docker: [], host: [] };
  for (let run = 0; run < runs; run += 1) {
    samples.cordon.push(await runThroughExecutor(client));
    samples.docker.push(runDockerDirectly());
    samples.host.push(runOnHost());
  }

  const dockerMedian = quantile(samples.docker, 0.5);
  process.stdout.write(`Python hello, ${runs} runs each, interleaved, one at a time\n`);
  printTable([
    ['path', 'median', 'p90', 'median / docker run'],
    ...Object.entries({
      'cordon Execute (gRPC, cold container)': samples.cordon,
      'docker run --rm, same image and flags': samples.docker,
      'python3 on the host': samples.host,
    }).map(([name, values]) => [
      name,
      ms(quantile(values, 0.5)),
      ms(quantile(values, 0.9)),
      (quantile(values, 0.5) / dockerMedian).toFixed(2),
    ]),
  ]);
} finally {
  client.close();
  child.kill('SIGTERM');
}

// Measures Put and Get through the memory service's gRPC API at concurrency
// 1 and 32, and redis-benchmark SET and GET against the same Redis in the
// same run, with the same value size and key space. The Redis is a
// redis-server of the benchmark's own on a free loopback port, persisting
// with appendonly yes and appendfsync everysec as deploy/redis/redis.conf
// does. The gRPC client runs in this process, on the same cores as the
// service and Redis; redis-benchmark is a separate C process. A second
// baseline, a MemoryService whose handlers do nothing (noop-memory-service.mjs)
// served by the same kit, shows what the gRPC layer alone costs.
//
// Usage: node bench/memory/put-get.mjs [--seconds 2] [--rounds 1] [--value-bytes 100]
// Needs `npx tsc -b services/memory` first (it starts services/memory/dist/main.js).
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { credentials, Metadata } from '@grpc/grpc-js';
import { memoryV1 } from '@cordon/proto';
import { createTokenKeyFile, readTokenKey, signBearerToken } from '@cordon/service-kit';
import { printTable, quantile } from '../support/stats.mjs';

const MEMORY_MAIN = fileURLToPath(new URL('../../services/memory/dist/main.js', import.meta.url));
const NOOP_MAIN = fileURLToPath(new URL('./noop-memory-service.mjs', import.meta.url));
const KEY_SPACE = 1000;
const CONCURRENCIES = [1, 32];
const AGENT_ID = 'bench-agent';
/** The key h2load writes and reads: it sends one request body over and over. */
const H2LOAD_KEY = 'h2load';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '1' },
    'value-bytes': { type: 'string', default: '100' },
  },
});
const seconds = Number(args.seconds);
const rounds = Number(args.rounds);
const valueBytes = Number(args['value-bytes']);

/** Creates the mesh's token key and signs the benchmark agent's bearer token with it. */
async function createSecurity(dir) {
  const keyFile = join(dir, 'token.key');
  createTokenKeyFile(keyFile);
  const agentToken = await signBearerToken(readTokenKey(keyFile), AGENT_ID, 'agent', 3_600_000);
  return { keyFile, agentToken };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function progress(text) {
  process.stderr.write(`${text}\n`);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function startRedis(dir) {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
      '--save',
      '',
      '--logfile',
      join(dir, 'redis.log'),
    ],
    { stdio: 'ignore' },
  );
  for (let attempt = 0; attempt < 100; attempt += 1) {
    try {
      execFileSync('redis-cli', ['-p', String(port), 'ping'], { stdio: 'pipe' });
      return { child, port };
    } catch {
      await sleep(50);
    }
  }
  throw new Error('redis-server did not start');
}

/**
 * Starts a service script as `npm start` does, with stdout discarded (it
 * still writes its one log line per call), and connects a client to it.
 */
async function startService(script, env, security) {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', '@cordon/service-kit/register', script], {
    env: {
      PATH: process.env.PATH,
      CORDON_MEMORY_ADDRESS: `127.0.0.1:${port}`,
      CORDON_TOKEN_KEY_FILE: security.keyFile,
      ...env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const client = new memoryV1.MemoryServiceClient(
    `127.0.0.1:${port}`,
    credentials.createInsecure(),
  );
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${security.agentToken}`);
  // The channel retries its connection until the service listens.
  await new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${script} exited with code ${code}`)));
    client.waitForReady(Date.now() + 20_000, (error) =>
      error === undefined || error === null
        ? resolve()
        : reject(new Error(`${script} did not start: ${error.message}`)),
    );
  }).catch((error) => {
    client.close();
    child.kill('SIGKILL');
    throw error;
  });
  return { child, client, metadata, port };
}

function stopService(service) {
  service?.client.close();
  service?.child.kill('SIGTERM');
}

function call(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + 5_000 }, (error, response) =>
      error === null ? resolve(response) : reject(error),
    );
  });
}

/** Runs `concurrency` loops of one operation for the given time and returns ops/s and latencies in ms. */
async function measureGrpc(service, operation, concurrency, durationMs) {
  const value = Buffer.alloc(valueBytes, 'v');
  const latencies = [];
  const endAt = performance.now() + durationMs;
  let sequence = 0;
  const worker = async () => {
    while (performance.now() < endAt) {
      const key = `k${sequence++ % KEY_SPACE}`;
      const request =
        operation === 'put'
          ? memoryV1.PutRequest.fromPartial({ namespace: 'bench', key, value })
          : memoryV1.GetRequest.fromPartial({ namespace: 'bench', key });
      const startedAt = performance.now();
      await call(service.client, operation, request, service.metadata);
      latencies.push(performance.now() - startedAt);
    }
  };
  const startedAt = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsedS = (performance.now() - startedAt) / 1000;
  return {
    opsPerSecond: latencies.length / elapsedS,
    meanMs: latencies.reduce((sum, latency) => sum + latency, 0) / latencies.length,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
  };
}

/** True when h2load (Debian package nghttp2-client) is on the PATH. */
function hasH2load() {
  try {
    execFileSync('h2load', ['--version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

/** Frames a gRPC message as it travels in HTTP/2 DATA: flag byte, 4-byte length, message. */
function grpcFrame(message) {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, Buffer.from(message)]);
}

/**
 * Sends the same Put or Get request `requests` times with h2load, a C
 * HTTP/2 load generator, over `concurrency` connections with one stream
 * each, as redis-benchmark uses `concurrency` connections. h2load does not
 * parse gRPC, so it counts every HTTP 200 as done, and a gRPC error is an
 * HTTP 200 without a response message. Returns ops/s, the mean latency in
 * ms, and the bytes of response messages, which the caller checks.
 */
function measureH2load(service, operation, concurrency, requests, dir) {
  const message =
    operation === 'put'
      ? memoryV1.PutRequest.encode(h2loadPut()).finish()
      : memoryV1.GetRequest.encode(h2loadGet()).finish();
  const bodyFile = join(dir, `${operation}.grpc`);
  writeFileSync(bodyFile, grpcFrame(message));
  const method = operation === 'put' ? 'Put' : 'Get';
  const output = execFileSync(
    'h2load',
    [
      '-n',
      String(requests),
      '-c',
      String(concurrency),
      '-m',
      '1',
      '-d',
      bodyFile,
      '-H',
      'content-type: application/grpc',
      '-H',
      'te: trailers',
      '-H',
      `authorization: ${service.metadata.get('authorization')[0]}`,
      `http://127.0.0.1:${service.port}/cordon.v1.MemoryService/${method}`,
    ],
    { encoding: 'utf8' },
  );
  const number = (pattern) => {
    const match = pattern.exec(output);
    if (match === null) {
      throw new Error(`h2load printed no ${pattern}: ${output}`);
    }
    return Number(match[1]);
  };
  const succeeded = number(/(\d+) succeeded/);
  if (succeeded !== requests) {
    throw new Error(`h2load: only ${succeeded} of ${requests} requests succeeded:\n${output}`);
  }
  const meanMatch = /time for request:\s+\S+\s+\S+\s+(\d+(?:\.\d+)?)(us|ms)/.exec(output);
  return {
    opsPerSecond: number(/([\d.]+) req\/s/),
    meanMs: meanMatch === null ? NaN : Number(meanMatch[1]) / (meanMatch[2] === 'us' ? 1000 : 1),
    dataBytes: number(/\((\d+)\) data/),
  };
}

/**
 * Runs h2load and checks that every request got a response message, so that
 * no gRPC error counts as an operation. Get responses of the unchanged key
 * all have one size. A Put returns a version whose size grows, so
 * Puts are checked by versions instead: they come from one counter per
 * agent, so a Put just before and one just after h2load must be
 * `requests + 1` apart.
 */
async function measureH2loadChecked(service, operation, concurrency, requests, dir) {
  const probe = operation === 'put' ? 'put' : 'get';
  const probeRequest = operation === 'put' ? h2loadPut() : h2loadGet();
  const before = await call(service.client, probe, probeRequest, service.metadata);
  const result = measureH2load(service, operation, concurrency, requests, dir);

  if (operation === 'get') {
    const expectedBytes = requests * grpcFrame(memoryV1.GetResponse.encode(before).finish()).length;
    if (result.dataBytes !== expectedBytes) {
      throw new Error(
        `h2load Get: ${result.dataBytes} bytes of responses, expected ${expectedBytes}; some calls failed`,
      );
    }
    return result;
  }
  const after = await call(service.client, probe, probeRequest, service.metadata);
  // The no-op service returns version 1 for every Put.
  const stored = after.version - before.version - 1;
  if (after.version !== 1 && stored !== requests) {
    throw new Error(`h2load Put: ${stored} of ${requests} Puts were stored; some calls failed`);
  }
  return result;
}

function h2loadPut() {
  return memoryV1.PutRequest.fromPartial({
    namespace: 'bench',
    key: H2LOAD_KEY,
    value: Buffer.alloc(valueBytes, 'v'),
  });
}

function h2loadGet() {
  return memoryV1.GetRequest.fromPartial({ namespace: 'bench', key: H2LOAD_KEY });
}

/** Runs redis-benchmark SET and GET and returns its own ops/s, p50 and p99 per command. */
function measureRedis(port, concurrency, requests) {
  const output = execFileSync(
    'redis-benchmark',
    [
      '-p',
      String(port),
      '-t',
      'set,get',
      '-n',
      String(requests),
      '-c',
      String(concurrency),
      '-d',
      String(valueBytes),
      '-r',
      String(KEY_SPACE),
      '--csv',
    ],
    { encoding: 'utf8' },
  );
  const results = {};
  for (const line of output.trim().split('\n').slice(1)) {
    const cells = line.split(',').map((cell) => cell.replaceAll('"', ''));
    results[cells[0]] = {
      opsPerSecond: Number(cells[1]),
      meanMs: Number(cells[2]),
      p50: Number(cells[4]),
      p99: Number(cells[6]),
    };
  }
  return results;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function combine(samples) {
  return {
    opsPerSecond: median(samples.map((sample) => sample.opsPerSecond)),
    meanMs: median(samples.map((sample) => sample.meanMs)),
    p50: median(samples.map((sample) => sample.p50 ?? NaN)),
    p99: median(samples.map((sample) => sample.p99 ?? NaN)),
  };
}

const dir = mkdtempSync(join(tmpdir(), 'cordon-memory-bench-'));
let redis;
let memory;
let noop;
try {
  redis = await startRedis(dir);
  progress(`redis-server on port ${redis.port}; starting the memory service and the no-op service`);
  const security = await createSecurity(dir);
  memory = await startService(
    MEMORY_MAIN,
    { CORDON_MEMORY_REDIS_URL: `redis://127.0.0.1:${redis.port}/0` },
    security,
  );
  noop = await startService(NOOP_MAIN, {}, security);
  await measureGrpc(memory, 'put', 8, 1000);
  await measureGrpc(noop, 'put', 8, 1000);
  const h2load = hasH2load();
  if (h2load) {
    // The Put before the first Get makes the key exist.
    await call(memory.client, 'put', h2loadPut(), memory.metadata);
  } else {
    progress(
      'h2load not found (apt-get install nghttp2-client): measuring with the Node.js client only',
    );
  }

  const samples = {};
  const add = (name, result) => (samples[name] ??= []).push(result);
  for (let round = 0; round < rounds; round += 1) {
    for (const concurrency of CONCURRENCIES) {
      progress(`round ${round + 1}: concurrency ${concurrency}`);
      for (const operation of ['put', 'get']) {
        add(
          `memory ${operation}/${concurrency}`,
          await measureGrpc(memory, operation, concurrency, seconds * 1000),
        );
        add(
          `noop ${operation}/${concurrency}`,
          await measureGrpc(noop, operation, concurrency, seconds * 1000),
        );
        if (h2load) {
          const requests = (concurrency === 1 ? 2_000 : 8_000) * seconds;
          add(
            `memory h2load ${operation}/${concurrency}`,
            await measureH2loadChecked(memory, operation, concurrency, requests, dir),
          );
          add(
            `noop h2load ${operation}/${concurrency}`,
            await measureH2loadChecked(noop, operation, concurrency, requests, dir),
          );
        }
      }
      const redisResults = measureRedis(
        redis.port,
        concurrency,
        concurrency === 1 ? 20_000 : 200_000,
      );
      add(`SET/${concurrency}`, redisResults.SET);
      add(`GET/${concurrency}`, redisResults.GET);
    }
  }

  const results = Object.fromEntries(
    Object.entries(samples).map(([name, list]) => [name, combine(list)]),
  );
  const rows = [
    [
      'operation',
      'client',
      'concurrency',
      'ops/s',
      'mean ms',
      'p50 ms',
      'p99 ms',
      'share of Redis',
    ],
  ];
  const row = (label, client, concurrency, result, redisResult) => [
    label,
    client,
    concurrency,
    Math.round(result.opsPerSecond),
    result.meanMs.toFixed(3),
    Number.isNaN(result.p50) ? '' : result.p50.toFixed(3),
    Number.isNaN(result.p99) ? '' : result.p99.toFixed(3),
    redisResult === undefined
      ? ''
      : `${((100 * result.opsPerSecond) / redisResult.opsPerSecond).toFixed(1)}%`,
  ];
  for (const concurrency of CONCURRENCIES) {
    for (const [operation, command] of [
      ['put', 'SET'],
      ['get', 'GET'],
    ]) {
      const raw = results[`${command}/${concurrency}`];
      const label = operation === 'put' ? 'Put' : 'Get';
      for (const [service, name] of [
        ['memory', 'memory service'],
        ['noop', 'no-op service'],
      ]) {
        rows.push(
          row(
            `${label} (${name})`,
            'grpc-js',
            concurrency,
            results[`${service} ${operation}/${concurrency}`],
            raw,
          ),
        );
        const viaH2load = results[`${service} h2load ${operation}/${concurrency}`];
        if (viaH2load !== undefined) {
          rows.push(row(`${label} (${name})`, 'h2load', concurrency, viaH2load, raw));
        }
      }
      rows.push(row(command, 'redis-benchmark', concurrency, raw));
    }
  }
  process.stdout.write(
    `memory Put/Get vs redis-benchmark: ${valueBytes}-byte values, ${KEY_SPACE} keys, ${seconds} s per gRPC run, ${rounds} round(s), medians\n`,
  );
  printTable(rows);

  const p50Put = results['memory put/1'].p50;
  const p50Get = results['memory get/1'].p50;
  // The throughput target is judged on the C client when there is one, as
  // redis-benchmark is a C client: the Node.js client costs more CPU per call
  // than the service does, on the same two cores.
  const throughputClient = h2load ? 'memory h2load' : 'memory';
  const sharePut =
    results[`${throughputClient} put/32`].opsPerSecond / results['SET/32'].opsPerSecond;
  const shareGet =
    results[`${throughputClient} get/32`].opsPerSecond / results['GET/32'].opsPerSecond;
  process.stdout.write(
    `target p50 < 1 ms at concurrency 1: Put ${p50Put.toFixed(3)} ms, Get ${p50Get.toFixed(3)} ms: ${p50Put < 1 && p50Get < 1 ? 'met' : 'missed'}\n` +
      `target >= 25% of Redis ops/s at concurrency 32 (${h2load ? 'h2load' : 'grpc-js'} client): Put ${(100 * sharePut).toFixed(1)}%, Get ${(100 * shareGet).toFixed(1)}%: ${sharePut >= 0.25 && shareGet >= 0.25 ? 'met' : 'missed'}\n`,
  );
} finally {
  stopService(memory);
  stopService(noop);
  redis?.child.kill('SIGTERM');
  await sleep(300);
  rmSync(dir, { recursive: true, force: true });
}

// Measures durable appends per second through the audit service's gRPC API,
// with one writer and with eight concurrent writers, both with unary Append
// calls and over AppendStream (one stream per writer, with one event or a
// window of STREAM_WINDOW events unacknowledged at a time). The baseline is raw
// better-sqlite3 inserts with the same durability: WAL, synchronous FULL and
// one commit per acknowledged row. A second baseline, noop-service.mjs, is
// the same API served by the service kit with handlers that do nothing, so
// the kit's own cost per call shows apart from the audit service's. It also times Verify over 100 000 records
// against reading and hashing the same rows in-process. Baseline and service
// rounds alternate so machine noise hits both alike, and the medians are
// printed with their ratios.
//
// Usage: node bench/audit/append.mjs [--seconds 3] [--rounds 3] [--verify-records 100000]
// Needs `npx tsc -b` first (it starts services/audit/dist/main.js).
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { connect } from 'node:http2';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { credentials, Metadata } from '@grpc/grpc-js';
import { auditV1 } from '@cordon/proto';
import { createTokenKeyFile, readTokenKey, signBearerToken } from '@cordon/service-kit';

const auditDist = new URL('../../services/audit/dist/', import.meta.url);
const AUDIT_MAIN = fileURLToPath(new URL('main.js', auditDist));
const NOOP_MAIN = fileURLToPath(new URL('noop-service.mjs', import.meta.url));
const WRITERS = 8;
/** Events an AppendStream writer keeps sent and unacknowledged in the windowed rows. */
const STREAM_WINDOW = 64;
const TOKEN_TTL_MS = 3_600_000;

/**
 * The mesh key the benchmark's services verify tokens with, and the bearer
 * tokens of the two callers the benchmark plays: a service that appends and
 * an auditor that verifies. Set once in main().
 */
const security = { keyFile: '', serviceToken: '', auditorToken: '' };

async function createSecurity(dir) {
  security.keyFile = join(dir, 'token.key');
  createTokenKeyFile(security.keyFile);
  const key = readTokenKey(security.keyFile);
  security.serviceToken = await signBearerToken(key, 'bench-executor', 'service', TOKEN_TTL_MS);
  security.auditorToken = await signBearerToken(key, 'bench-auditor', 'auditor', TOKEN_TTL_MS);
}

function bearer(token) {
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

/** Builds a typical execution.started event: eight attributes, no files, no output. */
function sampleEvent() {
  const int = (value) => ({ value: { $case: 'intValue', value } });
  const text = (value) => ({ value: { $case: 'stringValue', value } });
  return auditV1.AuditEvent.fromPartial({
    id: randomUUID(),
    service: 'executor',
    agentId: 'agent-bench',
    action: 'execution.started',
    outcome: auditV1.AuditOutcome.AUDIT_OUTCOME_SUCCESS,
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: '00f067aa0ba902b7',
    runId: randomUUID(),
    codeSha256: 'a'.repeat(64),
    attributes: {
      runtime: text('python-3.11'),
      isolation: text('runc'),
      'image.digest': text(`sha256:${'b'.repeat(64)}`),
      'limits.wall_time_ms': int(10_000),
      'limits.cpu_time_ms': int(10_000),
      'limits.memory_bytes': int(268_435_456),
      'limits.max_processes': int(64),
      'limits.max_output_bytes': int(1_048_576),
    },
    occurredTime: new Date(),
  });
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function openDurable(path) {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 10000');
  return db;
}

const BASELINE_TABLE =
  'CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, event_json TEXT NOT NULL, hash TEXT NOT NULL)';

/** One raw writer: autocommit inserts (one fsync each) until the deadline; returns the count. */
function rawInsertLoop(path, deadline) {
  const db = openDurable(path);
  const insert = db.prepare('INSERT INTO records (event_json, hash) VALUES (?, ?)');
  let count = 0;
  while (Date.now() < deadline) {
    const json = JSON.stringify(auditV1.AuditEvent.toJSON(sampleEvent()));
    insert.run(json, createHash('sha256').update(json).digest('hex'));
    count += 1;
  }
  db.close();
  return count;
}

async function rawBaseline(dir, writers, seconds) {
  const path = join(dir, `raw-${randomUUID()}.db`);
  const db = openDurable(path);
  db.exec(BASELINE_TABLE);
  db.close();
  const deadline = Date.now() + seconds * 1000;
  if (writers === 1) {
    return rawInsertLoop(path, deadline) / seconds;
  }
  const counts = await Promise.all(
    Array.from(
      { length: writers },
      () =>
        new Promise((resolve, reject) => {
          const worker = new Worker(new URL(import.meta.url), { workerData: { path, deadline } });
          worker.once('message', resolve);
          worker.once('error', reject);
        }),
    ),
  );
  return counts.reduce((sum, count) => sum + count, 0) / seconds;
}

/**
 * Starts a service script on a free loopback port and resolves with its
 * port and process. Its log goes to a file, as in production, so that the
 * benchmark does not spend its own CPU reading one JSON line per call.
 */
async function startService(script, dbPath) {
  const logPath = `${dbPath}.log`;
  const child = spawn(process.execPath, ['--import', '@cordon/service-kit/register', script], {
    env: {
      PATH: process.env.PATH,
      CORDON_AUDIT_ADDRESS: '127.0.0.1:0',
      CORDON_AUDIT_DB_PATH: dbPath,
      CORDON_TOKEN_KEY_FILE: security.keyFile,
    },
    stdio: ['ignore', openSync(logPath, 'w'), 'inherit'],
  });
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`${script} exited with ${child.exitCode}`);
    }
    const started = readFileSync(logPath, 'utf8')
      .split('\n')
      .filter((line) => line.includes('"service started"'))
      .map((line) => JSON.parse(line))[0];
    if (started !== undefined) {
      return { child, port: started.port };
    }
    await sleep(20);
  }
  child.kill('SIGKILL');
  throw new Error(`${script} did not log "service started" within 20 s`);
}

async function stopService(service) {
  const exited = new Promise((resolve) => service.child.once('exit', resolve));
  service.child.kill('SIGTERM');
  await exited;
}

function appendOnce(client, metadata) {
  return new Promise((resolve, reject) => {
    client.append(sampleRequest(), metadata, (error) =>
      error === null ? resolve() : reject(error),
    );
  });
}

/** Makes `count` clients of the service, each with its own connection. */
function connectClients(port, count) {
  return Array.from(
    { length: count },
    () =>
      new auditV1.AuditServiceClient(`127.0.0.1:${port}`, credentials.createInsecure(), {
        'grpc.use_local_subchannel_pool': 1,
      }),
  );
}

/** Appends through a service with `writers` concurrent loops, each on its own connection. */
async function serviceAppends(script, dir, writers, seconds) {
  const service = await startService(script, join(dir, `service-${randomUUID()}.db`));
  const metadata = bearer(security.serviceToken);
  const clients = connectClients(service.port, writers);
  await Promise.all(clients.map((client) => appendOnce(client, metadata)));

  const deadline = Date.now() + seconds * 1000;
  const counts = await Promise.all(
    clients.map(async (client) => {
      let count = 0;
      while (Date.now() < deadline) {
        await appendOnce(client, metadata);
        count += 1;
      }
      return count;
    }),
  );
  clients.forEach((client) => client.close());
  await stopService(service);
  return counts.reduce((sum, count) => sum + count, 0) / seconds;
}

/**
 * Opens an AppendStream whose writer keeps up to `window` events sent and
 * unacknowledged: each acknowledgement lets the next event go.
 */
function openStreamWriter(client, metadata) {
  const call = client.appendStream(metadata);
  let acknowledged = 0;
  let onAck = () => undefined;
  call.on('data', () => {
    acknowledged += 1;
    onAck();
  });
  const ended = new Promise((resolve, reject) => {
    call.on('error', reject);
    call.on('status', (status) => {
      if (status.code === 0) resolve();
    });
  });
  // Awaited in close(); a failure before then must not go unhandled meanwhile.
  ended.catch(() => undefined);

  return {
    /** Sends one event and resolves on its acknowledgement: the stream is open and the token verified. */
    warmUp: () =>
      new Promise((resolve) => {
        onAck = resolve;
        call.write(sampleRequest());
      }),
    /** Writes until the deadline and resolves with the acknowledgements that arrived before it. */
    run: (window, deadline) =>
      new Promise((resolve) => {
        let sent = acknowledged;
        let counted = 0;
        const fill = () => {
          if (Date.now() >= deadline) {
            onAck = () => undefined;
            resolve(counted);
            return;
          }
          while (sent - acknowledged < window) {
            call.write(sampleRequest());
            sent += 1;
          }
        };
        onAck = () => {
          if (Date.now() < deadline) counted += 1;
          fill();
        };
        fill();
      }),
    close: async () => {
      call.end();
      await ended;
    },
  };
}

/** Appends over AppendStream with `writers` streams, each on its own connection, `window` events in flight each. */
async function streamAppends(script, dir, writers, window, seconds) {
  const service = await startService(script, join(dir, `stream-${randomUUID()}.db`));
  const metadata = bearer(security.serviceToken);
  const clients = connectClients(service.port, writers);
  const streams = clients.map((client) => openStreamWriter(client, metadata));
  await Promise.all(streams.map((stream) => stream.warmUp()));

  const deadline = Date.now() + seconds * 1000;
  const counts = await Promise.all(streams.map((stream) => stream.run(window, deadline)));
  await Promise.all(streams.map((stream) => stream.close()));
  clients.forEach((client) => client.close());
  await stopService(service);
  return counts.reduce((sum, count) => sum + count, 0) / seconds;
}

/** Frames a gRPC message as it travels in HTTP/2 DATA: flag byte, 4-byte length, message. */
function grpcFrame(message) {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, Buffer.from(message)]);
}

/**
 * Sends one Append over a bare HTTP/2 stream: the same bytes and headers a
 * gRPC client sends, without grpc-js's client stack. Rejects unless the
 * trailers (or a trailers-only response) carry grpc-status 0.
 */
function appendOverHttp2(session, token) {
  const body = grpcFrame(auditV1.AppendRequest.encode(sampleRequest()).finish());
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ':method': 'POST',
      ':path': auditV1.AuditServiceService.append.path,
      'content-type': 'application/grpc',
      te: 'trailers',
      authorization: `Bearer ${token}`,
    });
    let grpcStatus;
    const readStatus = (headers) => {
      grpcStatus ??= headers['grpc-status'];
    };
    stream.on('response', readStatus);
    stream.on('trailers', readStatus);
    stream.on('data', () => undefined);
    stream.on('error', reject);
    stream.on('close', () => {
      if (grpcStatus === '0') {
        resolve();
      } else {
        reject(new Error(`Append over HTTP/2 ended with grpc-status ${grpcStatus}`));
      }
    });
    stream.end(body);
  });
}

/**
 * Appends with `writers` concurrent loops, each on its own HTTP/2
 * connection, through the bare client above. It shows the service's rate
 * apart from grpc-js's client, which costs the client process more CPU and
 * latency per call than the service spends on it.
 */
async function serviceAppendsHttp2(script, dir, writers, seconds) {
  const service = await startService(script, join(dir, `service-${randomUUID()}.db`));
  const sessions = await Promise.all(
    Array.from(
      { length: writers },
      () =>
        new Promise((resolve, reject) => {
          const session = connect(`http://127.0.0.1:${service.port}`);
          session.once('connect', () => resolve(session));
          session.once('error', reject);
        }),
    ),
  );
  await Promise.all(sessions.map((session) => appendOverHttp2(session, security.serviceToken)));

  const deadline = Date.now() + seconds * 1000;
  const counts = await Promise.all(
    sessions.map(async (session) => {
      let count = 0;
      while (Date.now() < deadline) {
        await appendOverHttp2(session, security.serviceToken);
        count += 1;
      }
      return count;
    }),
  );
  sessions.forEach((session) => session.close());
  await stopService(service);
  return counts.reduce((sum, count) => sum + count, 0) / seconds;
}

const STORE_OPTIONS = {
  outputBytes: 65_536,
  maxExcerptBytes: 1_048_576,
  maxFilesBytes: 8_388_608,
  maxFiles: 1000,
  queryDefaultLimit: 100,
  queryMaxLimit: 1000,
};

function sampleRequest() {
  return auditV1.AppendRequest.fromPartial({ event: sampleEvent() });
}

/**
 * Appends through the service's own store path without gRPC: validation,
 * group commit and the writing connection, with `writers` concurrent loops. It
 * shows what the storage design allows apart from the cost of a call.
 */
async function storePathAppends(dir, writers, seconds) {
  const audit = await import(new URL('index.js', auditDist).href);
  const path = join(dir, `store-${randomUUID()}.db`);
  audit.AuditStore.open(path).close();
  const commit = new audit.GroupCommit(audit.StoreWriter.open(path));
  const options = { ...STORE_OPTIONS, databasePath: path };

  const deadline = Date.now() + seconds * 1000;
  const counts = await Promise.all(
    Array.from({ length: writers }, async () => {
      let count = 0;
      while (Date.now() < deadline) {
        await commit.append(audit.prepareAppend(sampleRequest(), options, undefined));
        count += 1;
      }
      return count;
    }),
  );
  await commit.close();
  return counts.reduce((sum, count) => sum + count, 0) / seconds;
}

/** Fills a store with `records` chained records through the service's own store code. */
async function fillStore(dbPath, records) {
  const { AuditStore, prepareAppend } = await import(new URL('index.js', auditDist).href);
  const options = { ...STORE_OPTIONS, databasePath: dbPath };
  const store = AuditStore.open(dbPath);
  for (let done = 0; done < records; done += 1000) {
    const batch = Array.from({ length: Math.min(1000, records - done) }, () =>
      prepareAppend(sampleRequest(), options, undefined),
    );
    store.appendBatch(batch);
  }
  store.close();
}

function verifyOnce(client, metadata) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    client.verify({ fromSeq: 0, toSeq: 0 }, metadata, (error, response) =>
      error === null ? resolve({ ms: performance.now() - started, response }) : reject(error),
    );
  });
}

/** Reads the same rows and hashes each once, in-process: the floor under any Verify. */
function readAndHash(dbPath) {
  const started = performance.now();
  const db = new Database(dbPath, { readonly: true });
  const rows = db.prepare('SELECT seq, time_ms, event_json, prev_hash FROM records ORDER BY seq');
  for (const row of rows.iterate()) {
    createHash('sha256')
      .update(
        `{"event":${row.event_json},"prev_hash":"${row.prev_hash}","seq":${row.seq},"time":"${new Date(row.time_ms).toISOString()}"}`,
      )
      .digest('hex');
  }
  db.close();
  return performance.now() - started;
}

/** Times Verify over `records` records through the service, and the in-process floor, `rounds` times. */
async function measureVerify(dir, records, rounds) {
  const dbPath = join(dir, 'verify.db');
  await fillStore(dbPath, records);
  const service = await startService(AUDIT_MAIN, dbPath);
  const client = new auditV1.AuditServiceClient(
    `127.0.0.1:${service.port}`,
    credentials.createInsecure(),
  );
  const auditor = bearer(security.auditorToken);

  const verifyMs = [];
  const floorMs = [];
  for (let round = 1; round <= rounds; round += 1) {
    const { ms, response } = await verifyOnce(client, auditor);
    if (!response.ok || response.recordsChecked !== records) {
      throw new Error(`Verify returned ${JSON.stringify(response)}`);
    }
    verifyMs.push(ms);
    floorMs.push(readAndHash(dbPath));
  }
  client.close();
  await stopService(service);
  return { verifyMs: median(verifyMs), floorMs: median(floorMs) };
}

function printRow(label, value, unit, baselines) {
  const cells = baselines.map(
    ([name, baseline]) =>
      `${name} ${baseline.toFixed(0).padStart(6)} ${unit} (ratio ${(value / baseline).toFixed(2)})`,
  );
  process.stdout.write(
    `${label.padEnd(42)} ${value.toFixed(0).padStart(6)} ${unit}   ${cells.join('   ')}\n`,
  );
}

async function main() {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '3' },
      rounds: { type: 'string', default: '3' },
      'verify-records': { type: 'string', default: '100000' },
    },
  });
  const seconds = Number(values.seconds);
  const rounds = Number(values.rounds);
  const verifyRecords = Number(values['verify-records']);
  const dir = mkdtempSync(join(tmpdir(), 'cordon-audit-bench-'));
  await createSecurity(dir);

  try {
    const results = new Map();
    const record = (key, value) => results.set(key, [...(results.get(key) ?? []), value]);
    for (let round = 1; round <= rounds; round += 1) {
      for (const writers of [1, WRITERS]) {
        record(`raw ${writers}`, await rawBaseline(dir, writers, seconds));
        record(`kit ${writers}`, await serviceAppends(NOOP_MAIN, dir, writers, seconds));
        record(`audit ${writers}`, await serviceAppends(AUDIT_MAIN, dir, writers, seconds));
        record(`kit http2 ${writers}`, await serviceAppendsHttp2(NOOP_MAIN, dir, writers, seconds));
        record(
          `audit http2 ${writers}`,
          await serviceAppendsHttp2(AUDIT_MAIN, dir, writers, seconds),
        );
        record(`store ${writers}`, await storePathAppends(dir, writers, seconds));
        if (writers === 1) {
          record('stream seq 1', await streamAppends(AUDIT_MAIN, dir, 1, 1, seconds));
        }
        record(
          `kit stream ${writers}`,
          await streamAppends(NOOP_MAIN, dir, writers, STREAM_WINDOW, seconds),
        );
        record(
          `stream ${writers}`,
          await streamAppends(AUDIT_MAIN, dir, writers, STREAM_WINDOW, seconds),
        );
      }
      const line = [...results].map(([key, list]) => `${key} ${list.at(-1).toFixed(0)}/s`);
      process.stdout.write(`round ${round}: ${line.join(', ')}\n`);
    }
    const verify = await measureVerify(dir, verifyRecords, rounds);

    process.stdout.write(
      `\nmedians of ${rounds} rounds of ${seconds} s; client and services share the machine's cores\n`,
    );
    for (const writers of [1, WRITERS]) {
      printRow(
        `durable appends, ${writers} writer${writers > 1 ? 's' : ''}`,
        median(results.get(`audit ${writers}`)),
        '/s',
        [
          ['raw SQLite', median(results.get(`raw ${writers}`))],
          ['kit no-op', median(results.get(`kit ${writers}`))],
          ['store path', median(results.get(`store ${writers}`))],
        ],
      );
    }
    for (const writers of [1, WRITERS]) {
      printRow(`  same, bare HTTP/2 client`, median(results.get(`audit http2 ${writers}`)), '/s', [
        ['kit no-op', median(results.get(`kit http2 ${writers}`))],
      ]);
    }
    printRow('AppendStream, 1 writer, 1 in flight', median(results.get('stream seq 1')), '/s', [
      ['unary, 1 writer', median(results.get('audit 1'))],
    ]);
    for (const writers of [1, WRITERS]) {
      printRow(
        `AppendStream, ${writers} writer${writers > 1 ? 's' : ''}, ${STREAM_WINDOW} in flight`,
        median(results.get(`stream ${writers}`)),
        '/s',
        [
          [
            `unary, ${writers} writer${writers > 1 ? 's' : ''}`,
            median(results.get(`audit ${writers}`)),
          ],
          ['kit no-op stream', median(results.get(`kit stream ${writers}`))],
          ['store path', median(results.get(`store ${writers}`))],
        ],
      );
    }
    printRow(`Verify of ${verifyRecords} records`, verify.verifyMs, 'ms', [
      ['read and hash in-process', verify.floorMs],
    ]);
    process.stdout.write(
      `AppendStream rows: one stream per writer, each on its own connection; ${STREAM_WINDOW} in flight is the window of unacknowledged events per stream\n`,
    );
    process.stdout.write('targets: >= 2000 appends/s; Verify of 100000 records < 2000 ms\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// Worker threads of the raw baseline run this same file.
if (!isMainThread) {
  parentPort.postMessage(rawInsertLoop(workerData.path, workerData.deadline));
} else {
  await main();
}

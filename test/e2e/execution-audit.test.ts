import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, type Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { auditV1, executorV1 } from '@cordon/proto';
import {
  killLeftoverProcesses,
  startListeningService,
  type ServiceProcess,
} from '../support/service-process.js';
import { agentMetadata, bearerMetadata } from '../support/test-tokens.js';

const AUDIT_MAIN = fileURLToPath(new URL('../../services/audit/dist/main.js', import.meta.url));
const EXECUTOR_MAIN = fileURLToPath(
  new URL('../../services/executor/dist/main.js', import.meta.url),
);

const folders: string[] = [];
const clients: { close(): void }[] = [];
const executors: ServiceProcess[] = [];
let executorId = '';

afterEach(async () => {
  clients.splice(0).forEach((client) => client.close());
  // A graceful stop removes the executor's warm sandboxes; a killed one would leave them.
  for (const executor of executors.splice(0)) {
    executor.child.kill('SIGTERM');
    await executor.exited;
  }
  await killLeftoverProcesses();
  const leftovers = execFileSync(
    'docker',
    ['ps', '-aq', '--filter', `label=cordon.executor-id=${executorId}`],
    {
      encoding: 'utf8',
    },
  ).trim();
  if (leftovers !== '') execFileSync('docker', ['rm', '-f', ...leftovers.split('\n')]);
  folders.splice(0).forEach((folder) => rmSync(folder, { recursive: true, force: true }));
  expect(leftovers, 'containers left behind').toBe('');
});

interface Mesh {
  folder: string;
  audit: ServiceProcess & { port: number };
  executor: ServiceProcess & { port: number };
  traceFile: string;
}

async function startAudit(folder: string, port = 0): Promise<ServiceProcess & { port: number }> {
  return startListeningService(AUDIT_MAIN, [], {
    CORDON_AUDIT_ADDRESS: `127.0.0.1:${port}`,
    CORDON_AUDIT_DB_PATH: join(folder, 'audit.db'),
    CORDON_TRACE_FILE: join(folder, 'spans.jsonl'),
  });
}

async function startMesh(): Promise<Mesh> {
  const folder = mkdtempSync(join(tmpdir(), 'cordon-e2e-'));
  folders.push(folder);
  const audit = await startAudit(folder);
  executorId = `test-${randomUUID()}`;
  const executor = await startListeningService(EXECUTOR_MAIN, [], {
    CORDON_EXECUTOR_ADDRESS: '127.0.0.1:0',
    CORDON_EXECUTOR_ID: executorId,
    CORDON_AUDIT_ADDRESS: `127.0.0.1:${audit.port}`,
    CORDON_EXECUTOR_SPOOL_DIR: join(folder, 'spool'),
    CORDON_TRACE_FILE: join(folder, 'spans.jsonl'),
  });
  executors.push(executor);
  return { folder, audit, executor, traceFile: join(folder, 'spans.jsonl') };
}

interface Run {
  started?: executorV1.RunStarted;
  exited?: executorV1.RunExited;
  stdout: string;
  error?: ServiceError;
}

function execute(port: number, code: string, onOutput?: () => void): Promise<Run> {
  const client = new executorV1.ExecutorServiceClient(
    `127.0.0.1:${port}`,
    credentials.createInsecure(),
  );
  clients.push(client);
  const metadata = agentMetadata('agent-e2e');
  return new Promise((resolve) => {
    const run: Run = { stdout: '' };
    client
      .execute(
        executorV1.ExecuteRequest.fromPartial({
          runtime: 'python',
          files: [{ path: 'main.py', content: Buffer.from(code) }],
          clientRequestId: 'e2e-1',
        }),
        metadata,
        { deadline: Date.now() + 120_000 },
      )
      .on('data', (response: executorV1.ExecuteResponse) => {
        const event = response.event;
        if (event?.$case === 'started') run.started = event.value;
        if (event?.$case === 'output') {
          run.stdout += event.value.data.toString();
          onOutput?.();
        }
        if (event?.$case === 'exited') run.exited = event.value;
      })
      .on('error', (error: ServiceError) => {
        run.error = error;
        resolve(run);
      })
      .on('end', () => resolve(run));
  });
}

function auditorMetadata(): Metadata {
  return bearerMetadata('auditor-e2e', 'auditor');
}

function queryRun(port: number, runId: string): Promise<auditV1.AuditRecord[]> {
  const client = new auditV1.AuditServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
  clients.push(client);
  return new Promise((resolve, reject) => {
    const records: auditV1.AuditRecord[] = [];
    client
      .query(auditV1.QueryRequest.fromPartial({ runId }), auditorMetadata())
      .on('data', (response: auditV1.QueryResponse) => {
        if (response.record !== undefined) records.push(response.record);
      })
      .on('error', reject)
      .on('end', () => resolve(records));
  });
}

function unary<Response>(
  call: (callback: (error: ServiceError | null, value: Response) => void) => void,
): Promise<Response> {
  return new Promise((resolve, reject) =>
    call((error, value) => (error === null ? resolve(value) : reject(error))),
  );
}

async function waitFor<T>(
  read: () => Promise<T> | T,
  done: (value: T) => boolean,
  timeoutMs: number,
): Promise<T> {
  const startedAt = Date.now();
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() - startedAt > timeoutMs) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function attribute(record: auditV1.AuditRecord | undefined, name: string): unknown {
  return record?.event?.attributes[name]?.value?.value;
}

describe('execution audit trail', () => {
  it('records start and end under the trace id the client saw', async () => {
    const mesh = await startMesh();
    const code = 'print("audited")';

    const run = await execute(mesh.executor.port, code);
    const runId = run.started?.runId ?? '';
    const records = await waitFor(
      () => queryRun(mesh.audit.port, runId),
      (found) => found.length === 2,
      5000,
    );

    expect(run.error?.details).toBeUndefined();
    expect(run.exited?.status).toBe(executorV1.RunStatus.RUN_STATUS_OK);
    expect(records.map((record) => record.event?.action)).toEqual([
      'execution.started',
      'execution.finished',
    ]);
    const [started, finished] = records;
    const traceId = run.started?.traceId;
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(started?.event?.traceId).toBe(traceId);
    expect(finished?.event?.traceId).toBe(traceId);
    expect(started?.event?.agentId).toBe('agent-e2e');
    // As `sha256sum main.py | sha256sum` prints it in a folder holding the file.
    const fileHash = createHash('sha256').update(code).digest('hex');
    expect(started?.event?.codeSha256).toBe(
      createHash('sha256').update(`${fileHash}  main.py\n`).digest('hex'),
    );
    expect(attribute(started, 'image.digest')).toBe(run.started?.image?.digest);
    expect(attribute(started, 'isolation')).toBe('docker/runc');
    expect(attribute(started, 'client_request_id')).toBe('e2e-1');
    expect(attribute(finished, 'status')).toBe('RUN_STATUS_OK');
    expect(attribute(finished, 'exit_code')).toBe(0);

    const client = new auditV1.AuditServiceClient(
      `127.0.0.1:${mesh.audit.port}`,
      credentials.createInsecure(),
    );
    clients.push(client);
    const timeline = await unary<auditV1.GetRunResponse>((callback) =>
      client.getRun(auditV1.GetRunRequest.fromPartial({ runId }), auditorMetadata(), callback),
    );
    expect(timeline.files.map((file) => [file.path, file.content.toString()])).toEqual([
      ['main.py', code],
    ]);
    expect(timeline.stdoutExcerpt.toString()).toBe('audited\n');

    const spans = await waitFor(
      () =>
        existsSync(mesh.traceFile)
          ? readFileSync(mesh.traceFile, 'utf8')
              .trim()
              .split('\n')
              .map(
                (line) =>
                  JSON.parse(line) as {
                    trace_id: string;
                    span_id: string;
                    name: string;
                    service: string;
                  },
              )
          : [],
      (found) => found.some((span) => span.service === 'cordon-audit' && span.trace_id === traceId),
      5000,
    );
    const ofRun = spans.filter((span) => span.trace_id === traceId);
    expect(new Set(ofRun.map((span) => span.service))).toEqual(
      new Set(['cordon-executor', 'cordon-audit']),
    );
    expect(ofRun.find((span) => span.name === 'audit.execution_started')?.span_id).toBe(
      started?.event?.spanId,
    );
    expect(ofRun.find((span) => span.name === 'audit.execution_finished')?.span_id).toBe(
      finished?.event?.spanId,
    );
  });

  it('does not start a run the audit service cannot record', async () => {
    const mesh = await startMesh();
    mesh.audit.child.kill('SIGKILL');
    await mesh.audit.exited;

    const run = await execute(mesh.executor.port, 'print("never")');

    expect(run.error?.code).toBe(status.UNAVAILABLE);
    expect(run.error?.details).toBe(
      'the audit service did not acknowledge the start of the run, so the run was not started; try again when it is back',
    );
    expect(run.started).toBeUndefined();
  });

  it('spools and replays a missed end', async () => {
    const mesh = await startMesh();
    let printed = false;
    const pending = execute(
      mesh.executor.port,
      'import time\nprint("begun", flush=True)\ntime.sleep(1)\nprint("ended")',
      () => {
        printed = true;
      },
    );
    await waitFor(
      () => printed,
      (value) => value,
      10_000,
    );
    mesh.audit.child.kill('SIGKILL');
    await mesh.audit.exited;

    const run = await pending;
    const spool = join(mesh.folder, 'spool');
    const spooled = readdirSync(spool).filter((name) => name.endsWith('.append'));
    const restarted = await startAudit(mesh.folder, mesh.audit.port);
    const records = await waitFor(
      () => queryRun(restarted.port, run.started?.runId ?? ''),
      (found) => found.length === 2,
      10_000,
    );
    const remaining = await waitFor(
      () => readdirSync(spool).filter((name) => name.endsWith('.append')),
      (left) => left.length === 0,
      5000,
    );
    const client = new auditV1.AuditServiceClient(
      `127.0.0.1:${restarted.port}`,
      credentials.createInsecure(),
    );
    clients.push(client);
    const verified = await unary<auditV1.VerifyResponse>((callback) =>
      client.verify(auditV1.VerifyRequest.fromPartial({}), auditorMetadata(), callback),
    );

    expect(run.stdout).toBe('begun\nended\n');
    expect(spooled).toHaveLength(1);
    expect(records.map((record) => record.event?.action)).toEqual([
      'execution.started',
      'execution.finished',
    ]);
    expect(attribute(records[1], 'status')).toBe('RUN_STATUS_OK');
    expect(remaining).toEqual([]);
    expect(verified.ok).toBe(true);
  });
});

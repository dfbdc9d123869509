import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  credentials,
  makeGenericClientConstructor,
  Metadata,
  status,
  type ChannelCredentials,
  type Client,
  type ServiceError,
} from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { auditV1, executorV1, memoryV1, scannerV1 } from '@cordon/proto';
import {
  readErrorDetails,
  readTokenKey,
  signActingForToken,
  type ServiceDefinition,
} from '@cordon/service-kit';
import {
  python,
  runProgram,
  startExecutor as startHarnessExecutor,
  type ExecutorUnderTest,
} from '../../services/executor/test/executor-harness.js';
import { startTestRedis, type TestRedis } from '../../services/memory/test/support/test-redis.js';
import {
  killLeftoverProcesses,
  startListeningService,
  startServiceProcess,
  type ServiceProcess,
} from '../support/service-process.js';
import {
  agentMetadata,
  bearerMetadata,
  mintTestToken,
  testKeyFile,
  type TestRole,
} from '../support/test-tokens.js';

const AUDIT_MAIN = fileURLToPath(new URL('../../services/audit/dist/main.js', import.meta.url));
const MEMORY_MAIN = fileURLToPath(new URL('../../services/memory/dist/main.js', import.meta.url));
const SCANNER_MAIN = fileURLToPath(new URL('../../services/scanner/dist/main.js', import.meta.url));
const DEV_CA = fileURLToPath(new URL('../../scripts/dev-ca', import.meta.url));

const folders: string[] = [];
const clients: Client[] = [];
const executors: ExecutorUnderTest[] = [];
const redisServers: TestRedis[] = [];

/** Starts an executor without warm sandboxes, so every container a test sees belongs to one of its runs. */
function startExecutor(env: Record<string, string> = {}): Promise<ExecutorUnderTest> {
  return startHarnessExecutor({ CORDON_WARM_POOL_SIZE: '0', ...env });
}

function tempFolder(): string {
  const folder = mkdtempSync(join(tmpdir(), 'cordon-identity-'));
  folders.push(folder);
  return folder;
}

async function cleanUp(): Promise<void> {
  clients.splice(0).forEach((client) => {
    client.close();
  });
  for (const executor of executors.splice(0)) {
    // Finished runs' containers are removed in the background; stopping the
    // executor in the middle of that would race its removal.
    const deadline = Date.now() + 10_000;
    while (executor.containers().length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await executor.stop();
  }
  for (const redis of redisServers.splice(0)) await redis.destroy();
  await killLeftoverProcesses();
  folders.splice(0).forEach((folder) => {
    rmSync(folder, { recursive: true, force: true });
  });
}

/** A client of any Cordon service, built from its definition so every method can be called by name. */
function clientOf(
  definition: ServiceDefinition,
  address: string,
  channel: ChannelCredentials = credentials.createInsecure(),
): Client {
  const Constructor = makeGenericClientConstructor(definition, 'test');
  const client = new Constructor(address, channel);
  clients.push(client);
  return client;
}

/**
 * Calls one method with an empty request (decoded from no bytes, so every
 * field has its default) and resolves with the error, or undefined on success.
 */
function callMethod(
  client: Client,
  definition: ServiceDefinition,
  name: string,
  metadata: Metadata,
  request?: unknown,
): Promise<ServiceError | undefined> {
  const method = definition[name];
  if (method === undefined) throw new Error(`no method ${name}`);
  const body: unknown = request ?? (method.requestDeserialize(Buffer.alloc(0)) as unknown);
  const options = { deadline: Date.now() + 20_000 };
  return new Promise((resolve) => {
    if (method.responseStream) {
      client
        .makeServerStreamRequest(
          method.path,
          method.requestSerialize,
          method.responseDeserialize,
          body,
          metadata,
          options,
        )
        .on('data', () => undefined)
        .on('error', (error: ServiceError) => resolve(error))
        .on('end', () => resolve(undefined));
    } else {
      client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        body,
        metadata,
        options,
        (error) => resolve(error ?? undefined),
      );
    }
  });
}

function withAuthorization(value: string): Metadata {
  const metadata = new Metadata();
  metadata.set('authorization', value);
  return metadata;
}

interface Mesh {
  readonly audit: ServiceProcess & { port: number };
  readonly memory: ServiceProcess & { port: number };
  readonly scanner: ServiceProcess & { port: number };
  readonly executor: ExecutorUnderTest;
  readonly auditAddress: string;
  readonly memoryAddress: string;
  readonly scannerAddress: string;
  readonly executorAddress: string;
}

async function startMesh(): Promise<Mesh> {
  const folder = tempFolder();
  const audit = await startListeningService(AUDIT_MAIN, [], {
    CORDON_AUDIT_ADDRESS: '127.0.0.1:0',
    CORDON_AUDIT_DB_PATH: join(folder, 'audit.db'),
  });
  const auditAddress = `127.0.0.1:${audit.port}`;
  const memory = await startListeningService(MEMORY_MAIN, [], {
    CORDON_MEMORY_ADDRESS: '127.0.0.1:0',
    CORDON_MEMORY_DB_PATH: join(folder, 'memory.db'),
    CORDON_AUDIT_ADDRESS: auditAddress,
  });
  const scanner = await startListeningService(SCANNER_MAIN, [], {
    CORDON_SCANNER_ADDRESS: '127.0.0.1:0',
    CORDON_AUDIT_ADDRESS: auditAddress,
  });
  const executor = await startExecutor({
    CORDON_EXECUTOR_AUDIT: 'required',
    CORDON_AUDIT_ADDRESS: auditAddress,
    CORDON_EXECUTOR_SPOOL_DIR: join(folder, 'spool'),
  });
  executors.push(executor);
  return {
    audit,
    memory,
    scanner,
    executor,
    auditAddress,
    memoryAddress: `127.0.0.1:${memory.port}`,
    scannerAddress: `127.0.0.1:${scanner.port}`,
    executorAddress: `127.0.0.1:${executor.process.port}`,
  };
}

/** Reads every auth.denied record as an auditor. */
async function deniedRecords(auditAddress: string): Promise<auditV1.AuditRecord[]> {
  const client = new auditV1.AuditServiceClient(auditAddress, credentials.createInsecure());
  clients.push(client);
  return new Promise((resolve, reject) => {
    const records: auditV1.AuditRecord[] = [];
    client
      .query(
        auditV1.QueryRequest.fromPartial({ action: 'auth.denied', limit: 1000 }),
        bearerMetadata('auditor-1', 'auditor'),
      )
      .on('data', (response: auditV1.QueryResponse) => {
        if (response.record !== undefined) records.push(response.record);
      })
      .on('error', reject)
      .on('end', () => resolve(records));
  });
}

function attribute(record: auditV1.AuditRecord, name: string): unknown {
  return record.event?.attributes[name]?.value?.value;
}

interface ServiceUnderTest {
  readonly service: 'executor' | 'memory' | 'audit' | 'scanner';
  readonly definition: ServiceDefinition;
  readonly address: (mesh: Mesh) => string;
  /** A role each method refuses; null for a method every role may call. */
  readonly wrongRole: Record<string, TestRole | null>;
}

const SERVICES: readonly ServiceUnderTest[] = [
  {
    service: 'executor',
    definition: executorV1.ExecutorServiceService,
    address: (mesh) => mesh.executorAddress,
    wrongRole: { execute: 'auditor', listRuntimes: 'auditor' },
  },
  {
    service: 'memory',
    definition: memoryV1.MemoryServiceService,
    address: (mesh) => mesh.memoryAddress,
    wrongRole: { put: 'auditor', get: 'auditor', delete: 'auditor', list: 'auditor' },
  },
  {
    service: 'audit',
    definition: auditV1.AuditServiceService,
    address: (mesh) => mesh.auditAddress,
    wrongRole: {
      append: 'agent',
      appendStream: 'agent',
      query: 'service',
      getRun: 'service',
      verify: 'agent',
      export: 'agent',
    },
  },
  {
    service: 'scanner',
    definition: scannerV1.ScannerServiceService,
    address: (mesh) => mesh.scannerAddress,
    wrongRole: { scan: 'auditor', listRules: null },
  },
];

interface AuthCase {
  readonly name: string;
  readonly code: status;
  readonly reason: string;
  /** The agent id the audit record names. */
  readonly claimed: (method: string) => string;
  readonly metadata: (wrongRole: TestRole, method: string) => Metadata;
}

/** A subject unique to a method, so each audit record can be matched to its call. */
function subjectFor(prefix: string, method: string): string {
  return `${prefix}-${method.split('/').join('-').replaceAll('.', '-')}`;
}

const AUTH_CASES: readonly AuthCase[] = [
  {
    name: 'no token',
    code: status.UNAUTHENTICATED,
    reason: 'missing-token',
    claimed: () => '',
    metadata: () => new Metadata(),
  },
  {
    name: 'a garbage token',
    code: status.UNAUTHENTICATED,
    reason: 'malformed',
    claimed: () => '',
    metadata: () => withAuthorization('Bearer not.a-jwt'),
  },
  {
    name: 'a wrong signature',
    code: status.UNAUTHENTICATED,
    reason: 'bad-signature',
    claimed: (method) => subjectFor('forger', method),
    metadata: (_role, method) =>
      withAuthorization(
        `Bearer ${mintTestToken({ subject: subjectFor('forger', method), role: 'admin', secret: randomBytes(32) })}`,
      ),
  },
  {
    name: 'an expired token',
    code: status.UNAUTHENTICATED,
    reason: 'expired',
    claimed: (method) => subjectFor('late', method),
    metadata: (_role, method) =>
      withAuthorization(
        `Bearer ${mintTestToken({ subject: subjectFor('late', method), role: 'admin', ttlSeconds: -60 })}`,
      ),
  },
  {
    name: 'a wrong role',
    code: status.PERMISSION_DENIED,
    reason: 'wrong-role',
    claimed: (method) => subjectFor('wrong', method),
    metadata: (role, method) => bearerMetadata(subjectFor('wrong', method), role),
  },
];

describe('tokens on every RPC', () => {
  let mesh: Mesh;

  beforeAll(async () => {
    mesh = await startMesh();
  });

  afterAll(cleanUp);

  it('rejects bad tokens with the right status and records each', async () => {
    const expected: { service: string; method: string; reason: string; claimed: string }[] = [];

    for (const target of SERVICES) {
      const client = clientOf(target.definition, target.address(mesh));
      for (const [name, method] of Object.entries(target.definition)) {
        const wrongRole = target.wrongRole[name];
        expect(wrongRole, `a wrong role for ${method.path}`).toBeDefined();
        const fullName = method.path.slice(1);
        for (const authCase of AUTH_CASES) {
          if (authCase.reason === 'wrong-role' && wrongRole === null) continue;
          const error = await callMethod(
            client,
            target.definition,
            name,
            authCase.metadata(wrongRole ?? 'agent', fullName),
          );
          expect(error?.code, `${fullName} with ${authCase.name}`).toBe(authCase.code);
          expect(error?.details).not.toContain('eyJ');
          expected.push({
            service: target.service,
            method: fullName,
            reason: authCase.reason,
            claimed: authCase.claimed(fullName),
          });
        }
      }
    }

    // Executor, memory and scanner send their denials in the background.
    let records: auditV1.AuditRecord[] = [];
    const deadline = Date.now() + 15_000;
    while (records.length < expected.length && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      records = await deniedRecords(mesh.auditAddress);
    }
    const found = records.map((record) => ({
      service: record.event?.service,
      method: attribute(record, 'rpc'),
      reason: attribute(record, 'reason'),
      claimed: record.event?.agentId,
    }));
    // 14 methods with five cases each, less the wrong role of ListRules, which admits every role.
    expect(expected).toHaveLength(69);
    expect(found).toEqual(expect.arrayContaining(expected));
    expect(
      records.every(
        (record) => record.event?.outcome === auditV1.AuditOutcome.AUDIT_OUTCOME_DENIED,
      ),
    ).toBe(true);
  });

  it('keeps health and reflection open', async () => {
    const { checkHealth } = await import('../support/grpc-probes.js');
    expect(await checkHealth(mesh.memoryAddress)).toBe('SERVING');
  });
});

describe('isolation between agents', () => {
  let mesh: Mesh;

  beforeAll(async () => {
    mesh = await startMesh();
  });

  afterAll(cleanUp);

  it('keeps agent B out of agent A memory', async () => {
    const memory = new memoryV1.MemoryServiceClient(
      mesh.memoryAddress,
      credentials.createInsecure(),
    );
    clients.push(memory);
    const agentA = agentMetadata('agent-a');
    const agentB = agentMetadata('agent-b');
    const put = (metadata: Metadata, namespace: string, key: string, value: string) =>
      callMethod(memory, memoryV1.MemoryServiceService, 'put', metadata, {
        ...memoryV1.PutRequest.fromPartial({ namespace, key, value: Buffer.from(value) }),
      });

    expect(await put(agentA, 'notes', 'plan', 'secret of a')).toBeUndefined();

    for (const [namespace, key] of [
      ['notes', 'plan'],
      ['agent-a', 'notes:plan'],
      ['../agent-a/notes', 'plan'],
      ['*', '*'],
    ] as const) {
      const got = await callMethod(memory, memoryV1.MemoryServiceService, 'get', agentB, {
        namespace,
        key,
      });
      expect([status.NOT_FOUND, status.INVALID_ARGUMENT], `get ${namespace}/${key}`).toContain(
        got?.code,
      );
      const deleted = await new Promise<memoryV1.DeleteResponse | ServiceError>((resolve) =>
        memory.delete(
          memoryV1.DeleteRequest.fromPartial({ namespace, key }),
          agentB,
          (error, response) => resolve(error ?? response),
        ),
      );
      expect('deleted' in deleted ? deleted.deleted : false).toBe(false);
    }
    const listed = await new Promise<memoryV1.ListResponse>((resolve, reject) =>
      memory.list(
        memoryV1.ListRequest.fromPartial({ namespace: 'notes' }),
        agentB,
        (error, value) => (error === null ? resolve(value) : reject(error)),
      ),
    );
    expect(listed.keys).toEqual([]);
    expect(await put(agentB, 'notes', 'plan', 'written by b')).toBeUndefined();

    const valueOfA = await new Promise<memoryV1.GetResponse>((resolve, reject) =>
      memory.get(
        memoryV1.GetRequest.fromPartial({ namespace: 'notes', key: 'plan' }),
        agentA,
        (error, value) => (error === null ? resolve(value) : reject(error)),
      ),
    );
    expect(valueOfA.value.toString()).toBe('secret of a');
    expect(valueOfA.version).toBe(1);
  });

  it('keeps agent B out of agent A audit records', async () => {
    const run = await runProgram(mesh.executor.client, python('print("a")'), {
      metadata: agentMetadata('agent-a'),
    });
    const runId = run.started?.runId ?? '';
    expect(run.exited?.status).toBe(executorV1.RunStatus.RUN_STATUS_OK);
    const audit = new auditV1.AuditServiceClient(mesh.auditAddress, credentials.createInsecure());
    clients.push(audit);

    const getRun = (metadata: Metadata) =>
      new Promise<auditV1.GetRunResponse | ServiceError>((resolve) =>
        audit.getRun({ runId }, metadata, (error, value) => resolve(error ?? value)),
      );
    const byB = await getRun(agentMetadata('agent-b'));
    const byA = await getRun(agentMetadata('agent-a'));
    const queried = await new Promise<auditV1.AuditRecord[]>((resolve, reject) => {
      const records: auditV1.AuditRecord[] = [];
      audit
        .query(
          auditV1.QueryRequest.fromPartial({ agentId: 'agent-a', runId }),
          agentMetadata('agent-b'),
        )
        .on('data', (response: auditV1.QueryResponse) => records.push(response.record!))
        .on('error', reject)
        .on('end', () => resolve(records));
    });

    expect((byB as ServiceError).code).toBe(status.NOT_FOUND);
    expect((byA as auditV1.GetRunResponse).timeline.map((record) => record.event?.action)).toEqual([
      'execution.started',
      'execution.finished',
    ]);
    expect(queried).toEqual([]);
  });

  it('rejects an acting-for header from an agent and records it', async () => {
    const key = readTokenKey(testKeyFile());
    const proof = await signActingForToken(
      key,
      { agentId: 'agent-a', service: 'executor', runId: '' },
      60_000,
    );
    const forged = agentMetadata('agent-b');
    forged.set('x-cordon-acting-for', proof);
    const memory = clientOf(memoryV1.MemoryServiceService, mesh.memoryAddress);

    const error = await callMethod(memory, memoryV1.MemoryServiceService, 'get', forged, {
      namespace: 'notes',
      key: 'plan',
    });

    expect(error?.code).toBe(status.PERMISSION_DENIED);
    expect(error?.details).toBe(
      'only services may send x-cordon-acting-for metadata; a caller with role agent acts only for itself',
    );
    let record: auditV1.AuditRecord | undefined;
    for (let attempt = 0; attempt < 50 && record === undefined; attempt += 1) {
      record = (await deniedRecords(mesh.auditAddress)).find(
        (candidate) => attribute(candidate, 'reason') === 'acting-for-not-allowed',
      );
      if (record === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(record?.event?.agentId).toBe('agent-b');
    expect(record?.event?.service).toBe('memory');
    expect(attribute(record!, 'rpc')).toBe('cordon.v1.MemoryService/Get');
  });

  it('accepts acting-for only when the calling service signed it', async () => {
    const key = readTokenKey(testKeyFile());
    const memory = clientOf(memoryV1.MemoryServiceService, mesh.memoryAddress);
    const request = { namespace: 'notes', key: 'plan' };
    const asService = async (
      service: string,
      signer: string,
    ): Promise<ServiceError | undefined> => {
      const metadata = bearerMetadata(service, 'service');
      metadata.set(
        'x-cordon-acting-for',
        await signActingForToken(key, { agentId: 'agent-a', service: signer, runId: '' }, 60_000),
      );
      return callMethod(memory, memoryV1.MemoryServiceService, 'get', metadata, request);
    };

    const own = await asService('executor', 'executor');
    const borrowed = await asService('scanner', 'executor');

    expect(own).toBeUndefined();
    expect(borrowed?.code).toBe(status.UNAUTHENTICATED);
    expect(borrowed?.details).toBe(
      'the acting-for token was signed for service executor, not for the calling service scanner',
    );
  });
});

describe('mutual TLS', () => {
  afterEach(cleanUp);

  it('admits only clients with a certificate from the CA', async () => {
    const certs = tempFolder();
    const stranger = tempFolder();
    execFileSync(DEV_CA, [certs, 'audit', 'memory', 'client'], { stdio: 'ignore' });
    execFileSync(DEV_CA, [stranger, 'client'], { stdio: 'ignore' });
    const tlsEnv = (name: string): Record<string, string> => ({
      CORDON_TLS_CA: join(certs, 'ca.crt'),
      CORDON_TLS_CERT: join(certs, `${name}.crt`),
      CORDON_TLS_KEY: join(certs, `${name}.key`),
    });
    const folder = tempFolder();
    const audit = await startListeningService(AUDIT_MAIN, [], {
      CORDON_AUDIT_ADDRESS: '127.0.0.1:0',
      CORDON_AUDIT_DB_PATH: join(folder, 'audit.db'),
      ...tlsEnv('audit'),
    });
    const memory = await startListeningService(MEMORY_MAIN, [], {
      CORDON_MEMORY_ADDRESS: '127.0.0.1:0',
      CORDON_MEMORY_DB_PATH: join(folder, 'memory.db'),
      CORDON_AUDIT_ADDRESS: `127.0.0.1:${audit.port}`,
      ...tlsEnv('memory'),
    });
    const address = `127.0.0.1:${audit.port}`;
    const read = (folderName: string, file: string) => readFileSync(join(folderName, file));
    const auditor = bearerMetadata('auditor-1', 'auditor');
    const query = (channel: ChannelCredentials) =>
      callMethod(
        clientOf(auditV1.AuditServiceService, address, channel),
        auditV1.AuditServiceService,
        'query',
        auditor,
      );

    const plaintext = await query(credentials.createInsecure());
    const withoutCertificate = await query(credentials.createSsl(read(certs, 'ca.crt')));
    const foreignCertificate = await query(
      credentials.createSsl(
        read(certs, 'ca.crt'),
        read(stranger, 'client.key'),
        read(stranger, 'client.crt'),
      ),
    );
    const valid = await query(
      credentials.createSsl(
        read(certs, 'ca.crt'),
        read(certs, 'client.key'),
        read(certs, 'client.crt'),
      ),
    );
    const memoryClient = clientOf(
      memoryV1.MemoryServiceService,
      `127.0.0.1:${memory.port}`,
      credentials.createSsl(
        read(certs, 'ca.crt'),
        read(certs, 'client.key'),
        read(certs, 'client.crt'),
      ),
    );
    const stored = await callMethod(
      memoryClient,
      memoryV1.MemoryServiceService,
      'put',
      agentMetadata('agent-tls'),
      {
        ...memoryV1.PutRequest.fromPartial({ namespace: 'n', key: 'k', value: Buffer.from('v') }),
      },
    );

    expect(plaintext?.code).toBe(status.UNAVAILABLE);
    expect(withoutCertificate?.code).toBe(status.UNAVAILABLE);
    expect(foreignCertificate?.code).toBe(status.UNAVAILABLE);
    expect(valid).toBeUndefined();
    expect(stored).toBeUndefined();
    // The memory service reached the audit service over mutual TLS with its own service token.
    // Its audit events go over one AppendStream, whose log line comes when the stream ends,
    // which the memory service does at shutdown.
    memory.child.kill('SIGTERM');
    await memory.exited;
    await audit.waitForLog(
      (line) =>
        line['rpc'] === 'cordon.v1.AuditService/AppendStream' &&
        line.msg === 'rpc finished' &&
        line['caller'] === 'memory',
    );
    expect(
      memory.logs.find(
        (line) => line.msg === 'mutual TLS on: clients need a certificate from CORDON_TLS_CA',
      ),
    ).toBeDefined();
  });

  it('refuses to listen beyond loopback without TLS', async () => {
    const folder = tempFolder();
    const audit = startServiceProcess(AUDIT_MAIN, [], {
      CORDON_AUDIT_ADDRESS: '0.0.0.0:0',
      CORDON_AUDIT_DB_PATH: join(folder, 'audit.db'),
    });

    const exit = await audit.exited;

    expect(exit.code).toBe(2);
    expect(audit.stderr()).toBe(
      'cordon-audit: CORDON_AUDIT_ADDRESS=0.0.0.0:0 is not a loopback address and TLS is off; set CORDON_TLS_CA, CORDON_TLS_CERT and CORDON_TLS_KEY, listen on 127.0.0.1, or set CORDON_ALLOW_INSECURE_BIND=true to accept plaintext tokens on the network\n',
    );
  });
});

describe('per-agent run limits', () => {
  afterEach(cleanUp);

  /** Starts `count` runs of one agent at once and returns how each call ended. */
  async function burst(
    executor: ExecutorUnderTest,
    agentId: string,
    count: number,
    code = 'print(1)',
  ) {
    const results = await Promise.all(
      Array.from({ length: count }, () =>
        runProgram(executor.client, python(code), { metadata: agentMetadata(agentId) }),
      ),
    );
    return results;
  }

  it('answers a burst above the rate with RESOURCE_EXHAUSTED and a retry-after', async () => {
    const executor = await startExecutor({
      CORDON_EXECUTOR_RUNS_PER_MINUTE: '3',
      CORDON_EXECUTOR_CONCURRENT_RUNS_PER_AGENT: '10',
    });
    executors.push(executor);

    const results = await burst(executor, 'agent-burst', 5);
    const refused = results.filter((result) => result.error !== undefined);

    expect(
      results.filter((result) => result.exited?.status === executorV1.RunStatus.RUN_STATUS_OK),
    ).toHaveLength(3);
    expect(refused).toHaveLength(2);
    for (const result of refused) {
      expect(result.error?.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(result.error?.details).toMatch(
        /^agent agent-burst started 3 runs within the last minute, the maximum \(CORDON_EXECUTOR_RUNS_PER_MINUTE\); retry after \d+ ms$/,
      );
      const retryAfterMs = readErrorDetails(result.error?.metadata)?.retryAfterMs ?? 0;
      expect(retryAfterMs).toBeGreaterThan(0);
      expect(retryAfterMs).toBeLessThanOrEqual(20_000);
    }
  });

  it('limits the runs an agent has in progress', async () => {
    const executor = await startExecutor({ CORDON_EXECUTOR_CONCURRENT_RUNS_PER_AGENT: '1' });
    executors.push(executor);

    const [slow, second] = await Promise.all([
      runProgram(executor.client, python('import time\ntime.sleep(3)'), {
        metadata: agentMetadata('agent-busy'),
      }),
      new Promise((resolve) => setTimeout(resolve, 1_000)).then(() =>
        runProgram(executor.client, python('print(2)'), { metadata: agentMetadata('agent-busy') }),
      ),
    ]);
    const other = await runProgram(executor.client, python('print(3)'), {
      metadata: agentMetadata('agent-idle'),
    });

    expect(slow.exited?.status).toBe(executorV1.RunStatus.RUN_STATUS_OK);
    expect(second.error?.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(second.error?.details).toBe(
      'agent agent-busy has 1 runs in progress, the maximum (CORDON_EXECUTOR_CONCURRENT_RUNS_PER_AGENT); retry when one has finished',
    );
    expect(other.exited?.status).toBe(executorV1.RunStatus.RUN_STATUS_OK);
  });

  it('holds the rate across two executors sharing one Redis', async () => {
    const redis = await startTestRedis();
    redisServers.push(redis);
    const env = {
      CORDON_EXECUTOR_RUNS_PER_MINUTE: '4',
      CORDON_EXECUTOR_CONCURRENT_RUNS_PER_AGENT: '10',
      CORDON_RATE_LIMIT_REDIS_URL: redis.url,
    };
    const first = await startExecutor(env);
    executors.push(first);
    const second = await startExecutor(env);
    executors.push(second);

    const results = (
      await Promise.all([burst(first, 'agent-shared', 3), burst(second, 'agent-shared', 3)])
    ).flat();

    expect(
      results.filter((result) => result.exited?.status === executorV1.RunStatus.RUN_STATUS_OK),
    ).toHaveLength(4);
    expect(
      results.filter((result) => result.error?.code === status.RESOURCE_EXHAUSTED),
    ).toHaveLength(2);
    expect(first.process.logs.find((line) => line.msg === 'per-agent run limits')?.['store']).toBe(
      'redis',
    );
  });

  it('requires a deadline on Execute', async () => {
    const executor = await startExecutor({ CORDON_EXECUTOR_MAX_DEADLINE_MS: '60s' });
    executors.push(executor);
    const client = new executorV1.ExecutorServiceClient(
      `127.0.0.1:${executor.process.port}`,
      credentials.createInsecure(),
    );
    clients.push(client);
    const execute = (options: { deadline?: number }) =>
      new Promise<ServiceError | undefined>((resolve) => {
        client
          .execute(
            executorV1.ExecuteRequest.fromPartial(python('print(1)')),
            agentMetadata('agent-d'),
            options,
          )
          .on('data', () => undefined)
          .on('error', (error: ServiceError) => resolve(error))
          .on('end', () => resolve(undefined));
      });

    const none = await execute({});
    const tooLong = await execute({ deadline: Date.now() + 3_600_000 });

    expect(none?.code).toBe(status.INVALID_ARGUMENT);
    expect(none?.details).toBe(
      'deadline: Execute needs a call deadline; set one of at most 60000 ms (CORDON_EXECUTOR_MAX_DEADLINE_MS)',
    );
    expect(tooLong?.code).toBe(status.INVALID_ARGUMENT);
    expect(tooLong?.details).toMatch(
      /^deadline: \d+ ms from now is above this server's maximum 60000 ms; set a shorter deadline or raise CORDON_EXECUTOR_MAX_DEADLINE_MS$/,
    );
  });
});

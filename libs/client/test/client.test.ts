import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Server,
  ServerCredentials,
  status,
  type Metadata,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
} from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { executorV1 } from '@cordon/proto';
import { createCordonClient, CordonClientError, type CordonClient } from '@cordon/client';
import { startMesh, token, type Mesh } from '../../../cli/test/mesh-harness.js';

describe('createCordonClient addresses and token', () => {
  it('derives every service address from CORDON_ADDRESS', () => {
    const client = createCordonClient({ env: { CORDON_ADDRESS: '10.0.0.5' } });
    expect(client.addresses).toEqual({
      executor: '10.0.0.5:7101',
      scanner: '10.0.0.5:7102',
      memory: '10.0.0.5:7103',
      audit: '10.0.0.5:7104',
    });
    client.close();
  });

  it('lets a per-service variable override one address', () => {
    const client = createCordonClient({
      env: { CORDON_ADDRESS: '127.0.0.1:9101', CORDON_AUDIT_ADDRESS: '127.0.0.1:9999' },
    });
    expect(client.addresses).toEqual({
      executor: '127.0.0.1:9101',
      scanner: '127.0.0.1:7102',
      memory: '127.0.0.1:7103',
      audit: '127.0.0.1:9999',
    });
    client.close();
  });

  it('rejects an address that is not host or host:port', () => {
    expect(() => createCordonClient({ address: 'http://x:1/' })).toThrow(
      'address "http://x:1/" is not a host or host:port; use for example 127.0.0.1 or 127.0.0.1:7101',
    );
  });
});

/** A stand-in executor that fails ListRuntimes and Execute with UNAVAILABLE a set number of times. */
function startFlakyExecutor(
  failures: number,
): Promise<{ server: Server; port: number; calls: Record<string, number>; metadata: Metadata[] }> {
  const calls: Record<string, number> = { listRuntimes: 0, execute: 0 };
  const metadata: Metadata[] = [];
  const server = new Server();
  server.addService(executorV1.ExecutorServiceService, {
    listRuntimes: (
      call: ServerUnaryCall<executorV1.ListRuntimesRequest, executorV1.ListRuntimesResponse>,
      callback: sendUnaryData<executorV1.ListRuntimesResponse>,
    ) => {
      calls['listRuntimes'] = (calls['listRuntimes'] ?? 0) + 1;
      metadata.push(call.metadata);
      if ((calls['listRuntimes'] ?? 0) <= failures) {
        callback({ code: status.UNAVAILABLE, details: 'warming up' });
      } else {
        callback(null, executorV1.ListRuntimesResponse.fromPartial({ isolation: 'docker/runc' }));
      }
    },
    execute: (
      call: ServerWritableStream<executorV1.ExecuteRequest, executorV1.ExecuteResponse>,
    ) => {
      calls['execute'] = (calls['execute'] ?? 0) + 1;
      call.emit('error', { code: status.UNAVAILABLE, details: 'warming up' });
    },
  });
  return new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, port) => {
      if (error === null) resolve({ server, port, calls, metadata });
      else reject(error);
    });
  });
}

describe('retries', () => {
  it('retries ListRuntimes on UNAVAILABLE and sends the bearer token', async () => {
    const fake = await startFlakyExecutor(2);
    const client = createCordonClient({
      address: `127.0.0.1:${fake.port}`,
      token: 'token-1',
      retry: { initialBackoffMs: 5 },
    });
    try {
      const response = await client.listRuntimes();
      expect(response.isolation).toBe('docker/runc');
      expect(fake.calls['listRuntimes']).toBe(3);
      expect(fake.metadata.map((entry) => entry.get('authorization'))).toEqual([
        ['Bearer token-1'],
        ['Bearer token-1'],
        ['Bearer token-1'],
      ]);
      expect(fake.metadata[0]?.get('x-cordon-agent-id')).toEqual([]);
    } finally {
      client.close();
      fake.server.forceShutdown();
    }
  });

  it('gives up after maxAttempts with the server message', async () => {
    const fake = await startFlakyExecutor(10);
    const client = createCordonClient({
      address: `127.0.0.1:${fake.port}`,
      retry: { maxAttempts: 2, initialBackoffMs: 5 },
    });
    try {
      const error = await client.listRuntimes().catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(CordonClientError);
      expect((error as CordonClientError).code).toBe(status.UNAVAILABLE);
      expect((error as CordonClientError).message).toBe('warming up');
      expect((error as CordonClientError).unreachable).toBe(false);
      expect(fake.calls['listRuntimes']).toBe(2);
    } finally {
      client.close();
      fake.server.forceShutdown();
    }
  });

  it('never retries Execute', async () => {
    const fake = await startFlakyExecutor(10);
    const client = createCordonClient({
      address: `127.0.0.1:${fake.port}`,
      retry: { initialBackoffMs: 5 },
    });
    try {
      const execution = client.execute({
        runtime: 'python',
        files: [{ path: 'main.py', content: Buffer.from('print(1)') }],
      });
      const error = await execution.result.catch((caught: unknown) => caught);
      expect((error as CordonClientError).code).toBe(status.UNAVAILABLE);
      expect(fake.calls['execute']).toBe(1);
    } finally {
      client.close();
      fake.server.forceShutdown();
    }
  });
});

describe('token file', () => {
  let folder = '';
  beforeAll(() => {
    folder = mkdtempSync(join(tmpdir(), 'cordon-client-'));
    mkdirSync(join(folder, 'cordon'));
    writeFileSync(join(folder, 'cordon', 'token'), 'from-file\n', { mode: 0o600 });
  });
  afterAll(() => {
    rmSync(folder, { recursive: true, force: true });
  });

  it('reads the token from XDG_CONFIG_HOME when CORDON_TOKEN is unset', async () => {
    const fake = await startFlakyExecutor(0);
    const client = createCordonClient({
      address: `127.0.0.1:${fake.port}`,
      env: { XDG_CONFIG_HOME: folder },
    });
    try {
      await client.listRuntimes();
      expect(fake.metadata[0]?.get('authorization')).toEqual(['Bearer from-file']);
    } finally {
      client.close();
      fake.server.forceShutdown();
    }
  });
});

describe('against a real executor', () => {
  let mesh: Mesh;
  let client: CordonClient;

  beforeAll(async () => {
    mesh = await startMesh();
    client = createCordonClient({ env: mesh.env, token: token('agent-client') });
  });

  afterAll(async () => {
    client.close();
    const leftovers = await mesh.stop();
    expect(leftovers).toEqual([]);
  });

  it('streams events and resolves the result', async () => {
    const execution = client.execute({
      runtime: 'python',
      files: [
        {
          path: 'main.py',
          content: Buffer.from('import sys\nprint("out")\nprint("err", file=sys.stderr)\n'),
        },
      ],
    });
    const kinds: string[] = [];
    const output: string[] = [];
    for await (const event of execution) {
      kinds.push(event.$case);
      if (event.$case === 'output') {
        const stream =
          event.value.stream === executorV1.OutputStream.OUTPUT_STREAM_STDOUT ? 'stdout' : 'stderr';
        output.push(`${stream}:${event.value.data.toString()}`);
      }
    }
    const result = await execution.result;

    // The mesh's scan policy is "report", so the scan comes before the run starts.
    expect(kinds.slice(0, 2)).toEqual(['scan', 'started']);
    expect(kinds.at(-1)).toBe('exited');
    const stdout = output.filter((text) => text.startsWith('stdout:')).map((text) => text.slice(7));
    const stderr = output.filter((text) => text.startsWith('stderr:')).map((text) => text.slice(7));
    expect(stdout.join('')).toBe('out\n');
    expect(stderr.join('')).toBe('err\n');
    expect(result.exited.status).toBe(executorV1.RunStatus.RUN_STATUS_OK);
    expect(result.started.traceId).toMatch(/^[0-9a-f]{32}$/);
  });

  it('cancels the run when the signal aborts', async () => {
    const controller = new AbortController();
    const execution = client.execute(
      {
        runtime: 'python',
        files: [
          {
            path: 'main.py',
            content: Buffer.from('import time\nprint("up", flush=True)\ntime.sleep(30)\n'),
          },
        ],
      },
      { signal: controller.signal },
    );
    const seen: string[] = [];
    let failure: unknown;
    try {
      for await (const event of execution) {
        seen.push(event.$case);
        if (event.$case === 'output') controller.abort();
      }
    } catch (caught) {
      failure = caught;
    }

    expect(seen).toEqual(['scan', 'started', 'output']);
    expect((failure as CordonClientError).code).toBe(status.CANCELLED);
    expect((failure as CordonClientError).message).toBe('the call was cancelled by the client');
    await expect(execution.result).rejects.toThrow('the call was cancelled by the client');
  }, 20_000);

  it('parses the field violations of a rejected request', async () => {
    const execution = client.execute({
      runtime: 'python',
      files: [{ path: 'main.py', content: Buffer.from('print(1)') }],
      limits: { memoryBytes: 4 * 1024 ** 3 },
    });
    const error = (await execution.result.catch((caught: unknown) => caught)) as CordonClientError;

    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.service).toBe('executor');
    expect(error.details?.fieldViolations.map((violation) => violation.field)).toEqual([
      'limits.memory_bytes',
    ]);
  });

  it('fails an expired deadline with DEADLINE_EXCEEDED', async () => {
    const execution = client.execute(
      {
        runtime: 'python',
        files: [{ path: 'main.py', content: Buffer.from('import time\ntime.sleep(10)\n') }],
      },
      { deadlineMs: 1500 },
    );
    const error = (await execution.result.catch((caught: unknown) => caught)) as CordonClientError;

    expect(error.code).toBe(status.DEADLINE_EXCEEDED);
  });

  it('marks a service nobody listens on as unreachable', async () => {
    const offline = createCordonClient({
      address: '127.0.0.1:1',
      retry: { maxAttempts: 2, initialBackoffMs: 5 },
    });
    try {
      const error = (await offline
        .listRuntimes()
        .catch((caught: unknown) => caught)) as CordonClientError;
      expect(error.code).toBe(status.UNAVAILABLE);
      expect(error.unreachable).toBe(true);
      expect(error.address).toBe('127.0.0.1:1');
    } finally {
      offline.close();
    }
  });
});

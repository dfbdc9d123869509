import { fileURLToPath } from 'node:url';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { executorV1, scannerV1 } from '@cordon/proto';
import { checkHealth, listServicesByReflection } from '../../../test/support/grpc-probes.js';
import { tokenInterceptor } from '../../../test/support/test-tokens.js';
import {
  killLeftoverProcesses,
  startListeningService,
  startServiceProcess,
} from '../../../test/support/service-process.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/mesh-service.mjs', import.meta.url));

const openClients = new Set<{ close(): void }>();

function executorClient(port: number): executorV1.ExecutorServiceClient {
  const client = new executorV1.ExecutorServiceClient(
    `127.0.0.1:${port}`,
    credentials.createInsecure(),
    { interceptors: [tokenInterceptor('agent-1')] },
  );
  openClients.add(client);
  return client;
}

function scannerClient(port: number): scannerV1.ScannerServiceClient {
  const client = new scannerV1.ScannerServiceClient(
    `127.0.0.1:${port}`,
    credentials.createInsecure(),
    { interceptors: [tokenInterceptor('agent-1')] },
  );
  openClients.add(client);
  return client;
}

interface StreamResult {
  ticks: string[];
  error: ServiceError | undefined;
}

/** Runs the fixture's Execute and collects its ticks; calls onFirstTick once. */
function streamTicks(
  client: executorV1.ExecutorServiceClient,
  args: string[],
  onFirstTick: () => void = () => undefined,
  runtime = 'fixture',
): Promise<StreamResult> {
  return new Promise((resolve) => {
    const ticks: string[] = [];
    const call = client.execute(executorV1.ExecuteRequest.fromPartial({ runtime, args }));
    call.on('data', (response: executorV1.ExecuteResponse) => {
      if (response.event?.$case === 'output') {
        ticks.push(response.event.value.data.toString('utf8').trim());
        if (ticks.length === 1) {
          onFirstTick();
        }
      }
    });
    call.on('error', (error: ServiceError) => resolve({ ticks, error }));
    call.on('end', () => resolve({ ticks, error: undefined }));
  });
}

afterEach(async () => {
  openClients.forEach((client) => client.close());
  openClients.clear();
  await killLeftoverProcesses();
});

describe('service started through the kit', () => {
  it('answers health as SERVING and lists its services by reflection', async () => {
    const service = await startListeningService(FIXTURE, ['scanner'], {
      CORDON_SCANNER_ADDRESS: '127.0.0.1:0',
    });
    const address = `127.0.0.1:${service.port}`;

    expect(await checkHealth(address)).toBe('SERVING');
    expect(await checkHealth(address, 'cordon.v1.ScannerService')).toBe('SERVING');
    expect(await listServicesByReflection(address)).toEqual([
      'cordon.v1.ScannerService',
      'grpc.health.v1.Health',
    ]);

    service.child.kill('SIGTERM');
    expect(await service.exited).toEqual({ code: 0, signal: null });
  });

  it('lets an in-flight stream finish on SIGTERM, then exits 0', async () => {
    const service = await startListeningService(FIXTURE, ['executor'], {
      CORDON_EXECUTOR_ADDRESS: '127.0.0.1:0',
      CORDON_SHUTDOWN_DRAIN_MS: '10s',
    });
    const client = executorClient(service.port);

    const result = await streamTicks(client, ['5', '200'], () => service.child.kill('SIGTERM'));

    expect(result.error).toBeUndefined();
    expect(result.ticks).toEqual(['tick 1', 'tick 2', 'tick 3', 'tick 4', 'tick 5']);
    expect(await service.exited).toEqual({ code: 0, signal: null });
    const draining = service.logs.find((line) => line.msg === 'server draining');
    expect(draining?.['in_flight']).toBe(1);
  });

  it('refuses new calls once draining has started', async () => {
    const service = await startListeningService(FIXTURE, ['executor'], {
      CORDON_EXECUTOR_ADDRESS: '127.0.0.1:0',
      CORDON_SHUTDOWN_DRAIN_MS: '10s',
    });
    const client = executorClient(service.port);
    const inFlight = streamTicks(client, ['4', '250'], () => service.child.kill('SIGTERM'));
    await service.waitForLog((line) => line.msg === 'server draining');

    const late = await streamTicks(executorClient(service.port), ['1', '0']);

    expect(late.error?.code).toBe(status.UNAVAILABLE);
    expect((await inFlight).ticks).toHaveLength(4);
    expect(await service.exited).toEqual({ code: 0, signal: null });
  });

  it('cancels a stream still running at the drain deadline, then exits', async () => {
    const service = await startListeningService(FIXTURE, ['executor'], {
      CORDON_EXECUTOR_ADDRESS: '127.0.0.1:0',
      CORDON_SHUTDOWN_DRAIN_MS: '500ms',
    });
    const client = executorClient(service.port);
    const signalledAt: number[] = [];

    const result = await streamTicks(client, ['100', '100'], () => {
      signalledAt.push(Date.now());
      service.child.kill('SIGTERM');
    });
    const exit = await service.exited;

    expect(result.error?.code).toBe(status.UNAVAILABLE);
    expect(result.error?.details).toBe('the server shut down before the call finished; try again');
    expect(result.ticks.length).toBeGreaterThanOrEqual(4);
    expect(result.ticks.length).toBeLessThan(20);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - (signalledAt[0] ?? 0)).toBeLessThan(5_000);
    expect(
      service.logs.some((line) => line.msg === 'drain deadline passed; cancelling calls in flight'),
    ).toBe(true);
  });
});

describe('configuration', () => {
  it.each([
    [
      'CORDON_SHUTDOWN_DRAIN_MS',
      'soon',
      'cordon-executor: invalid configuration: CORDON_SHUTDOWN_DRAIN_MS="soon" is invalid: expected a duration from 0 ms to 600000 ms, in milliseconds or with a unit such as 500ms, 10s or 2m',
    ],
    [
      'CORDON_GRPC_MAX_RECEIVE_MESSAGE_BYTES',
      '1g',
      'cordon-executor: invalid configuration: CORDON_GRPC_MAX_RECEIVE_MESSAGE_BYTES="1g" is invalid: expected a size from 64KiB to 256MiB, in bytes or with a unit such as 64k, 16m or 1g',
    ],
    [
      'CORDON_EXECUTOR_ADDRESS',
      'localhost',
      'cordon-executor: invalid configuration: CORDON_EXECUTOR_ADDRESS="localhost" is invalid: expected host:port, such as 127.0.0.1:7101 or [::1]:7101, with a port from 0 to 65535',
    ],
    [
      'CORDON_LOG_LEVEL',
      'loud',
      'cordon-executor: invalid configuration: CORDON_LOG_LEVEL="loud" is invalid: expected one of trace, debug, info, warn, error, fatal, silent',
    ],
  ])('stops start-up with exit 2 when %s=%s', async (name, value, message) => {
    const service = startServiceProcess(FIXTURE, ['executor'], {
      CORDON_EXECUTOR_ADDRESS: '127.0.0.1:0',
      [name]: value,
    });

    expect(await service.exited).toEqual({ code: 2, signal: null });
    expect(service.stderr()).toBe(`${message}\n`);
    expect(service.logs).toEqual([]);
  });
});

describe('unexpected errors', () => {
  it('reach streaming clients as INTERNAL', async () => {
    const service = await startListeningService(FIXTURE, ['executor'], {
      CORDON_EXECUTOR_ADDRESS: '127.0.0.1:0',
    });

    const result = await streamTicks(executorClient(service.port), [], undefined, 'explode');

    expect(result.error?.code).toBe(status.INTERNAL);
    expect(result.error?.details).toMatch(
      /^internal error \(trace id [0-9a-f]{32}\); the server log has the details$/,
    );
    expect(result.error?.details).not.toContain('/var/lib');
    const logged = await service.waitForLog((line) => line.msg === 'rpc failed unexpectedly');
    expect(logged.level).toBe('error');
    expect(logged['code']).toBe('INTERNAL');
    expect(logged['rpc']).toBe('cordon.v1.ExecutorService/Execute');
    const err = logged['err'] as { stack: string };
    expect(err.stack).toContain('cannot open /var/lib/cordon/secret-runs/4711: permission denied');
    expect(err.stack).toContain('mesh-service.mjs');
    expect(result.error?.details).toContain(logged['trace_id'] as string);
  });

  it('reach unary clients as INTERNAL', async () => {
    const service = await startListeningService(FIXTURE, ['scanner'], {
      CORDON_SCANNER_ADDRESS: '127.0.0.1:0',
    });
    const client = scannerClient(service.port);

    const error = await new Promise<ServiceError | null>((resolve) => {
      client.scan(scannerV1.ScanRequest.fromPartial({ language: 'python' }), (failure) =>
        resolve(failure),
      );
    });

    expect(error?.code).toBe(status.INTERNAL);
    expect(error?.details).not.toContain('signing.pem');
    const logged = await service.waitForLog((line) => line.msg === 'rpc failed unexpectedly');
    expect((logged['err'] as { stack: string }).stack).toContain(
      '/srv/cordon/keys/signing.pem is unreadable',
    );
  });
});

describe('tracing across services', () => {
  it('carries the caller trace id through both services', async () => {
    const scanner = await startListeningService(FIXTURE, ['scanner'], {
      CORDON_SCANNER_ADDRESS: '127.0.0.1:0',
    });
    const executor = await startListeningService(FIXTURE, ['executor'], {
      CORDON_EXECUTOR_ADDRESS: '127.0.0.1:0',
      CORDON_SCANNER_ADDRESS: `127.0.0.1:${scanner.port}`,
    });
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const metadata = new Metadata();
    metadata.set('traceparent', `00-${traceId}-00f067aa0ba902b7-01`);

    const response = await new Promise<executorV1.ListRuntimesResponse>((resolve, reject) => {
      executorClient(executor.port).listRuntimes({}, metadata, (error, value) =>
        error === null ? resolve(value) : reject(error),
      );
    });

    expect(response.runtimes[0]?.displayName).toBe('fixture-rules-1');
    const executorLine = await executor.waitForLog(
      (line) =>
        line['rpc'] === 'cordon.v1.ExecutorService/ListRuntimes' && line.msg === 'rpc finished',
    );
    const scannerLine = await scanner.waitForLog(
      (line) => line['rpc'] === 'cordon.v1.ScannerService/ListRules' && line.msg === 'rpc finished',
    );
    expect(executorLine['trace_id']).toBe(traceId);
    expect(scannerLine['trace_id']).toBe(traceId);
    expect(scannerLine['span_id']).not.toBe(executorLine['span_id']);
    expect(executor.logs.some((line) => String(line.msg).includes('carry no trace context'))).toBe(
      false,
    );
  });
});

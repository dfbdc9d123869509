import { type Metadata, type StatusObject } from '@grpc/grpc-js';
import { auditV1, executorV1, memoryV1, scannerV1 } from '@cordon/proto';
import {
  type CordonClientError,
  toClientError,
  type CallSite,
  type ServiceName,
} from './client-error.js';
import {
  resolveOptions,
  SERVER_DEFAULT_WALL_TIME_MS,
  SERVICE_NAMES,
  type CordonClientOptions,
  type ResolvedOptions,
} from './client-options.js';
import {
  callMetadata,
  callUnaryOnce,
  readStreamOnce,
  withRetry,
  type CallOptionsInput,
  type StreamMethod,
  type UnaryMethod,
} from './calls.js';
import { Execution } from './execution.js';
import { ServiceChannels } from './service-channels.js';
import { streamRecords } from './record-stream.js';

export type ExecuteInput = executorV1.DeepPartial<executorV1.ExecuteRequest>;

/** Health of one service, as its grpc.health.v1 check returned it. */
export interface ServiceHealth {
  service: ServiceName;
  address: string;
  /** SERVING, NOT_SERVING, UNKNOWN, or UNREACHABLE when the check itself failed. */
  status: 'SERVING' | 'NOT_SERVING' | 'UNKNOWN' | 'UNREACHABLE';
  /** Why the check failed, when status is UNREACHABLE. */
  error: CordonClientError | undefined;
  /** Facts the service returned beside its status, such as the executor's isolation. */
  facts: Readonly<Record<string, string>>;
}

// Export reads the whole log, so it gets more time than a single read.
const EXPORT_DEADLINE_FACTOR = 30;

export interface CordonClient {
  /** Where each service is reached. */
  readonly addresses: Readonly<Record<ServiceName, string>>;
  /** Runs a program. Never retried: a retry would run the code twice. */
  execute(request: ExecuteInput, options?: CallOptionsInput): Execution;
  listRuntimes(options?: CallOptionsInput): Promise<executorV1.ListRuntimesResponse>;
  scanner: {
    /** Scans files; not retried, because every scan is appended to the audit log. */
    scan(
      request: scannerV1.DeepPartial<scannerV1.ScanRequest>,
      options?: CallOptionsInput,
    ): Promise<scannerV1.ScanReport>;
    listRules(language?: string, options?: CallOptionsInput): Promise<scannerV1.ListRulesResponse>;
  };
  memory: {
    put(
      request: memoryV1.DeepPartial<memoryV1.PutRequest>,
      options?: CallOptionsInput,
    ): Promise<memoryV1.PutResponse>;
    get(namespace: string, key: string, options?: CallOptionsInput): Promise<memoryV1.GetResponse>;
    delete(
      request: memoryV1.DeepPartial<memoryV1.DeleteRequest>,
      options?: CallOptionsInput,
    ): Promise<memoryV1.DeleteResponse>;
    list(
      request: memoryV1.DeepPartial<memoryV1.ListRequest>,
      options?: CallOptionsInput,
    ): Promise<memoryV1.ListResponse>;
  };
  audit: {
    query(
      request: auditV1.DeepPartial<auditV1.QueryRequest>,
      options?: CallOptionsInput,
    ): Promise<auditV1.AuditRecord[]>;
    getRun(runId: string, options?: CallOptionsInput): Promise<auditV1.GetRunResponse>;
    verify(
      request?: auditV1.DeepPartial<auditV1.VerifyRequest>,
      options?: CallOptionsInput,
    ): Promise<auditV1.VerifyResponse>;
    /** Streams every record of a range in seq order. */
    export(
      request?: auditV1.DeepPartial<auditV1.ExportRequest>,
      options?: CallOptionsInput,
    ): AsyncIterable<auditV1.AuditRecord>;
  };
  /** Checks the health of every service, or of the ones named; never rejects. */
  health(services?: readonly ServiceName[], options?: CallOptionsInput): Promise<ServiceHealth[]>;
  /** Closes every channel; calls in flight are cancelled. */
  close(): void;
}

/** Creates one client for the whole mesh. Channels open on first use. */
export function createCordonClient(options: CordonClientOptions = {}): CordonClient {
  const resolved = resolveOptions(options);
  const channels = new ServiceChannels(resolved);

  const site = (service: ServiceName, method: string): CallSite => ({
    service,
    method,
    address: channels.address(service),
  });

  function unary<Request, Response>(
    service: ServiceName,
    method: string,
    invoke: UnaryMethod<Request, Response>,
    request: Request,
    call: CallOptionsInput,
    retried: boolean,
  ): Promise<Response> {
    const attempt = (): Promise<Response> =>
      callUnaryOnce(invoke, request, site(service, method), resolved, call);
    return retried ? withRetry(resolved, call.signal, attempt) : attempt();
  }

  function readAll<Request, Response, Item>(
    service: ServiceName,
    method: string,
    invoke: StreamMethod<Request, Response>,
    request: Request,
    call: CallOptionsInput,
    pick: (response: Response) => Item | undefined,
  ): Promise<Item[]> {
    const delivered = { count: 0 };
    // A retry after records arrived would deliver them twice, so only a failure before the first one is retried.
    return withRetry(
      resolved,
      call.signal,
      () => readStreamOnce(invoke, request, site(service, method), resolved, call, pick, delivered),
      () => delivered.count === 0,
    );
  }

  const executor = () => channels.service('executor');
  const scanner = () => channels.service('scanner');
  const memory = () => channels.service('memory');
  const audit = () => channels.service('audit');

  return {
    addresses: resolved.addresses,

    execute(request, call = {}) {
      const message = executorV1.ExecuteRequest.fromPartial(request);
      const wallTimeMs = message.limits?.wallTimeMs ?? SERVER_DEFAULT_WALL_TIME_MS;
      const deadlineMs = call.deadlineMs ?? wallTimeMs + resolved.executeDeadlineMarginMs;
      const stream = executor().execute(message, callMetadata(resolved), {
        deadline: Date.now() + deadlineMs,
      });
      return new Execution(stream, site('executor', 'Execute'), call.signal);
    },

    listRuntimes(call = {}) {
      const client = executor();
      return unary(
        'executor',
        'ListRuntimes',
        client.listRuntimes.bind(client) as UnaryMethod<
          executorV1.ListRuntimesRequest,
          executorV1.ListRuntimesResponse
        >,
        {},
        call,
        true,
      );
    },

    scanner: {
      async scan(request, call = {}) {
        const client = scanner();
        const response = await unary(
          'scanner',
          'Scan',
          client.scan.bind(client) as UnaryMethod<scannerV1.ScanRequest, scannerV1.ScanResponse>,
          scannerV1.ScanRequest.fromPartial(request),
          call,
          false,
        );
        return response.report ?? scannerV1.ScanReport.fromPartial({});
      },
      listRules(language = '', call = {}) {
        const client = scanner();
        return unary(
          'scanner',
          'ListRules',
          client.listRules.bind(client) as UnaryMethod<
            scannerV1.ListRulesRequest,
            scannerV1.ListRulesResponse
          >,
          { language },
          call,
          true,
        );
      },
    },

    memory: {
      put(request, call = {}) {
        const client = memory();
        return unary(
          'memory',
          'Put',
          client.put.bind(client) as UnaryMethod<memoryV1.PutRequest, memoryV1.PutResponse>,
          memoryV1.PutRequest.fromPartial(request),
          call,
          false,
        );
      },
      get(namespace, key, call = {}) {
        const client = memory();
        return unary(
          'memory',
          'Get',
          client.get.bind(client) as UnaryMethod<memoryV1.GetRequest, memoryV1.GetResponse>,
          { namespace, key },
          call,
          true,
        );
      },
      delete(request, call = {}) {
        const client = memory();
        return unary(
          'memory',
          'Delete',
          client.delete.bind(client) as UnaryMethod<
            memoryV1.DeleteRequest,
            memoryV1.DeleteResponse
          >,
          memoryV1.DeleteRequest.fromPartial(request),
          call,
          false,
        );
      },
      list(request, call = {}) {
        const client = memory();
        return unary(
          'memory',
          'List',
          client.list.bind(client) as UnaryMethod<memoryV1.ListRequest, memoryV1.ListResponse>,
          memoryV1.ListRequest.fromPartial(request),
          call,
          true,
        );
      },
    },

    audit: {
      query(request, call = {}) {
        const client = audit();
        return readAll(
          'audit',
          'Query',
          client.query.bind(client) as StreamMethod<auditV1.QueryRequest, auditV1.QueryResponse>,
          auditV1.QueryRequest.fromPartial(request),
          call,
          (response) => response.record,
        );
      },
      getRun(runId, call = {}) {
        const client = audit();
        return unary(
          'audit',
          'GetRun',
          client.getRun.bind(client) as UnaryMethod<auditV1.GetRunRequest, auditV1.GetRunResponse>,
          { runId },
          call,
          true,
        );
      },
      verify(request = {}, call = {}) {
        const client = audit();
        return unary(
          'audit',
          'Verify',
          client.verify.bind(client) as UnaryMethod<auditV1.VerifyRequest, auditV1.VerifyResponse>,
          auditV1.VerifyRequest.fromPartial(request),
          call,
          true,
        );
      },
      export(request = {}, call = {}) {
        const client = audit();
        return streamRecords(
          client.export.bind(client),
          auditV1.ExportRequest.fromPartial(request),
          site('audit', 'Export'),
          resolved,
          { ...call, deadlineMs: call.deadlineMs ?? resolved.deadlineMs * EXPORT_DEADLINE_FACTOR },
        );
      },
    },

    health(services = SERVICE_NAMES, call = {}) {
      return Promise.all(services.map((service) => checkHealth(channels, service, resolved, call)));
    },

    close() {
      channels.close();
    },
  };
}

const SERVING_STATUSES = new Set(['SERVING', 'NOT_SERVING', 'UNKNOWN']);

function checkHealth(
  channels: ServiceChannels,
  service: ServiceName,
  options: ResolvedOptions,
  call: CallOptionsInput,
): Promise<ServiceHealth> {
  const address = channels.address(service);
  const client = channels.health(service);
  const deadline = Date.now() + (call.deadlineMs ?? Math.min(options.deadlineMs, 3_000));
  return new Promise((resolve) => {
    let facts: Record<string, string> = {};
    const pending = client.check(
      { service: '' },
      callMetadata(options),
      { deadline },
      (error: Error | null, response: { status?: string } | undefined) => {
        if (error !== null) {
          const failure = toClientError(error, { service, method: 'Check', address });
          resolve({ service, address, status: 'UNREACHABLE', error: failure, facts });
          return;
        }
        const reported = response?.status ?? 'UNKNOWN';
        const known = SERVING_STATUSES.has(reported)
          ? (reported as ServiceHealth['status'])
          : 'UNKNOWN';
        // The trailing metadata arrives with the status, which grpc-js emits before the callback.
        setImmediate(() => {
          resolve({ service, address, status: known, error: undefined, facts });
        });
      },
    );
    pending.on('status', (result: StatusObject) => {
      facts = readFacts(result.metadata);
    });
  });
}

function readFacts(metadata: Metadata): Record<string, string> {
  const facts: Record<string, string> = {};
  for (const [key, value] of Object.entries(metadata.getMap())) {
    if (key.startsWith('cordon-') && typeof value === 'string') {
      facts[key.slice('cordon-'.length)] = value;
    }
  }
  return facts;
}

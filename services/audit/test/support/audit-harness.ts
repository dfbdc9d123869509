import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  credentials,
  Metadata,
  type ClientDuplexStream,
  type ClientReadableStream,
  type ServiceError,
  type StatusObject,
} from '@grpc/grpc-js';
import { auditV1 } from '@cordon/proto';
import {
  killLeftoverProcesses,
  startListeningService,
  type ServiceProcess,
} from '../../../../test/support/service-process.js';
import {
  bearerMetadata,
  mintTestToken,
  type TestRole,
} from '../../../../test/support/test-tokens.js';

/** The built service, started the way `npm start` starts it. */
export const AUDIT_MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

const openClients = new Set<auditV1.AuditServiceClient>();
const runningServices = new Set<ServiceProcess>();
const tempDirs = new Set<string>();

/** Makes a temporary folder that `cleanUp` removes. */
export function makeTempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cordon-audit-test-'));
  tempDirs.add(dir);
  return dir;
}

/** Stops a service with SIGTERM and resolves with how it exited. */
export async function stopService(
  service: ServiceProcess,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  runningServices.delete(service);
  if (service.child.exitCode === null && service.child.signalCode === null) {
    service.child.kill('SIGTERM');
  }
  return service.exited;
}

/**
 * Closes clients, stops the services a test started and left running,
 * removes temporary folders, and returns how many service processes did
 * not exit with code 0 on SIGTERM (those are killed).
 */
export async function cleanUp(): Promise<number> {
  openClients.forEach((client) => {
    client.close();
  });
  openClients.clear();
  let unclean = 0;
  for (const service of [...runningServices]) {
    if (service.child.exitCode !== null || service.child.signalCode !== null) {
      runningServices.delete(service);
      continue;
    }
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([
      stopService(service),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), 10_000);
      }),
    ]);
    clearTimeout(timer);
    if (exit === undefined || exit.code !== 0) {
      unclean += 1;
    }
  }
  const leftovers = (await killLeftoverProcesses()) + unclean;
  tempDirs.forEach((dir) => {
    rmSync(dir, { recursive: true, force: true });
  });
  tempDirs.clear();
  return leftovers;
}

export interface RunningAudit extends ServiceProcess {
  readonly port: number;
  readonly dbPath: string;
  readonly client: auditV1.AuditServiceClient;
}

/** Starts the audit service on 127.0.0.1 with a free port and the database in `dir`. */
export async function startAudit(
  dir: string,
  env: Record<string, string> = {},
): Promise<RunningAudit> {
  const dbPath = join(dir, 'audit.db');
  const service = await startListeningService(AUDIT_MAIN, [], {
    CORDON_AUDIT_ADDRESS: '127.0.0.1:0',
    CORDON_AUDIT_DB_PATH: dbPath,
    ...env,
  });
  runningServices.add(service);
  const client = new auditV1.AuditServiceClient(
    `127.0.0.1:${service.port}`,
    credentials.createInsecure(),
  );
  openClients.add(client);
  return { ...service, dbPath, client };
}

export type Role = TestRole;

/** Subjects of callers a test does not name: an agent without one gets an empty, invalid `sub`. */
const DEFAULT_SUBJECTS: Record<Role, string> = {
  agent: '',
  auditor: 'auditor-1',
  admin: 'admin-1',
  service: 'executor',
  intruder: 'intruder-1',
};

/** Metadata with a token of the test key for `role` and `subject`. */
export function as(role: Role, subject?: string): Metadata {
  return bearerMetadata(subject ?? DEFAULT_SUBJECTS[role], role);
}

/** Metadata with a token of the test service `executor` that expires after `ttlSeconds`. */
export function expiringServiceToken(ttlSeconds: number): Metadata {
  const metadata = new Metadata();
  metadata.set(
    'authorization',
    `Bearer ${mintTestToken({ subject: DEFAULT_SUBJECTS.service, role: 'service', ttlSeconds })}`,
  );
  return metadata;
}

export const SERVICE = as('service');
export const AUDITOR = as('auditor');

/** Builds an event with a fresh id; the given fields override the defaults. */
export function makeEvent(fields: Partial<auditV1.AuditEvent> = {}): auditV1.AuditEvent {
  return auditV1.AuditEvent.fromPartial({
    id: randomUUID(),
    service: 'executor',
    agentId: 'agent-a',
    action: 'execution.started',
    outcome: auditV1.AuditOutcome.AUDIT_OUTCOME_SUCCESS,
    runId: 'run-1',
    ...fields,
  });
}

type Unary<Request, Response> = (
  request: Request,
  metadata: Metadata,
  callback: (error: ServiceError | null, response: Response) => void,
) => unknown;

/** Calls a unary method and resolves with its response or rejects with its ServiceError. */
export function callUnary<Request, Response>(
  method: Unary<Request, Response>,
  request: Request,
  metadata: Metadata,
): Promise<Response> {
  return new Promise((resolve, reject) => {
    method(request, metadata, (error, response) => {
      if (error === null) {
        resolve(response);
      } else {
        reject(error);
      }
    });
  });
}

/** Resolves with the error of a call that is expected to fail. */
export async function failureOf(call: Promise<unknown>): Promise<ServiceError> {
  try {
    await call;
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error('the call succeeded, but a failure was expected');
}

export function append(
  audit: RunningAudit,
  request: Partial<auditV1.AppendRequest>,
  metadata: Metadata = SERVICE,
): Promise<auditV1.AppendResponse> {
  return callUnary(
    audit.client.append.bind(audit.client),
    auditV1.AppendRequest.fromPartial(request),
    metadata,
  );
}

/** An AppendStream call, the responses it received so far, and the status it ends with. */
export interface OpenAppendStream {
  readonly call: ClientDuplexStream<auditV1.AppendRequest, auditV1.AppendResponse>;
  readonly responses: auditV1.AppendResponse[];
  /** Resolves once the status and every response before it arrived. */
  readonly ended: Promise<StatusObject>;
  /** Resolves once at least `count` responses arrived, or rejects when the stream ends before. */
  waitForResponses(count: number): Promise<auditV1.AppendResponse[]>;
}

export function openAppendStream(
  audit: RunningAudit,
  metadata: Metadata = SERVICE,
): OpenAppendStream {
  const call = audit.client.appendStream(metadata);
  const responses: auditV1.AppendResponse[] = [];
  const listeners = new Set<() => void>();
  let status: StatusObject | undefined;
  let readEnded = false;
  const ended = new Promise<StatusObject>((resolve) => {
    const check = (): void => {
      listeners.forEach((listener) => {
        listener();
      });
      if (status !== undefined && readEnded) resolve(status);
    };
    call.on('data', (response: auditV1.AppendResponse) => {
      responses.push(response);
      check();
    });
    call.on('error', () => undefined);
    call.on('status', (received: StatusObject) => {
      status = received;
      check();
    });
    call.on('end', () => {
      readEnded = true;
      check();
    });
  });
  const waitForResponses = (count: number): Promise<auditV1.AppendResponse[]> =>
    new Promise((resolve, reject) => {
      const listener = (): void => {
        if (responses.length >= count) {
          listeners.delete(listener);
          resolve(responses);
        } else if (status !== undefined && readEnded) {
          listeners.delete(listener);
          reject(
            new Error(
              `the stream ended after ${responses.length} of ${count} responses: ${status.details}`,
            ),
          );
        }
      };
      listeners.add(listener);
      listener();
    });
  return { call, responses, ended, waitForResponses };
}

/** Writes every request on one AppendStream, half-closes it, and resolves with the responses and status. */
export async function appendStream(
  audit: RunningAudit,
  requests: readonly Partial<auditV1.AppendRequest>[],
  metadata: Metadata = SERVICE,
): Promise<{ responses: auditV1.AppendResponse[]; status: StatusObject }> {
  const stream = openAppendStream(audit, metadata);
  for (const request of requests) {
    stream.call.write(auditV1.AppendRequest.fromPartial(request));
  }
  stream.call.end();
  const status = await stream.ended;
  return { responses: stream.responses, status };
}

/** Reads a server stream to its end. */
export function collect<T>(stream: ClientReadableStream<T>): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const items: T[] = [];
    stream.on('data', (item: T) => items.push(item));
    stream.on('error', reject);
    stream.on('end', () => resolve(items));
  });
}

export async function query(
  audit: RunningAudit,
  request: Partial<auditV1.QueryRequest>,
  metadata: Metadata = AUDITOR,
): Promise<auditV1.AuditRecord[]> {
  const responses = await collect(
    audit.client.query(auditV1.QueryRequest.fromPartial(request), metadata),
  );
  return responses.map((response) => response.record!);
}

export async function exportRecords(
  audit: RunningAudit,
  request: Partial<auditV1.ExportRequest> = {},
  metadata: Metadata = AUDITOR,
): Promise<auditV1.AuditRecord[]> {
  const responses = await collect(
    audit.client.export(auditV1.ExportRequest.fromPartial(request), metadata),
  );
  return responses.map((response) => response.record!);
}

export function verify(
  audit: RunningAudit,
  request: Partial<auditV1.VerifyRequest> = {},
  metadata: Metadata = AUDITOR,
): Promise<auditV1.VerifyResponse> {
  return callUnary(
    audit.client.verify.bind(audit.client),
    auditV1.VerifyRequest.fromPartial(request),
    metadata,
  );
}

export function getRun(
  audit: RunningAudit,
  runId: string,
  metadata: Metadata = AUDITOR,
): Promise<auditV1.GetRunResponse> {
  return callUnary(audit.client.getRun.bind(audit.client), { runId }, metadata);
}

/** Runs SQL on the database with the sqlite3 command-line tool, as someone with file access could. */
export function sqlite(dbPath: string, sql: string): string {
  return execFileSync('sqlite3', [dbPath, sql], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

import { Ajv2020 } from 'ajv/dist/2020.js';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { credentials, type Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { commonV1, scannerV1 } from '@cordon/proto';
import { callUnary, readErrorDetails } from '@cordon/service-kit';
import {
  killLeftoverProcesses,
  startListeningService,
  type ServiceProcess,
} from '../../../../test/support/service-process.js';
import { agentMetadata, bearerMetadata } from '../../../../test/support/test-tokens.js';

export {
  startFakeAudit,
  type FakeAudit,
  type ReceivedAppend,
} from '../../../../test/support/fake-audit.js';

/** The built service, started the way `npm start` starts it. */
export const SCANNER_MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

/** The Microsoft SARIF SDK's copy of the SARIF 2.1.0 schema (sarif-2.1.0.json, MIT). */
export const SARIF_SCHEMA = JSON.parse(
  readFileSync(new URL('../fixtures/sarif-schema-2.1.0.json', import.meta.url), 'utf8'),
) as Record<string, unknown>;

/** Checks a SARIF log against the 2.1.0 schema; returns the problems, [] when it is valid. */
export function sarifSchemaErrors(log: unknown): string[] {
  const ajv = new Ajv2020({ allErrors: true, strict: false, validateFormats: false });
  const check = ajv.compile(SARIF_SCHEMA as object);
  check(log);
  return (check.errors ?? []).map((error) => `${error.instancePath} ${error.message ?? ''}`);
}

const openClients = new Set<scannerV1.ScannerServiceClient>();

/** A file for a Scan request, given as text. */
export interface TextFile {
  readonly path: string;
  readonly text: string;
}

export interface ScannerUnderTest {
  readonly process: ServiceProcess & { port: number };
  readonly address: string;
  /** Scans as agent `agentId` (default "scan-tester"); `metadata` replaces the agent's token. */
  scan(
    request: Partial<scannerV1.ScanRequest> & { textFiles?: readonly TextFile[] },
    metadata?: Metadata,
  ): Promise<scannerV1.ScanReport>;
  listRules(language?: string, metadata?: Metadata): Promise<scannerV1.ListRulesResponse>;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the real scanner service process on a free loopback port. */
export async function startScanner(env: Record<string, string> = {}): Promise<ScannerUnderTest> {
  const service = await startListeningService(SCANNER_MAIN, [], {
    CORDON_SCANNER_ADDRESS: '127.0.0.1:0',
    CORDON_LOG_LEVEL: 'info',
    ...env,
  });
  const address = `127.0.0.1:${service.port}`;
  const client = new scannerV1.ScannerServiceClient(address, credentials.createInsecure(), {
    'grpc.max_send_message_length': 64 * 1024 ** 2,
  });
  openClients.add(client);
  return {
    process: service,
    address,
    scan: async ({ textFiles = [], ...request }, metadata = agentMetadata('scan-tester')) => {
      const full = scannerV1.ScanRequest.fromPartial({
        ...request,
        files: [
          ...(request.files ?? []),
          ...textFiles.map((file) => ({ path: file.path, content: Buffer.from(file.text) })),
        ],
      });
      const response = await callUnary(client.scan.bind(client), full, {
        deadlineMs: 30_000,
        metadata,
      });
      return response.report ?? scannerV1.ScanReport.fromPartial({});
    },
    listRules: (language = '', metadata = bearerMetadata('rule-reader', 'agent')) =>
      callUnary(client.listRules.bind(client), { language }, { deadlineMs: 5_000, metadata }),
    stop: async (signal = 'SIGTERM') => {
      openClients.delete(client);
      client.close();
      if (service.child.exitCode === null && service.child.signalCode === null) {
        service.child.kill(signal);
      }
      return service.exited;
    },
  };
}

/** Returns the status a failed call ended with, and its ErrorDetails. */
export async function failureOf(call: Promise<unknown>): Promise<{
  code: string;
  message: string;
  details: commonV1.ErrorDetails | undefined;
}> {
  try {
    await call;
  } catch (error) {
    const serviceError = error as ServiceError;
    return {
      code: status[serviceError.code],
      message: serviceError.details,
      details: readErrorDetails(serviceError.metadata),
    };
  }
  throw new Error('the call succeeded but a failure was expected');
}

/** Returns the severity name of a finding, as a reader checks it: HIGH, INFO… */
export function severityOf(finding: commonV1.Finding): string {
  return commonV1.severityToJSON(finding.severity).replace('SEVERITY_', '');
}

/** Closes clients and kills service processes a test left running. */
export async function cleanUpHarness(): Promise<void> {
  for (const client of openClients) client.close();
  openClients.clear();
  await killLeftoverProcesses();
}

import { execFile, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  killLeftoverProcesses,
  startListeningService,
  type ServiceProcess,
} from '../../test/support/service-process.js';
import { mintTestToken, testKeyFile } from '../../test/support/test-tokens.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const main = (service: string): string => join(root, 'services', service, 'dist', 'main.js');

/** The cordon command as a user runs it. */
export const CORDON_BIN = join(root, 'cli', 'bin', 'cordon.js');
export const EXAMPLES = join(root, 'examples');

export interface Mesh {
  readonly folder: string;
  readonly executorId: string;
  readonly executor: ServiceProcess & { port: number };
  readonly memory: ServiceProcess & { port: number };
  readonly audit: ServiceProcess & { port: number };
  readonly scanner: ServiceProcess & { port: number };
  /** Environment that points the CLI and the client at this mesh, without a token. */
  readonly env: Record<string, string>;
  /** Containers of this mesh's executor that still exist. */
  containers(): string[];
  stop(): Promise<string[]>;
}

/**
 * Starts audit, memory and executor as separate processes on free loopback
 * ports, all verifying tokens signed with the test key. The executor runs
 * under Docker and appends to this audit service.
 */
export interface MeshOptions {
  /** CORDON_SCAN_POLICY of the executor; default "report". */
  readonly scanPolicy?: string;
}

export async function startMesh(options: MeshOptions = {}): Promise<Mesh> {
  const folder = mkdtempSync(join(tmpdir(), 'cordon-cli-'));
  const audit = await startListeningService(main('audit'), [], {
    CORDON_AUDIT_ADDRESS: '127.0.0.1:0',
    CORDON_AUDIT_DB_PATH: join(folder, 'audit.db'),
  });
  const auditAddress = `127.0.0.1:${audit.port}`;
  const memory = await startListeningService(main('memory'), [], {
    CORDON_MEMORY_ADDRESS: '127.0.0.1:0',
    CORDON_MEMORY_DB_PATH: join(folder, 'memory.db'),
    CORDON_AUDIT_ADDRESS: auditAddress,
  });
  const scanner = await startListeningService(main('scanner'), [], {
    CORDON_SCANNER_ADDRESS: '127.0.0.1:0',
    CORDON_AUDIT_ADDRESS: auditAddress,
  });
  const executorId = `test-${randomUUID()}`;
  const executor = await startListeningService(main('executor'), [], {
    CORDON_EXECUTOR_ADDRESS: '127.0.0.1:0',
    CORDON_EXECUTOR_ID: executorId,
    CORDON_AUDIT_ADDRESS: auditAddress,
    CORDON_SCANNER_ADDRESS: `127.0.0.1:${scanner.port}`,
    CORDON_SCAN_POLICY: options.scanPolicy ?? 'report',
    CORDON_EXECUTOR_SPOOL_DIR: join(folder, 'spool'),
    // The suites run more programs a minute than an agent's default share allows.
    CORDON_EXECUTOR_RUNS_PER_MINUTE: '100000',
  });

  const containers = (): string[] =>
    execFileSync('docker', ['ps', '-aq', '--filter', `label=cordon.executor-id=${executorId}`], {
      encoding: 'utf8',
    })
      .split('\n')
      .filter((line) => line !== '');

  return {
    folder,
    executorId,
    executor,
    memory,
    audit,
    scanner,
    env: {
      CORDON_EXECUTOR_ADDRESS: `127.0.0.1:${executor.port}`,
      CORDON_SCANNER_ADDRESS: `127.0.0.1:${scanner.port}`,
      CORDON_MEMORY_ADDRESS: `127.0.0.1:${memory.port}`,
      CORDON_AUDIT_ADDRESS: auditAddress,
    },
    containers,
    stop: async () => {
      // SIGTERM lets the executor remove its warm sandboxes; SIGKILL would leave them.
      executor.child.kill('SIGTERM');
      await executor.exited;
      await killLeftoverProcesses();
      const leftovers = containers();
      if (leftovers.length > 0) execFileSync('docker', ['rm', '-f', ...leftovers]);
      rmSync(folder, { recursive: true, force: true });
      return leftovers;
    },
  };
}

/** A token of the test key for an agent or an auditor. */
export function token(subject: string, role: 'agent' | 'auditor' | 'admin' = 'agent'): string {
  return mintTestToken({ subject, role });
}

export { testKeyFile };

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `cordon` as a child process with only the given environment (plus
 * PATH and HOME), so no token or address of the machine leaks in.
 */
export function cordon(
  args: readonly string[],
  env: Record<string, string>,
  stdin?: string,
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [CORDON_BIN, ...args],
      {
        cwd: root,
        env: {
          PATH: process.env['PATH'] ?? '/usr/bin:/bin',
          HOME: join(tmpdir(), 'cordon-cli-no-home'),
          ...env,
        },
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        let code: number | null = 0;
        if (error !== null) code = typeof error.code === 'number' ? error.code : null;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(stdin ?? '');
  });
}

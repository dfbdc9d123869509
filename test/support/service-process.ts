import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { testKeyFile } from './test-tokens.js';

/** One JSON log line written by a service. */
export type LogLine = Record<string, unknown> & { msg?: string; level?: string };

export interface ServiceProcess {
  readonly child: ChildProcess;
  /** Every JSON line the process wrote to stdout so far. */
  readonly logs: LogLine[];
  /** Everything the process wrote to stderr so far. */
  readonly stderr: () => string;
  /** Resolves with the exit code (or the signal) when the process ends. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first log line that matches, or rejects after the timeout. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
}

const running = new Set<ChildProcess>();

/**
 * Starts a Node.js service script as its own process, loaded the way
 * services are run: with the kit's register hook, so tracing is live.
 * The service verifies tokens with the test process's key unless `env`
 * names another CORDON_TOKEN_KEY_FILE.
 */
export function startServiceProcess(
  script: string,
  args: string[],
  env: Record<string, string>,
): ServiceProcess {
  const child = spawn(
    process.execPath,
    ['--import', '@cordon/service-kit/register', script, ...args],
    {
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        CORDON_TOKEN_KEY_FILE: testKeyFile(),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  running.add(child);

  const logs: LogLine[] = [];
  const waiters = new Set<() => void>();
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      logs.push(JSON.parse(line) as LogLine);
    } catch {
      logs.push({ msg: line, level: 'unparsed' });
    }
    waiters.forEach((notify) => {
      notify();
    });
  });

  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    });
  });

  const waitForLog = (match: (line: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = logs.find(match);
        if (found !== undefined) {
          cleanup();
          resolve(found);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(
            `no matching log line within ${timeoutMs} ms; stderr: ${stderr}; logs: ${JSON.stringify(logs)}`,
          ),
        );
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  return { child, logs, stderr: () => stderr, exited, waitForLog };
}

/** Starts a service and waits until it logs the port it listens on. */
export async function startListeningService(
  script: string,
  args: string[],
  env: Record<string, string>,
): Promise<ServiceProcess & { port: number }> {
  const service = startServiceProcess(script, args, env);
  const started = await service.waitForLog((line) => line.msg === 'service started');
  return { ...service, port: started['port'] as number };
}

/** Kills every service process a test left running and reports how many there were. */
export async function killLeftoverProcesses(): Promise<number> {
  const leftovers = [...running];
  for (const child of leftovers) {
    child.kill('SIGKILL');
  }
  await Promise.all(
    leftovers.map((child) => new Promise((resolve) => child.once('exit', resolve))),
  );
  return leftovers.length;
}

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { commonV1 } from '@cordon/proto';
import type { Logger } from '@cordon/service-kit';
import type { SourceFile } from './scan-engine.js';
import type { ScanJob, ScanJobResult, WorkerStatus } from './scan-worker.js';

const WORKER_SCRIPT = new URL('./scan-worker.js', import.meta.url);

/** A scan that ran past its deadline in `path`. */
export class PoolDeadlineError extends Error {
  constructor(readonly path: string) {
    super(`scanning ${path} did not finish before the scan's deadline`);
    this.name = 'PoolDeadlineError';
  }
}

interface PendingJob {
  readonly job: ScanJob;
  resolve(findings: commonV1.Finding[]): void;
  reject(error: Error): void;
}

interface PoolWorker {
  worker: Worker;
  busy: PendingJob | undefined;
}

/**
 * Worker threads that parse and match, so a long scan never holds up the
 * service's event loop (health checks, other calls) and scans use every
 * core. A request's files are split across the idle workers; jobs beyond
 * the workers wait in a FIFO queue.
 */
export class ScanPool {
  private readonly workers: PoolWorker[] = [];
  private readonly queue: PendingJob[] = [];
  private nextId = 1;
  private closing = false;

  private constructor(
    private readonly rulesDir: string | undefined,
    private readonly logger: Logger,
  ) {}

  /** Starts `size` workers (default: one per core, at most 4) and waits until each loaded the rules. */
  static async start(options: {
    size?: number;
    rulesDir: string | undefined;
    logger: Logger;
  }): Promise<ScanPool> {
    const pool = new ScanPool(options.rulesDir, options.logger);
    const size = options.size ?? Math.min(4, availableParallelism());
    await Promise.all(Array.from({ length: size }, () => pool.spawn()));
    return pool;
  }

  get size(): number {
    return this.workers.length;
  }

  /** Scans the files within `budgetMs`; the findings keep the order of the files. */
  async scan(sources: readonly SourceFile[], budgetMs: number): Promise<commonV1.Finding[]> {
    if (sources.length === 0) return [];
    const chunks = splitEvenly(sources, Math.min(this.workers.length, sources.length));
    const results = await Promise.all(
      chunks.map(
        (chunk) =>
          new Promise<commonV1.Finding[]>((resolve, reject) => {
            this.queue.push({
              job: { id: this.nextId++, sources: chunk, budgetMs },
              resolve,
              reject,
            });
            this.dispatch();
          }),
      ),
    );
    return results.flat();
  }

  /** Stops every worker; jobs still waiting fail. */
  async close(): Promise<void> {
    this.closing = true;
    for (const pending of this.queue.splice(0))
      pending.reject(new Error('the scanner is shutting down'));
    await Promise.all(this.workers.map(({ worker }) => worker.terminate()));
  }

  private spawn(): Promise<void> {
    return new Promise((resolve, reject) => {
      const worker = new Worker(WORKER_SCRIPT, { workerData: { rulesDir: this.rulesDir } });
      const entry: PoolWorker = { worker, busy: undefined };
      worker.once('message', (status: WorkerStatus) => {
        if (status.kind === 'start-failed') {
          reject(new Error(status.message));
          void worker.terminate();
          return;
        }
        this.workers.push(entry);
        worker.on('message', (result: ScanJobResult) => {
          this.finish(entry, result);
        });
        this.dispatch();
        resolve();
      });
      worker.on('error', (error) => {
        reject(error);
        this.replace(entry, error);
      });
      // A worker can also end without an 'error' event (process.exit in the
      // runtime, a terminate); its job must not wait forever.
      worker.on('exit', (code) => {
        this.replace(entry, new Error(`scan worker exited with code ${code}`));
      });
    });
  }

  /** Replaces a worker that died (a crash in the parser); its job fails. */
  private replace(entry: PoolWorker, error: Error): void {
    const index = this.workers.indexOf(entry);
    if (index === -1 || this.closing) return;
    this.workers.splice(index, 1);
    entry.busy?.reject(new Error('a scan worker stopped', { cause: error }));
    entry.busy = undefined;
    this.logger.error({ err: error }, 'scan worker stopped; starting another');
    this.spawn().catch((spawnError: unknown) => {
      this.logger.error({ err: spawnError }, 'could not start a scan worker');
    });
  }

  private finish(entry: PoolWorker, result: ScanJobResult): void {
    const pending = entry.busy;
    entry.busy = undefined;
    if (pending !== undefined && pending.job.id === result.id) {
      if (result.kind === 'done') pending.resolve(result.findings as commonV1.Finding[]);
      else if (result.kind === 'deadline') pending.reject(new PoolDeadlineError(result.path));
      else pending.reject(new Error(`scan worker failed: ${result.message}`));
    }
    this.dispatch();
  }

  private dispatch(): void {
    for (const entry of this.workers) {
      if (entry.busy !== undefined) continue;
      const next = this.queue.shift();
      if (next === undefined) return;
      entry.busy = next;
      entry.worker.postMessage(next.job);
    }
  }
}

/** Splits files into `count` runs of consecutive files with about the same number of bytes each. */
function splitEvenly(sources: readonly SourceFile[], count: number): SourceFile[][] {
  const total = sources.reduce((sum, source) => sum + source.text.length, 0);
  const target = total / count;
  const chunks: SourceFile[][] = [];
  let current: SourceFile[] = [];
  let size = 0;
  for (const source of sources) {
    if (current.length > 0 && size >= target && chunks.length < count - 1) {
      chunks.push(current);
      current = [];
      size = 0;
    }
    current.push(source);
    size += source.text.length;
  }
  chunks.push(current);
  return chunks;
}

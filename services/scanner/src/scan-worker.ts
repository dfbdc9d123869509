import { parentPort, workerData } from 'node:worker_threads';
import { ScanDeadlineError, ScanEngine, type SourceFile } from './scan-engine.js';

/** Job the pool sends a worker: files to scan within `budgetMs`. */
export interface ScanJob {
  readonly id: number;
  readonly sources: readonly SourceFile[];
  readonly budgetMs: number;
}

/** Result a worker returns: the findings, or why there are none. */
export type ScanJobResult =
  | { readonly id: number; readonly kind: 'done'; readonly findings: unknown[] }
  | { readonly id: number; readonly kind: 'deadline'; readonly path: string }
  | { readonly id: number; readonly kind: 'failed'; readonly message: string };

/** The first message of a worker: whether its engine loaded. */
export type WorkerStatus =
  { readonly kind: 'ready' } | { readonly kind: 'start-failed'; readonly message: string };

const port = parentPort;
if (port === null) throw new Error('scan-worker.js runs only as a worker thread of the scan pool');

const { rulesDir } = workerData as { rulesDir: string | undefined };

async function start(): Promise<ScanEngine | undefined> {
  try {
    const engine = await ScanEngine.create(rulesDir);
    engine.compileAll();
    port?.postMessage({ kind: 'ready' } satisfies WorkerStatus);
    return engine;
  } catch (error) {
    port?.postMessage({
      kind: 'start-failed',
      message: (error as Error).message,
    } satisfies WorkerStatus);
    return undefined;
  }
}

function run(engine: ScanEngine, job: ScanJob): ScanJobResult {
  const deadline = performance.now() + job.budgetMs;
  const findings: unknown[] = [];
  try {
    for (const source of job.sources) findings.push(...engine.scanFile(source, deadline));
    return { id: job.id, kind: 'done', findings };
  } catch (error) {
    if (error instanceof ScanDeadlineError)
      return { id: job.id, kind: 'deadline', path: error.path };
    return { id: job.id, kind: 'failed', message: (error as Error).stack ?? String(error) };
  }
}

const engine = await start();
if (engine !== undefined) {
  port.on('message', (job: ScanJob) => {
    port.postMessage(run(engine, job));
  });
}

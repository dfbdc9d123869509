import { Worker } from 'node:worker_threads';
import type { Logger } from '@cordon/service-kit';
import type { PreparedAppend } from './append-request.js';
import type { AppendOutcome, StoreSettings } from './audit-store.js';

/** Messages from the service to the writer thread. */
export type WriterRequest =
  | { readonly kind: 'write'; readonly id: number; readonly items: readonly PreparedAppend[] }
  | { readonly kind: 'close' };

/** Messages from the writer thread to the service. */
export type WriterReply =
  | { readonly kind: 'ready'; readonly settings: StoreSettings }
  | { readonly kind: 'written'; readonly id: number; readonly outcomes: AppendOutcome[] }
  | {
      readonly kind: 'failed';
      readonly id: number;
      readonly message: string;
      readonly code: string | undefined;
    };

/** Committer of batches of prepared Appends. */
export interface BatchWriter {
  /** Resolves once the batch has committed, with one outcome per item in order. */
  write(items: readonly PreparedAppend[]): Promise<AppendOutcome[]>;
  close(): Promise<void>;
}

/** A failed commit in the writer thread, with SQLite's error code when there is one. */
export class WriteFailedError extends Error {
  readonly code: string | undefined;

  constructor(message: string, code: string | undefined) {
    super(message);
    this.name = 'WriteFailedError';
    this.code = code;
  }
}

interface Waiter {
  readonly resolve: (outcomes: AppendOutcome[]) => void;
  readonly reject: (error: Error) => void;
}

/**
 * The writer thread seen from the service: posts batches, matches replies
 * to them, and fails every waiting batch when the thread dies.
 */
export class StoreWriterThread implements BatchWriter {
  /** Durability settings of the writing connection. */
  readonly settings: StoreSettings;
  private readonly worker: Worker;
  private readonly logger: Logger;
  private readonly waiters = new Map<number, Waiter>();
  private nextId = 1;
  private stopped: Error | undefined;
  private readonly exited: Promise<number>;

  private constructor(worker: Worker, settings: StoreSettings, logger: Logger) {
    this.worker = worker;
    this.logger = logger;
    this.settings = settings;
    this.exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.on('message', (reply: WriterReply) => {
      this.settle(reply);
    });
    worker.once('error', (error) => {
      this.fail(new Error(`the audit writer thread failed: ${error.message}`, { cause: error }));
    });
    void this.exited.then((code) => {
      this.fail(new Error(`the audit writer thread exited with code ${code}`));
    });
  }

  /** Starts the thread and resolves once it has opened the database. */
  static async start(databasePath: string, logger: Logger): Promise<StoreWriterThread> {
    // The thread makes no gRPC calls, so an empty execArgv keeps the
    // OpenTelemetry loader hook out of it.
    const worker = new Worker(new URL('./store-writer.js', import.meta.url), {
      workerData: { databasePath },
      execArgv: [],
    });
    const settings = await new Promise<StoreSettings>((resolve, reject) => {
      worker.once('message', (reply: WriterReply) => {
        if (reply.kind === 'ready') {
          worker.off('error', reject);
          resolve(reply.settings);
        }
      });
      worker.once('error', reject);
      worker.once('exit', (code) => {
        reject(
          new Error(
            `the audit writer thread exited with code ${code} before it opened the database`,
          ),
        );
      });
    });
    return new StoreWriterThread(worker, settings, logger);
  }

  write(items: readonly PreparedAppend[]): Promise<AppendOutcome[]> {
    if (this.stopped !== undefined) {
      return Promise.reject(this.stopped);
    }
    const id = this.nextId;
    this.nextId += 1;
    return new Promise((resolve, reject) => {
      this.waiters.set(id, { resolve, reject });
      this.worker.postMessage({ kind: 'write', id, items } satisfies WriterRequest);
    });
  }

  private settle(reply: WriterReply): void {
    if (reply.kind === 'ready') {
      return;
    }
    const waiter = this.waiters.get(reply.id);
    this.waiters.delete(reply.id);
    if (reply.kind === 'written') {
      waiter?.resolve(reply.outcomes);
    } else {
      waiter?.reject(new WriteFailedError(reply.message, reply.code));
    }
  }

  /** Fails every waiting batch, and every later one, with `error`; logs it unless the thread was closed. */
  private fail(error: Error): void {
    if (this.stopped === undefined) {
      this.logger.error(
        { err: error, batches_waiting: this.waiters.size },
        'audit writer thread stopped; appends fail until the service restarts',
      );
      this.stopped = error;
    }
    for (const waiter of this.waiters.values()) {
      waiter.reject(error);
    }
    this.waiters.clear();
  }

  /** Asks the thread to checkpoint and close the database, and waits for it to exit. */
  async close(): Promise<void> {
    if (this.stopped === undefined) {
      this.stopped = new Error('the audit writer thread is closed');
      this.worker.postMessage({ kind: 'close' } satisfies WriterRequest);
    }
    await this.exited;
  }
}

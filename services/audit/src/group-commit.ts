import type { PreparedAppend } from './append-request.js';
import type { AppendOutcome } from './audit-store.js';
import type { BatchWriter } from './store-writer.js';

/** Most events one transaction takes; the rest wait for the next one. */
const MAX_BATCH_EVENTS = 1000;

interface PendingAppend {
  readonly item: PreparedAppend;
  readonly resolve: (outcome: AppendOutcome) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Group commit: one batch is being committed at a time, and every Append
 * that arrives meanwhile joins the next batch, so one fsync of the
 * write-ahead log makes the whole batch durable. No promise resolves
 * before its batch has committed, so an acknowledged Append is on disk.
 */
export class GroupCommit {
  private readonly writer: BatchWriter;
  private pending: PendingAppend[] = [];
  private scheduled = false;
  private writing = false;
  private idleWaiters: (() => void)[] = [];
  private batches = 0;
  private events = 0;

  constructor(writer: BatchWriter) {
    this.writer = writer;
  }

  /** Resolves once the event's batch has committed. */
  append(item: PreparedAppend): Promise<AppendOutcome> {
    return new Promise((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /** Batches committed and events they held, since start. */
  get stats(): { batches: number; events: number } {
    return { batches: this.batches, events: this.events };
  }

  /** Waits until nothing is pending or being written, then closes the writer. */
  async close(): Promise<void> {
    if (this.writing || this.pending.length > 0) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    }
    await this.writer.close();
  }

  // Appends that arrive in the same turn of the event loop are gathered
  // before the first batch goes out.
  private schedule(): void {
    if (this.scheduled || this.writing) {
      return;
    }
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.writeBatches();
    });
  }

  /** Writes batches until nothing is pending; what arrives during a commit forms the next batch. */
  private async writeBatches(): Promise<void> {
    this.writing = true;
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, MAX_BATCH_EVENTS);
      try {
        const outcomes = await this.writer.write(batch.map((entry) => entry.item));
        this.batches += 1;
        this.events += batch.length;
        batch.forEach((entry, index) => {
          const outcome = outcomes[index];
          if (outcome === undefined) {
            entry.reject(new Error(`the writer returned no outcome for event ${index} of a batch`));
          } else {
            entry.resolve(outcome);
          }
        });
      } catch (error) {
        batch.forEach((entry) => {
          entry.reject(error);
        });
      }
    }
    this.writing = false;
    this.idleWaiters.splice(0).forEach((resolve) => {
      resolve();
    });
  }
}

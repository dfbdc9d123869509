import { status } from '@grpc/grpc-js';
import { CordonError } from '@cordon/service-kit';

export interface RunSlotsOptions {
  /** Sandboxes that may run at once. */
  readonly capacity: number;
  /** Runs that may wait for a slot; one more is rejected at once. */
  readonly maxQueued: number;
  /** How long a run may wait for a slot before it is rejected. */
  readonly queueTimeoutMs: number;
}

/**
 * Counts sandboxes in use: at most `capacity` at once, later runs wait in a
 * bounded first-in, first-out queue. A run that finds the queue full, or
 * waits longer than the queue timeout, fails RESOURCE_EXHAUSTED.
 */
export class RunSlots {
  private inUse = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly options: RunSlotsOptions) {}

  get active(): number {
    return this.inUse;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Waits for a free slot and returns its release function. */
  async acquire(signal: AbortSignal): Promise<() => void> {
    signal.throwIfAborted();
    if (this.inUse < this.options.capacity) {
      this.inUse += 1;
      return this.releaser();
    }
    if (this.waiting.length >= this.options.maxQueued) {
      throw this.exhausted(
        `the run queue is full (${this.waiting.length} of ${this.options.maxQueued} waiting, ${this.inUse} running); try again later`,
      );
    }
    await this.wait(signal);
    return this.releaser();
  }

  private wait(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const leave = (): void => {
        const index = this.waiting.indexOf(grant);
        if (index !== -1) this.waiting.splice(index, 1);
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      };
      const grant = (): void => {
        leave();
        resolve();
      };
      const onAbort = (): void => {
        leave();
        reject(signal.reason as Error);
      };
      const timer = setTimeout(() => {
        leave();
        reject(
          this.exhausted(
            `no sandbox slot became free within the queue timeout of ${this.options.queueTimeoutMs} ms (${this.inUse} running); try again later`,
          ),
        );
      }, this.options.queueTimeoutMs);
      this.waiting.push(grant);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private exhausted(message: string): CordonError {
    return new CordonError(status.RESOURCE_EXHAUSTED, message, {
      details: {
        queueLength: this.waiting.length,
        queueCapacity: this.options.maxQueued,
        retryAfterMs: 1000,
      },
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting[0];
      if (next === undefined) {
        this.inUse -= 1;
      } else {
        // The slot passes straight to the next run, so inUse stays the same.
        next();
      }
    };
  }
}

import { status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import type { executorV1 } from '@cordon/proto';
import { CordonClientError, toClientError, type CallSite } from './client-error.js';
import { cancelledError } from './calls.js';

/** One event of a run, as the executor streams it: `{ $case, value }`. */
export type ExecutionEvent = NonNullable<executorV1.ExecuteResponse['event']>;

/** What a run came to, once its stream ended with a `RunExited`. */
export interface ExecutionResult {
  started: executorV1.RunStarted;
  exited: executorV1.RunExited;
  /** The scan report, when the executor's scan policy is "report". */
  scan: executorV1.ScanReported | undefined;
}

type Waiter = () => void;

/**
 * A running program. Iterate it for the events as they arrive, or await
 * `result` for the outcome. Events are buffered until they are read, so a
 * caller that only awaits `result` holds the run's whole output in memory
 * (at most the run's `max_output_bytes`). Breaking out of the loop, or
 * aborting the signal, cancels the call, and the executor then kills the
 * program.
 */
export class Execution implements AsyncIterable<ExecutionEvent> {
  readonly result: Promise<ExecutionResult>;

  private readonly queue: ExecutionEvent[] = [];
  private waiter: Waiter | undefined;
  private failure: CordonClientError | undefined;
  private ended = false;
  private exited = false;
  private iterated = false;
  private started: executorV1.RunStarted | undefined;
  private scan: executorV1.ScanReported | undefined;
  private settle!: { resolve: (value: ExecutionResult) => void; reject: (error: unknown) => void };

  constructor(
    private readonly stream: ClientReadableStream<executorV1.ExecuteResponse>,
    private readonly site: CallSite,
    signal: AbortSignal | undefined,
  ) {
    this.result = new Promise((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    // A caller that only iterates must not see an unhandled rejection.
    this.result.catch(() => undefined);

    const onAbort = (): void => {
      this.fail(cancelledError(site));
      stream.cancel();
    };
    if (signal?.aborted === true) {
      onAbort();
    } else {
      signal?.addEventListener('abort', onAbort, { once: true });
    }

    stream.on('data', (response: executorV1.ExecuteResponse) => {
      this.receive(response);
    });
    stream.on('error', (error: ServiceError) => {
      signal?.removeEventListener('abort', onAbort);
      this.fail(toClientError(error, site));
    });
    stream.on('end', () => {
      signal?.removeEventListener('abort', onAbort);
      this.finish();
    });
  }

  /** Cancels the run; the executor kills the program and removes its sandbox. */
  cancel(): void {
    this.fail(cancelledError(this.site));
    this.stream.cancel();
  }

  private receive(response: ExecuteResponse): void {
    const event = response.event;
    if (event === undefined || this.failure !== undefined) {
      return;
    }
    if (event.$case === 'started') {
      this.started = event.value;
    } else if (event.$case === 'scan') {
      this.scan = event.value;
    } else if (event.$case === 'exited') {
      if (this.started === undefined) {
        this.fail(this.protocolError('sent RunExited before RunStarted'));
        return;
      }
      this.exited = true;
      this.settle.resolve({ started: this.started, exited: event.value, scan: this.scan });
    }
    this.queue.push(event);
    this.wake();
  }

  private finish(): void {
    if (this.failure === undefined && !this.ended) {
      // The result is already resolved when RunExited arrived; this rejection is then ignored.
      this.settle.reject(this.protocolError('ended the stream without RunExited'));
    }
    this.ended = true;
    this.wake();
  }

  private fail(error: CordonClientError): void {
    // Once RunExited arrived the outcome stands, whatever happens to the call afterwards.
    if (this.failure !== undefined || this.ended || this.exited) {
      return;
    }
    this.failure = error;
    this.settle.reject(error);
    this.wake();
  }

  private protocolError(what: string): CordonClientError {
    return new CordonClientError(
      status.INTERNAL,
      `the executor at ${this.site.address} ${what}; it may be an incompatible version`,
      this.site,
    );
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<ExecutionEvent, void, undefined> {
    if (this.iterated) {
      throw new Error('an Execution can be iterated only once');
    }
    this.iterated = true;
    try {
      for (;;) {
        const event = this.queue.shift();
        if (event !== undefined) {
          yield event;
          continue;
        }
        if (this.failure !== undefined) {
          throw this.failure;
        }
        if (this.ended) {
          // Surfaces a stream that ended without RunExited.
          await this.result;
          return;
        }
        await new Promise<void>((resolve) => {
          this.waiter = resolve;
        });
      }
    } finally {
      if (!this.ended && this.failure === undefined && !this.exited) {
        this.cancel();
      }
    }
  }
}

type ExecuteResponse = executorV1.ExecuteResponse;

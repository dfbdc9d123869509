import type { Writable } from 'node:stream';
import { executorV1 } from '@cordon/proto';
import { formatMs, formatSize } from './units.js';

const { RunStatus } = executorV1;

const STATUS_WORDS: Readonly<Record<number, string>> = {
  [RunStatus.RUN_STATUS_OK]: 'ok',
  [RunStatus.RUN_STATUS_RUNTIME_ERROR]: 'runtime error',
  [RunStatus.RUN_STATUS_COMPILE_ERROR]: 'compile error',
  [RunStatus.RUN_STATUS_WALL_TIMEOUT]: 'wall timeout',
  [RunStatus.RUN_STATUS_CPU_TIMEOUT]: 'cpu timeout',
  [RunStatus.RUN_STATUS_MEMORY_LIMIT]: 'memory limit',
  [RunStatus.RUN_STATUS_OUTPUT_LIMIT]: 'output limit',
  [RunStatus.RUN_STATUS_CANCELLED]: 'cancelled',
  [RunStatus.RUN_STATUS_INTERNAL_ERROR]: 'internal error',
};

/** The run's status in words, as the summary line and the audit timeline print it. */
export function statusWords(status: executorV1.RunStatus): string {
  return STATUS_WORDS[status] ?? 'unknown status';
}

function outcome(exited: executorV1.RunExited): string {
  if (exited.status === RunStatus.RUN_STATUS_OK) {
    return `exit code ${exited.exitCode ?? 0}`;
  }
  if (exited.message !== '') {
    return exited.message;
  }
  if (exited.exitCode !== undefined) return `exit code ${exited.exitCode}`;
  return exited.signal === undefined ? 'no exit code' : `signal ${exited.signal}`;
}

/**
 * The one line `cordon run` writes to stderr when a run ends, e.g.
 * "cordon: ok, exit code 0; wall 312 ms, cpu 95 ms, peak memory 8.1 MiB; run 3f…; trace 4b…".
 */
export function summaryLine(started: executorV1.RunStarted, exited: executorV1.RunExited): string {
  const usage = `wall ${formatMs(exited.wallTimeMs)}, cpu ${formatMs(exited.cpuTimeMs)}, peak memory ${formatSize(exited.peakMemoryBytes)}`;
  return `cordon: ${statusWords(exited.status)}, ${outcome(exited)}; ${usage}; run ${started.runId}; trace ${started.traceId}`;
}

const FRAMES = ['|', '/', '-', '\\'];

/**
 * A one-character spinner with a label on stderr, for a terminal only.
 * Output must call `clear` first so the spinner never mixes with it.
 */
export class Spinner {
  private timer: NodeJS.Timeout | undefined;
  private frame = 0;
  private label = '';

  constructor(private readonly stream: Writable) {}

  show(label: string): void {
    this.label = label;
    if (this.timer !== undefined) return;
    this.draw();
    this.timer = setInterval(() => {
      this.draw();
    }, 100);
  }

  clear(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.stream.write('\r\x1b[2K');
  }

  private draw(): void {
    this.frame = (this.frame + 1) % FRAMES.length;
    this.stream.write(`\r\x1b[2K${FRAMES[this.frame] ?? '|'} ${this.label}`);
  }
}

import type { Duplex } from 'node:stream';
import { executorV1 } from '@cordon/proto';
import type { CgroupUsage } from './cgroup-usage.js';
import type { Sandbox, SandboxDriver } from './drivers/sandbox.js';
import { DockerStreamDemuxer, MarkerFilter, STDOUT, type MarkerKind } from './output-demux.js';

type StreamName = 'stdout' | 'stderr';
type Marker = { kind: MarkerKind; status: number };
import type { RunPlan } from './run-request.js';

const { OutputStream, RunPhase, RunStatus } = executorV1;

/** Output waiting for the client; past this the container's stream is paused. */
const QUEUE_HIGH_WATER_BYTES = 256 * 1024;
const CPU_POLL_INTERVAL_MS = 50;
/** Bytes of run-phase stderr kept to recognise a runtime's own out-of-memory message. */
const STDERR_TAIL_BYTES = 8 * 1024;

export interface OutputItem {
  readonly stream: executorV1.OutputStream;
  readonly phase: executorV1.RunPhase;
  readonly data: Buffer;
}

/** Reason the monitor stopped the program, when it did. */
export interface Ending {
  readonly status: executorV1.RunStatus;
  readonly message: string;
}

/** Observations of one run that decide its outcome. */
export interface RunObservation {
  ending: Ending | undefined;
  marker: { kind: MarkerKind; status: number } | undefined;
  phase: executorV1.RunPhase;
  usage: CgroupUsage | undefined;
  cpuAtRunStartMs: number;
  runStartedAt: number;
  endedAt: number | undefined;
  stdoutBytes: number;
  stderrBytes: number;
  outputTruncated: boolean;
  stderrTail: Buffer;
  /** Set when the kill failed, which means Docker no longer responds for this container. */
  killError: unknown;
  /** The first bytes of each stream, kept for the audit log. */
  stdoutHead: Buffer;
  stderrHead: Buffer;
}

export interface RunMonitorOptions {
  /** Per-run secret that marks the launcher's phase markers. */
  readonly nonce: string;
  /** CPU time the sandbox's cgroup had used before the run's input went in. */
  readonly cpuBeforeRunMs: number;
  readonly compileWallTimeMs: number;
  /** Bytes of each stream kept for the audit log. */
  readonly excerptBytes: number;
}

/**
 * Watches one running sandbox: reads its attach stream, enforces the wall,
 * CPU and output limits, and queues output for the client. Limits are
 * enforced here, not where the client reads, so a slow client never delays
 * a kill. Once a kill starts the stream is read to its end, because killing
 * a container whose attach stream has no reader can wedge Docker (seen with
 * Docker 20.10: kill, inspect and rm hung until a reader came back).
 */
export class RunMonitor {
  readonly observation: RunObservation;
  private readonly demuxer = new DockerStreamDemuxer();
  private readonly filters: Record<StreamName, MarkerFilter>;
  /** Phase of each stream: a stream enters the run phase at its own "compiled" marker. */
  private readonly streamPhase: Record<StreamName, executorV1.RunPhase>;
  /** The marker that ended each stream's last phase, once it arrived. */
  private readonly finalMarkers: Partial<Record<StreamName, Marker>> = {};
  private readonly queue: (OutputItem | 'end')[] = [];
  private queuedBytes = 0;
  private wake: (() => void) | undefined;
  private wallTimer: NodeJS.Timeout | undefined;
  private cpuTimer: NodeJS.Timeout | undefined;
  private stopping: Promise<void> | undefined;
  private streamEnded = false;
  /** Set once the run ended at its markers; whatever the sandbox writes later is not the run's. */
  private finished = false;

  constructor(
    private readonly plan: RunPlan,
    private readonly sandbox: Sandbox,
    private readonly stream: Duplex,
    private readonly driver: SandboxDriver,
    private readonly options: RunMonitorOptions,
  ) {
    this.filters = {
      stdout: new MarkerFilter(options.nonce),
      stderr: new MarkerFilter(options.nonce),
    };
    const compiled = plan.compileArgv !== null;
    const firstPhase = compiled ? RunPhase.RUN_PHASE_COMPILE : RunPhase.RUN_PHASE_RUN;
    this.streamPhase = { stdout: firstPhase, stderr: firstPhase };
    this.observation = {
      ending: undefined,
      marker: undefined,
      phase: compiled ? RunPhase.RUN_PHASE_COMPILE : RunPhase.RUN_PHASE_RUN,
      usage: undefined,
      cpuAtRunStartMs: options.cpuBeforeRunMs,
      runStartedAt: performance.now(),
      endedAt: undefined,
      stdoutBytes: 0,
      stderrBytes: 0,
      outputTruncated: false,
      stderrTail: Buffer.alloc(0),
      killError: undefined,
      stdoutHead: Buffer.alloc(0),
      stderrHead: Buffer.alloc(0),
    };
  }

  /** Starts reading and timing; call right before the run's input goes in. */
  begin(signal: AbortSignal): void {
    this.observation.runStartedAt = performance.now();
    this.stream.on('data', (chunk: Buffer) => this.onChunk(chunk));
    this.stream.on('end', () => this.onStreamEnd());
    this.stream.on('close', () => this.onStreamEnd());
    this.stream.on('error', () => this.onStreamEnd());
    const compiled = this.plan.compileArgv !== null;
    this.armWallTimer(compiled ? this.options.compileWallTimeMs : this.plan.limits.wallTimeMs);
    this.cpuTimer = setInterval(() => void this.checkCpu(), CPU_POLL_INTERVAL_MS);
    signal.addEventListener(
      'abort',
      () => void this.stop(RunStatus.RUN_STATUS_CANCELLED, 'the client cancelled the run'),
      {
        once: true,
      },
    );
    // A warm sandbox's stream was paused when it left the pool.
    this.stream.resume();
  }

  /** Returns the next output for the client, or 'end' once the container's stream is over. */
  async next(): Promise<OutputItem | 'end'> {
    for (;;) {
      const item = this.queue.shift();
      if (item !== undefined) {
        if (item !== 'end') {
          this.queuedBytes -= item.data.length;
          if (this.queuedBytes < QUEUE_HIGH_WATER_BYTES / 2) this.stream.resume();
        }
        return item;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /**
   * Stops the program for a reason: records usage while the cgroup still
   * exists, then kills the container. Later calls wait for the first. The
   * promise never rejects; a failed kill is kept in `observation.killError`.
   */
  stop(status: executorV1.RunStatus, message: string): Promise<void> {
    this.observation.ending ??= { status, message };
    return (this.stopping ??= this.collectAndKill());
  }

  /** Reads and discards the rest of the stream, e.g. when the client is gone. */
  discardRemaining(): void {
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.stream.resume();
  }

  /** Stops the timers. The code that removes the sandbox closes the stream. */
  close(): void {
    this.clearTimers();
  }

  private async collectAndKill(): Promise<void> {
    this.observation.endedAt ??= performance.now();
    this.clearTimers();
    this.stream.resume();
    try {
      this.observation.usage = await this.driver.readUsage(this.sandbox.id);
    } catch {
      // The cgroup is gone when the container already stopped; usage stays unknown.
    }
    try {
      await this.sandbox.kill();
    } catch (error) {
      // Without Docker the stream may never end by itself; end it here so the run finishes.
      this.observation.killError = error;
      this.stream.destroy();
    }
  }

  private clearTimers(): void {
    clearTimeout(this.wallTimer);
    clearInterval(this.cpuTimer);
  }

  private armWallTimer(timeoutMs: number): void {
    clearTimeout(this.wallTimer);
    const phase = this.observation.phase === RunPhase.RUN_PHASE_COMPILE ? 'compile' : 'run';
    this.wallTimer = setTimeout(
      () =>
        void this.stop(
          RunStatus.RUN_STATUS_WALL_TIMEOUT,
          `killed at the ${phase} wall-clock limit of ${timeoutMs} ms`,
        ),
      timeoutMs,
    );
  }

  private async checkCpu(): Promise<void> {
    if (this.stopping !== undefined || this.observation.phase !== RunPhase.RUN_PHASE_RUN) return;
    let usage: CgroupUsage;
    try {
      usage = await this.driver.readUsage(this.sandbox.id);
    } catch {
      return;
    }
    const usedMs = usage.cpuTimeMs - this.observation.cpuAtRunStartMs;
    if (usedMs >= this.plan.limits.cpuTimeMs) {
      await this.stop(
        RunStatus.RUN_STATUS_CPU_TIMEOUT,
        `killed at the CPU-time limit of ${this.plan.limits.cpuTimeMs} ms`,
      );
    }
  }

  private onChunk(chunk: Buffer): void {
    for (const frame of this.demuxer.push(chunk)) {
      const name: StreamName = frame.stream === STDOUT ? 'stdout' : 'stderr';
      for (const item of this.filters[name].push(frame.data)) {
        if (item.kind === 'data') {
          this.deliver(name, item.data);
        } else {
          this.onMarker(name, { kind: item.marker, status: item.status });
        }
      }
    }
    if (this.queuedBytes >= QUEUE_HIGH_WATER_BYTES && this.stopping === undefined) {
      this.stream.pause();
    }
  }

  private onMarker(name: StreamName, marker: Marker): void {
    if (marker.kind === 'compiled' && marker.status === 0) {
      this.streamPhase[name] = RunPhase.RUN_PHASE_RUN;
      if (this.observation.phase === RunPhase.RUN_PHASE_COMPILE) {
        this.startRunPhase();
      }
      return;
    }

    this.finalMarkers[name] = marker;
    this.observation.endedAt ??= performance.now();
    if (this.finalMarkers.stdout !== undefined && this.finalMarkers.stderr !== undefined) {
      // Both streams are complete now: nothing the program wrote is still in
      // flight, so the run is over once its usage is read. The container is
      // killed afterwards, off the client's path.
      this.observation.marker = this.finalMarkers.stderr;
      void this.finishAtMarkers();
    }
  }

  private startRunPhase(): void {
    this.observation.phase = RunPhase.RUN_PHASE_RUN;
    this.observation.runStartedAt = performance.now();
    this.armWallTimer(this.plan.limits.wallTimeMs);
    this.driver.readUsage(this.sandbox.id).then(
      (usage) => (this.observation.cpuAtRunStartMs = usage.cpuTimeMs),
      () => undefined,
    );
  }

  private async finishAtMarkers(): Promise<void> {
    if (this.stopping !== undefined) return;
    this.stopping = this.readFinalUsage();
    await this.stopping;
    this.finished = true;
    this.push('end');
  }

  private async readFinalUsage(): Promise<void> {
    this.clearTimers();
    try {
      this.observation.usage = await this.driver.readUsage(this.sandbox.id);
    } catch {
      // Usage stays unknown, so the outcome reads OOM kills from the engine instead.
    }
  }

  /** Queues output up to the output limit, counting stdout and stderr together. */
  private deliver(name: StreamName, data: Buffer): void {
    const observation = this.observation;
    if (observation.outputTruncated || this.finished || data.length === 0) return;

    const phase = this.streamPhase[name];
    const used = observation.stdoutBytes + observation.stderrBytes;
    const room = this.plan.limits.maxOutputBytes - used;
    const accepted = data.length > room ? data.subarray(0, room) : data;
    const headKey = name === 'stdout' ? 'stdoutHead' : 'stderrHead';
    const headRoom = this.options.excerptBytes - observation[headKey].length;
    if (headRoom > 0 && accepted.length > 0) {
      observation[headKey] = Buffer.concat([observation[headKey], accepted.subarray(0, headRoom)]);
    }
    if (name === 'stdout') {
      observation.stdoutBytes += accepted.length;
    } else {
      observation.stderrBytes += accepted.length;
      if (phase === RunPhase.RUN_PHASE_RUN) {
        observation.stderrTail = Buffer.concat([observation.stderrTail, accepted]).subarray(
          -STDERR_TAIL_BYTES,
        );
      }
    }
    if (accepted.length > 0) {
      const stream =
        name === 'stdout' ? OutputStream.OUTPUT_STREAM_STDOUT : OutputStream.OUTPUT_STREAM_STDERR;
      this.push({ stream, phase, data: accepted });
    }
    if (data.length > room) {
      observation.outputTruncated = true;
      void this.stop(
        RunStatus.RUN_STATUS_OUTPUT_LIMIT,
        `killed at the output limit of ${this.plan.limits.maxOutputBytes} bytes`,
      );
    }
  }

  private onStreamEnd(): void {
    if (this.streamEnded || this.finished) return;
    this.streamEnded = true;
    this.clearTimers();
    for (const name of ['stdout', 'stderr'] as const) {
      const rest = this.filters[name].flush();
      if (rest.length > 0) this.deliver(name, rest);
    }
    this.push('end');
  }

  private push(item: OutputItem | 'end'): void {
    if (item !== 'end') this.queuedBytes += item.data.length;
    this.queue.push(item);
    this.wake?.();
    this.wake = undefined;
  }
}

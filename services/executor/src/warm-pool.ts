import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { Logger } from '@cordon/service-kit';
import type { DockerDriver, DockerSandbox } from './drivers/docker.js';
import type { RunLimits } from './executor-options.js';
import { rlimitsOf, type Rlimits } from './launcher.js';
import type { ExecutorInstance } from './reaper.js';
import { startupVariableIn, type PrestartSpec } from './runtimes.js';

/** A started sandbox that no run has touched, with its attach stream. */
export interface WarmSandbox {
  readonly sandbox: DockerSandbox;
  readonly stream: Duplex;
  /** The cgroup limits it was started with; a run with others updates them first. */
  readonly limits: RunLimits;
  /** True when the run requests lower rlimits than the sandbox started with. */
  readonly lowerRlimits: boolean;
  /** True when the sandbox's interpreter is already running and waits for the run. */
  readonly prestarted: boolean;
}

interface IdleSandbox extends Omit<WarmSandbox, 'lowerRlimits' | 'prestarted'> {
  readonly startedAt: number;
  /** Removes the idle watchers, once the sandbox leaves the pool. */
  readonly unwatch: () => void;
}

export interface WarmPoolOptions {
  /** Sandboxes to keep ready, by runtime id; a runtime that is missing or 0 has no pool. */
  readonly sizes: ReadonlyMap<string, number>;
  /** Image id of each runtime that has one. */
  readonly images: ReadonlyMap<string, string>;
  /** Runtimes whose warm sandboxes start their interpreter ahead of the run. */
  readonly prestart: ReadonlyMap<string, PrestartSpec>;
  /** Idle sandboxes older than this are replaced. */
  readonly maxIdleMs: number;
  /** Sandboxes started at once to refill the pools. */
  readonly refillConcurrency: number;
  /** Cgroup limits and tmpfs size of every warm sandbox: the server's defaults. */
  readonly limits: RunLimits;

  readonly nanoCpus: number;
  readonly instance: ExecutorInstance;
}

export interface WarmPoolHooks {
  /** True while runs wait for a slot; refills then wait too, so they never delay a live run. */
  readonly runsWaiting: () => boolean;
  /** Removes a sandbox off the request path. */
  readonly retire: (sandbox: DockerSandbox, stream: Duplex) => void;
}

/** The rlimits a warm sandbox starts with, and the request limit each comes from. */
const RLIMIT_FIELDS = [
  ['openFiles', 'max_open_files'],
  ['fileBytes', 'max_file_bytes'],
  ['cpuHardSeconds', 'cpu_time_ms'],
] as const satisfies readonly (readonly [keyof Rlimits, string])[];
const RLIMIT_SOURCE = {
  openFiles: 'maxOpenFiles',
  fileBytes: 'maxFileBytes',
  cpuHardSeconds: 'cpuTimeMs',
} as const satisfies Record<(typeof RLIMIT_FIELDS)[number][0], keyof RunLimits>;

/** How long refills pause while runs wait for a slot. */
const BUSY_RECHECK_MS = 100;
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 30_000;

/**
 * Keeps per runtime a few sandboxes created and started ahead of time, each
 * waiting in the launcher for exactly one run. A sandbox leaves the pool
 * before anything of a run reaches it and is destroyed after that run, so no
 * sandbox ever serves two requests. What Docker cannot change on a running
 * container (image, user, read-only root, network, tmpfs size) is the same
 * for a warm sandbox as for a cold one at the server's default limits. A run
 * that needs another tmpfs size, or higher rlimits, takes the cold path.
 * Where the runtime has a prestart command, a warm sandbox also has its
 * interpreter started. A run that sets a variable the interpreter reads only
 * at its start takes the cold path too.
 */
export class WarmPool {
  private readonly idle = new Map<string, IdleSandbox[]>();
  private readonly starting = new Map<string, number>();
  private readonly failures = new Map<string, number>();
  private readonly retryAt = new Map<string, number>();
  private readonly inFlight = new Set<Promise<void>>();
  private activeStarts = 0;
  private wakeTimer: NodeJS.Timeout | undefined;
  private ageTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly driver: DockerDriver,
    private readonly options: WarmPoolOptions,
    private readonly hooks: WarmPoolHooks,
    private readonly logger: Logger,
  ) {
    for (const runtimeId of this.runtimeIds()) {
      this.idle.set(runtimeId, []);
      this.starting.set(runtimeId, 0);
    }
  }

  /** Starts filling the pools and replacing sandboxes that idled too long. */
  start(): void {
    this.ageTimer = setInterval(
      () => this.replaceStale(),
      Math.max(1000, Math.floor(this.options.maxIdleMs / 4)),
    );
    this.ageTimer.unref();
    this.refill();
  }

  /**
   * Hands an unused sandbox to a run and starts a replacement in the
   * background, or returns why the run must take the cold path.
   */
  take(runtimeId: string, limits: RunLimits, env: readonly string[]): WarmSandbox | string {
    const queue = this.idle.get(runtimeId);
    if (queue === undefined) return 'the warm pool is off for this runtime';
    const prestart = this.options.prestart.get(runtimeId);
    const startupVariable = prestart === undefined ? undefined : startupVariableIn(prestart, env);
    if (prestart !== undefined && startupVariable !== undefined) {
      return `warm sandboxes start ${prestart.command[0] ?? ''} before the run, so env ${startupVariable}, which it reads only at its start, needs a cold one`;
    }
    const fixed = this.options.limits;
    if (limits.tmpBytes !== fixed.tmpBytes) {
      return `warm sandboxes have limits.tmp_bytes ${fixed.tmpBytes}, fixed at their start`;
    }
    const asked = rlimitsOf(limits);
    const started = rlimitsOf(fixed);
    const raised = RLIMIT_FIELDS.find(([field]) => asked[field] > started[field]);
    if (raised !== undefined) {
      const [field, limitName] = raised;
      return `warm sandboxes cannot raise limits.${limitName} above ${fixed[RLIMIT_SOURCE[field]]}`;
    }
    const entry = queue.shift();
    this.refill();
    if (entry === undefined) {
      this.logger.info({ runtime: runtimeId }, 'warm pool empty; the run starts cold');
      return 'no warm sandbox was ready';
    }
    entry.unwatch();
    const lowerRlimits = RLIMIT_FIELDS.some(([field]) => asked[field] < started[field]);
    return {
      sandbox: entry.sandbox,
      stream: entry.stream,
      limits: entry.limits,
      lowerRlimits,
      prestarted: prestart !== undefined,
    };
  }

  /** Ready and target sandboxes per runtime, e.g. "python 2/2, java 0/1". */
  describeDepth(): string {
    const parts = [...this.idle].map(
      ([runtimeId, queue]) =>
        `${runtimeId} ${queue.length}/${this.options.sizes.get(runtimeId) ?? 0}`,
    );
    return parts.length === 0 ? 'off' : parts.join(', ');
  }

  /** Stops refilling and removes every idle sandbox, waiting for those still starting. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.wakeTimer);
    clearInterval(this.ageTimer);
    await Promise.allSettled([...this.inFlight]);
    for (const queue of this.idle.values()) {
      for (const entry of queue.splice(0)) {
        entry.unwatch();
        this.hooks.retire(entry.sandbox, entry.stream);
      }
    }
  }

  private runtimeIds(): string[] {
    return [...this.options.sizes]
      .filter(([runtimeId, size]) => size > 0 && this.options.images.has(runtimeId))
      .map(([runtimeId]) => runtimeId);
  }

  private deficit(runtimeId: string): number {
    const target = this.options.sizes.get(runtimeId) ?? 0;
    const have = (this.idle.get(runtimeId)?.length ?? 0) + (this.starting.get(runtimeId) ?? 0);
    return target - have;
  }

  /** Starts sandboxes where pools are short, within the refill concurrency. */
  private refill(): void {
    if (this.closed) return;
    clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    if (this.hooks.runsWaiting()) {
      this.wakeLater(BUSY_RECHECK_MS);
      return;
    }
    const now = performance.now();
    let nextRetry = Infinity;
    for (const runtimeId of this.idle.keys()) {
      const retryAt = this.retryAt.get(runtimeId) ?? 0;
      if (retryAt > now) {
        nextRetry = Math.min(nextRetry, retryAt);
        continue;
      }
      while (this.deficit(runtimeId) > 0 && this.activeStarts < this.options.refillConcurrency) {
        this.track(this.startOne(runtimeId));
      }
    }
    if (nextRetry !== Infinity) this.wakeLater(nextRetry - now);
  }

  private wakeLater(delayMs: number): void {
    if (this.wakeTimer !== undefined || this.closed) return;
    this.wakeTimer = setTimeout(() => this.refill(), Math.max(1, delayMs));
    this.wakeTimer.unref();
  }

  private track(task: Promise<void>): void {
    this.inFlight.add(task);
    void task.finally(() => {
      this.inFlight.delete(task);
      this.refill();
    });
  }

  private async startOne(runtimeId: string): Promise<void> {
    this.activeStarts += 1;
    this.starting.set(runtimeId, (this.starting.get(runtimeId) ?? 0) + 1);
    let sandbox: DockerSandbox | undefined;
    let stream: Duplex | undefined;
    try {
      const { options } = this;
      const prestart = options.prestart.get(runtimeId);
      sandbox = await this.driver.createSandbox({
        runId: randomUUID(),
        poolRuntime: runtimeId,
        ...(prestart === undefined ? {} : { prestart: prestart.command }),
        executor: options.instance,
        imageId: options.images.get(runtimeId) ?? '',
        limits: options.limits,
        rlimitCeiling: options.limits,
        runtime: 'runc',
        nanoCpus: options.nanoCpus,
      });
      stream = await sandbox.attach();
      stream.on('error', () => undefined);
      await sandbox.start();
      this.failures.delete(runtimeId);
      this.admit(runtimeId, sandbox, stream);
    } catch (error) {
      const failures = (this.failures.get(runtimeId) ?? 0) + 1;
      this.failures.set(runtimeId, failures);
      const delayMs = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (failures - 1));
      this.retryAt.set(runtimeId, performance.now() + delayMs);
      this.logger.warn(
        { err: error, runtime: runtimeId, retry_in_ms: delayMs },
        'could not start a warm sandbox; will retry',
      );
      if (sandbox !== undefined && stream !== undefined) this.hooks.retire(sandbox, stream);
      else void sandbox?.remove().catch(() => undefined);
    } finally {
      this.activeStarts -= 1;
      this.starting.set(runtimeId, (this.starting.get(runtimeId) ?? 1) - 1);
    }
  }

  /** Puts a started sandbox in its pool and watches it: one that stops or speaks while idle is replaced. */
  private admit(runtimeId: string, sandbox: DockerSandbox, stream: Duplex): void {
    const queue = this.idle.get(runtimeId);
    if (queue === undefined || this.closed) {
      this.hooks.retire(sandbox, stream);
      return;
    }
    const lost = (reason: string): void => {
      const index = queue.indexOf(entry);
      if (index === -1) return;
      queue.splice(index, 1);
      entry.unwatch();
      this.logger.warn(
        { runtime: runtimeId, container_id: sandbox.id, reason },
        'warm sandbox lost',
      );
      this.hooks.retire(sandbox, stream);
      this.refill();
    };
    const onData = (): void => lost('it wrote output before any run');
    const onEnd = (): void => lost('it stopped while idle');
    // A data listener keeps the stream flowing, so an ending container is noticed.
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('close', onEnd);
    const entry: IdleSandbox = {
      sandbox,
      stream,
      limits: this.options.limits,
      startedAt: performance.now(),
      unwatch: () => {
        stream.off('data', onData);
        stream.off('end', onEnd);
        stream.off('close', onEnd);
        stream.pause();
      },
    };
    queue.push(entry);
    if (queue.length === this.options.sizes.get(runtimeId)) {
      this.logger.debug({ runtime: runtimeId, depth: queue.length }, 'warm pool full');
    }
  }

  private replaceStale(): void {
    const oldest = performance.now() - this.options.maxIdleMs;
    for (const [runtimeId, queue] of this.idle) {
      for (const entry of queue.filter((idle) => idle.startedAt < oldest)) {
        queue.splice(queue.indexOf(entry), 1);
        entry.unwatch();
        this.logger.debug(
          { runtime: runtimeId, container_id: entry.sandbox.id },
          'replacing a warm sandbox that idled past its maximum age',
        );
        this.hooks.retire(entry.sandbox, entry.stream);
      }
    }
    this.refill();
  }
}

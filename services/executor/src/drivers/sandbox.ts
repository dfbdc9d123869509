import type { Duplex } from 'node:stream';
import type { CgroupUsage } from '../cgroup-usage.js';
import type { RunLimits } from '../executor-options.js';
import type { ExecutorInstance } from '../reaper.js';

/** Exit state the driver reported for a sandbox that has stopped. */
export interface ContainerExit {
  readonly exitCode: number;
  readonly oomKilled: boolean;
}

export interface SandboxSpec {
  readonly runId: string;
  readonly executor: ExecutorInstance;
  /** Image id (sha256:…) for Docker; unused by the process driver, which runs the host's runtimes. */
  readonly imageId: string;
  /** Labels this sandbox as a warm one of that runtime's pool, before any run has it. */
  readonly poolRuntime?: string;
  /** Interpreter the launcher starts before the run is known (a warm sandbox's, see `launcherScript`). */
  readonly prestart?: readonly string[];
  readonly limits: RunLimits;
  /**
   * Limits whose per-process fields (open files, file size, CPU seconds) set
   * the sandbox's rlimits. A warm sandbox gets the server's defaults here and
   * the run script lowers them for a run that asks for less; a cold one gets `limits`.
   */
  readonly rlimitCeiling: RunLimits;
  readonly runtime: 'runc' | 'runsc';
  readonly nanoCpus: number;
}

/** One sandbox, from creation to removal, whatever isolates it. */
export interface Sandbox {
  readonly id: string;
  /**
   * Returns the sandbox's stdio as one duplex stream: writes go to stdin
   * (end() closes it), reads are Docker's multiplexed frames of stdout and
   * stderr. Call before start so no output is missed.
   */
  attach(): Promise<Duplex>;
  start(): Promise<void>;
  /** Kills every process of the sandbox; a sandbox that already stopped is not an error. */
  kill(): Promise<void>;
  inspectExit(): Promise<ContainerExit>;
  remove(): Promise<void>;
}

/** Creates sandboxes and reads their resource use. */
export interface SandboxDriver {
  /** Isolation every run of this driver gets, e.g. "docker/runc" or "process/bubblewrap". */
  readonly isolation: string;
  /** Protections of the Docker baseline that this driver does not give. */
  readonly missingProtections: readonly string[];
  createSandbox(spec: SandboxSpec): Promise<Sandbox>;
  /** Reads CPU time, peak memory and OOM kills of a sandbox while it exists. */
  readUsage(sandboxId: string): Promise<CgroupUsage>;
}

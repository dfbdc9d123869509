import Docker from 'dockerode';
import type { Duplex } from 'node:stream';
import type { RunLimits } from '../executor-options.js';
import { LAUNCHER_PROCESSES, launcherScript, rlimitsOf, SANDBOX_UID } from '../launcher.js';
import type { CgroupReader, CgroupUsage } from '../cgroup-usage.js';
import type { ContainerExit, Sandbox, SandboxDriver, SandboxSpec } from './sandbox.js';

/** Labels on every sandbox container, so a restarted executor or a test can find them. */
export const RUN_ID_LABEL = 'cordon.run-id';
export const EXECUTOR_ID_LABEL = 'cordon.executor-id';
/** Pid and start time of the executor process, so a restarted executor can tell a dead creator from a live one. */
export const EXECUTOR_PID_LABEL = 'cordon.executor-pid';
export const EXECUTOR_START_LABEL = 'cordon.executor-start';

/** Names a run's container after the run, so `docker ps` shows which run each serves. */
export function runContainerName(runId: string): string {
  return `cordon-run-${runId}`;
}

/** Set on warm sandboxes to the runtime whose pool they wait in. */
export const POOL_LABEL = 'cordon.pool';

/**
 * Host threads of gVisor's own sentry and gofer, which count against the
 * container's pids limit. About 50 were measured for an idle Python sandbox
 * (runsc release 20221219, 2 cores), and each sandboxed process adds more: a
 * fork bomb held to 66 processes by RLIMIT_NPROC passed 2000 host threads in
 * three seconds. Under runsc the program's own limit is RLIMIT_NPROC, which
 * gVisor enforces inside the sandbox, and the pids limit only protects the host.
 */
export const RUNSC_SANDBOX_THREADS = 512;

export type { ContainerExit, SandboxSpec } from './sandbox.js';

function isMissing(error: unknown): boolean {
  const statusCode = (error as { statusCode?: number }).statusCode;
  return statusCode === 404 || statusCode === 409;
}

/** One sandbox container, from creation to removal. */
export class DockerSandbox implements Sandbox {
  constructor(
    private readonly container: Docker.Container,
    readonly id: string,
  ) {}

  /** Attaches stdin, stdout and stderr; call before start so no output is missed. */
  async attach(): Promise<Duplex> {
    // With hijack, dockerode returns the raw socket: a Duplex whose write
    // side can be half-closed to end the container's stdin.
    const stream: unknown = await this.container.attach({
      stream: true,
      stdin: true,
      stdout: true,
      stderr: true,
      hijack: true,
    });
    return stream as Duplex;
  }

  async start(): Promise<void> {
    await this.container.start();
  }

  /** Sends SIGKILL to every process; a container that already stopped is not an error. */
  async kill(): Promise<void> {
    try {
      await this.container.kill({ signal: 'SIGKILL' });
    } catch (error) {
      if (!isMissing(error)) throw error;
    }
  }

  async inspectExit(): Promise<ContainerExit> {
    const info = await this.container.inspect();
    return { exitCode: info.State.ExitCode, oomKilled: info.State.OOMKilled };
  }

  /** Renames a warm sandbox after the run it was given; labels cannot change after creation. */
  async rename(name: string): Promise<void> {
    await this.container.rename({ name });
  }

  /** Sets the cgroup limits of a running sandbox, before anything of its run enters it. */
  async updateLimits(limits: RunLimits, runtime: 'runc' | 'runsc'): Promise<void> {
    await this.container.update(cgroupLimits(limits, runtime));
  }

  async remove(): Promise<void> {
    try {
      await this.container.remove({ force: true, v: true });
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode !== 404) throw error;
    }
  }
}

/** The limits Docker can change on a running container: memory, swap and processes. */
export function cgroupLimits(
  limits: RunLimits,
  runtime: 'runc' | 'runsc',
): { Memory: number; MemorySwap: number; PidsLimit: number } {
  const processes = limits.maxProcesses + LAUNCHER_PROCESSES;
  return {
    Memory: limits.memoryBytes,
    MemorySwap: limits.memoryBytes,
    PidsLimit: runtime === 'runsc' ? processes + RUNSC_SANDBOX_THREADS : processes,
  };
}

/** Builds the Docker create options that give a run the isolation baseline. */
export function sandboxCreateOptions(spec: SandboxSpec): Docker.ContainerCreateOptions {
  const { limits, rlimitCeiling } = spec;
  const rlimits = rlimitsOf(rlimitCeiling);
  const ceilingProcesses = rlimitCeiling.maxProcesses + LAUNCHER_PROCESSES;
  const gvisor = spec.runtime === 'runsc';
  return {
    Image: spec.imageId,
    Cmd: ['/bin/sh', '-c', launcherScript(spec.prestart ?? null)],
    // The run's environment is exported by its run script, so a sandbox can start before its run is known.
    Env: [],
    User: `${SANDBOX_UID}:${SANDBOX_UID}`,
    WorkingDir: '/work',
    Labels: {
      [RUN_ID_LABEL]: spec.runId,
      [EXECUTOR_ID_LABEL]: spec.executor.executorId,
      [EXECUTOR_PID_LABEL]: String(spec.executor.pid),
      [EXECUTOR_START_LABEL]: spec.executor.startTicks,
      ...(spec.poolRuntime === undefined ? {} : { [POOL_LABEL]: spec.poolRuntime }),
    },
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: true,
    StdinOnce: true,
    Tty: false,
    NetworkDisabled: true,
    StopSignal: 'SIGKILL',
    HostConfig: {
      Runtime: spec.runtime,
      NetworkMode: 'none',
      ReadonlyRootfs: true,
      Tmpfs: {
        '/work': `rw,nosuid,nodev,noexec,size=${limits.tmpBytes},uid=${SANDBOX_UID},gid=${SANDBOX_UID},mode=0700`,
        '/tmp': `rw,nosuid,nodev,noexec,size=${limits.tmpBytes},mode=1777`,
      },
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      ...cgroupLimits(limits, spec.runtime),
      NanoCpus: spec.nanoCpus,
      Ulimits: [
        { Name: 'nofile', Soft: rlimits.openFiles, Hard: rlimits.openFiles },
        { Name: 'fsize', Soft: rlimits.fileBytes, Hard: rlimits.fileBytes },
        // A per-process backstop; the executor enforces the cgroup-wide CPU limit itself.
        { Name: 'cpu', Soft: rlimits.cpuSoftSeconds, Hard: rlimits.cpuHardSeconds },
        { Name: 'core', Soft: 0, Hard: 0 },
        // RLIMIT_NPROC counts per user, and under runc every sandbox shares
        // uid 10001 with all the others on the host; gVisor counts per sandbox.
        ...(gvisor ? [{ Name: 'nproc', Soft: ceilingProcesses, Hard: ceilingProcesses }] : []),
      ],
      IpcMode: 'private',
      OomScoreAdj: 1000,
      LogConfig: { Type: 'none', Config: {} },
      AutoRemove: false,
      Privileged: false,
    },
  };
}

/** The Docker engine, reached through its Unix socket. */
export class DockerDriver implements SandboxDriver {
  readonly docker: Docker;
  readonly missingProtections: readonly string[] = [];
  private cgroups: CgroupReader | undefined;

  constructor(
    socketPath: string,
    readonly runtime: 'runc' | 'runsc',
  ) {
    this.docker = new Docker({ socketPath });
  }

  get isolation(): string {
    return `docker/${this.runtime}`;
  }

  /** Sets the reader of container cgroups, once the engine has reported how it lays them out. */
  useCgroups(reader: CgroupReader): void {
    this.cgroups = reader;
  }

  readUsage(sandboxId: string): Promise<CgroupUsage> {
    if (this.cgroups === undefined) {
      return Promise.reject(new Error('container cgroups are not known yet'));
    }
    return this.cgroups.read(sandboxId);
  }

  async ping(): Promise<void> {
    await this.docker.ping();
  }

  async cgroupInfo(): Promise<{ version: 1 | 2; driver: string }> {
    const info = (await this.docker.info()) as { CgroupVersion?: string; CgroupDriver?: string };
    return { version: info.CgroupVersion === '2' ? 2 : 1, driver: info.CgroupDriver ?? 'cgroupfs' };
  }

  async createSandbox(spec: SandboxSpec): Promise<DockerSandbox> {
    const container = await this.docker.createContainer({
      name:
        spec.poolRuntime === undefined ? runContainerName(spec.runId) : `cordon-warm-${spec.runId}`,
      ...sandboxCreateOptions(spec),
    });
    return new DockerSandbox(container, container.id);
  }
}

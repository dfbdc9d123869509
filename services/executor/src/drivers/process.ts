import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmdirSync,
  writeFileSync,
} from 'node:fs';
import { Duplex } from 'node:stream';
import { LAUNCHER_SCRIPT, rlimitsOf, SANDBOX_UID } from '../launcher.js';
import { BASE_ENV } from '../run-request.js';
import { CgroupReader, type CgroupUsage } from '../cgroup-usage.js';
import type { ContainerExit, Sandbox, SandboxDriver, SandboxSpec } from './sandbox.js';

const CGROUP_ROOT = '/sys/fs/cgroup';
/** Folder under each cgroup v1 controller that contains one group per run. */
const CGROUP_PARENT = 'cordon';
const CONTROLLERS = ['memory', 'pids', 'cpu', 'cpuacct'] as const;
type Controller = (typeof CONTROLLERS)[number];

/** Processes added to the program's own: bubblewrap outside and inside the pid namespace, and the launcher shell. */
const LAUNCHER_PROCESSES = 3;

/** Environment the Docker images set, given here so programs see the same. */
const IMAGE_ENV = ['LANG=C.UTF-8', 'PYTHONDONTWRITEBYTECODE=1', 'PYTHONUNBUFFERED=1'];

function frame(stream: 1 | 2, data: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(data.length, 4);
  return Buffer.concat([header, data]);
}

function controllerFolder(controller: Controller): string | undefined {
  // cgroup v1 mounts cpu and cpuacct together on most distributions.
  for (const name of [controller, 'cpu,cpuacct']) {
    const folder = `${CGROUP_ROOT}/${name}`;
    if (existsSync(`${folder}/cgroup.procs`)) return folder;
  }
  return undefined;
}

/** Returns the cgroup v1 controllers this process may create groups in. */
function writableControllers(): Partial<Record<Controller, string>> {
  const found: Partial<Record<Controller, string>> = {};
  for (const controller of CONTROLLERS) {
    const folder = controllerFolder(controller);
    if (folder === undefined) continue;
    try {
      mkdirSync(`${folder}/${CGROUP_PARENT}`, { recursive: true });
      found[controller] = `${folder}/${CGROUP_PARENT}`;
    } catch {
      // Not root, or cgroup v2 only: this protection is reported missing.
    }
  }
  return found;
}

/** The host's /usr read-only, with Debian's merged-usr links beside it. */
const HOST_USR_MOUNTS = [
  '--ro-bind',
  '/usr',
  '/usr',
  '--symlink',
  'usr/bin',
  '/bin',
  '--symlink',
  'usr/sbin',
  '/sbin',
  '--symlink',
  'usr/lib',
  '/lib',
  '--symlink',
  'usr/lib64',
  '/lib64',
];

/** Runs the rest of a command line as the sandbox user, with no supplementary groups. */
const AS_SANDBOX_USER = [
  'setpriv',
  `--reuid=${SANDBOX_UID}`,
  `--regid=${SANDBOX_UID}`,
  '--clear-groups',
  '--',
];

function bubblewrapArgs(spec: SandboxSpec): string[] {
  const { limits } = spec;
  const env = [...BASE_ENV, ...IMAGE_ENV, `HOSTNAME=${spec.runId.slice(0, 12)}`];
  return [
    '--unshare-all',
    '--unshare-user',
    '--disable-userns',
    '--hostname',
    spec.runId.slice(0, 12),
    '--die-with-parent',
    '--new-session',
    ...HOST_USR_MOUNTS,
    '--ro-bind-try',
    '/etc/alternatives',
    '/etc/alternatives',
    '--ro-bind-try',
    '/etc/ld.so.cache',
    '/etc/ld.so.cache',
    '--ro-bind-try',
    '/etc/java-17-openjdk',
    '/etc/java-17-openjdk',
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    '--size',
    String(limits.tmpBytes),
    '--tmpfs',
    '/tmp',
    '--size',
    String(limits.tmpBytes),
    '--perms',
    '0700',
    '--tmpfs',
    '/work',
    '--remount-ro',
    '/',
    '--chdir',
    '/work',
    '--clearenv',
    ...env.flatMap((entry) => {
      const at = entry.indexOf('=');
      return ['--setenv', entry.slice(0, at), entry.slice(at + 1)];
    }),
    '--',
    '/bin/sh',
    '-c',
    LAUNCHER_SCRIPT,
  ];
}

/** One run under bubblewrap: a process tree in its own namespaces and cgroups. */
class ProcessSandbox implements Sandbox {
  private child: ChildProcessWithoutNullStreams | undefined;
  private readonly exit: Promise<number>;
  private resolveExit: (code: number) => void = () => undefined;
  private readonly stdio: Duplex;
  private pendingInput: Buffer[] = [];
  private inputEnded = false;

  constructor(
    readonly id: string,
    private readonly spec: SandboxSpec,
    private readonly groups: Partial<Record<Controller, string>>,
    private readonly readUsage: (sandboxId: string) => Promise<CgroupUsage>,
  ) {
    this.exit = new Promise((resolve) => (this.resolveExit = resolve));
    this.stdio = new Duplex({
      write: (chunk: Buffer, _encoding, callback) => {
        if (this.child === undefined) {
          this.pendingInput.push(chunk);
          callback();
        } else {
          this.child.stdin.write(chunk, callback);
        }
      },
      final: (callback) => {
        this.inputEnded = true;
        this.child?.stdin.end();
        callback();
      },
      read: () => {
        this.child?.stdout.resume();
        this.child?.stderr.resume();
      },
      destroy: (error, callback) => {
        this.child?.kill('SIGKILL');
        callback(error);
      },
    });
  }

  attach(): Promise<Duplex> {
    return Promise.resolve(this.stdio);
  }

  start(): Promise<void> {
    const rlimits = rlimitsOf(this.spec.limits);
    const groups = Object.values(this.groups).map((folder) => `${folder}/${this.id}`);
    // A root shell joins the run's cgroups before anything of the run exists,
    // so every later process starts inside them, then drops to the sandbox
    // user and applies the rlimits on its way to bubblewrap.
    const child = spawn(
      '/bin/sh',
      [
        '-c',
        'while [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs" || exit 126; shift; done; shift; exec "$@"',
        'cordon-process-sandbox',
        ...groups,
        '--',
        ...AS_SANDBOX_USER,
        'prlimit',
        `--nofile=${rlimits.openFiles}:${rlimits.openFiles}`,
        `--fsize=${rlimits.fileBytes}:${rlimits.fileBytes}`,
        `--cpu=${rlimits.cpuSoftSeconds}:${rlimits.cpuHardSeconds}`,
        '--core=0:0',
        '--',
        'bwrap',
        ...bubblewrapArgs(this.spec),
      ],
      { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } },
    );
    this.child = child;

    let open = 2;
    const ended = (): void => {
      open -= 1;
      if (open === 0) this.stdio.push(null);
    };
    child.stdout.on('data', (data: Buffer) => {
      if (!this.stdio.push(frame(1, data))) child.stdout.pause();
    });
    child.stderr.on('data', (data: Buffer) => {
      if (!this.stdio.push(frame(2, data))) child.stderr.pause();
    });
    child.stdout.on('end', ended);
    child.stderr.on('end', ended);
    child.stdin.on('error', () => undefined);
    child.on('exit', (code, signal) => this.resolveExit(code ?? 128 + (signal === null ? 0 : 9)));

    for (const chunk of this.pendingInput) child.stdin.write(chunk);
    this.pendingInput = [];
    if (this.inputEnded) child.stdin.end();
    return Promise.resolve();
  }

  async kill(): Promise<void> {
    this.child?.kill('SIGKILL');
    // Processes that left bubblewrap's session are still in the run's cgroup.
    const procs = this.groups.pids ?? this.groups.memory;
    for (let attempt = 0; procs !== undefined && attempt < 20; attempt += 1) {
      const pids = readPids(`${procs}/${this.id}`);
      if (pids.length === 0) break;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Gone already.
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async inspectExit(): Promise<ContainerExit> {
    const exitCode = await this.exit;
    const usage = await this.readUsage(this.id).catch(() => undefined);
    return { exitCode, oomKilled: (usage?.oomKills ?? 0) > 0 };
  }

  async remove(): Promise<void> {
    await this.kill();
    await Promise.race([this.exit, new Promise((resolve) => setTimeout(resolve, 2000))]);
    for (const folder of Object.values(this.groups)) {
      removeGroup(`${folder}/${this.id}`);
    }
  }
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function readPids(group: string): number[] {
  return readText(`${group}/cgroup.procs`)
    .split('\n')
    .filter((line) => line !== '')
    .map(Number);
}

function removeGroup(group: string): void {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    try {
      rmdirSync(group);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    }
  }
}

/**
 * Runs programs under bubblewrap when no Docker engine responds: user, pid,
 * network, mount, IPC and UTS namespaces, the host's /usr read-only, tmpfs
 * /work and /tmp, rlimits, and cgroups for memory, pids and CPU where this
 * process may create them. It gives less than Docker, and
 * `missingProtections` lists what it lacks.
 */
export class ProcessDriver implements SandboxDriver {
  readonly isolation = 'process/bubblewrap';
  readonly missingProtections: readonly string[];
  private readonly groups: Partial<Record<Controller, string>>;
  private readonly cgroups = new CgroupReader({
    version: 1,
    driver: 'cgroupfs',
    root: CGROUP_ROOT,
    parent: CGROUP_PARENT,
  });

  constructor() {
    this.groups = writableControllers();
    const missing = [
      'no seccomp system-call filter',
      "the host's /usr is visible read-only instead of a dedicated image, setuid files included (no_new_privs keeps them from raising privileges)",
      "runtimes and their versions are the host's",
    ];
    if (this.groups.memory === undefined)
      missing.push('no memory limit (no writable memory cgroup)');
    if (this.groups.pids === undefined) missing.push('no process limit (no writable pids cgroup)');
    if (this.groups.cpu === undefined) missing.push('no CPU quota (no writable cpu cgroup)');
    if (this.groups.cpuacct === undefined)
      missing.push('no CPU-time limit or usage (no writable cpuacct cgroup)');
    this.missingProtections = missing;
  }

  /** Returns why bubblewrap cannot run a sandbox here, or undefined when it can. */
  static probe(): string | undefined {
    const [command = 'setpriv', ...args] = AS_SANDBOX_USER;
    const result = spawnSync(
      command,
      [...args, 'bwrap', '--unshare-all', ...HOST_USR_MOUNTS, '--', '/bin/true'],
      {
        encoding: 'utf8',
        timeout: 10_000,
      },
    );
    if (result.error !== undefined) return result.error.message;
    return result.status === 0
      ? undefined
      : result.stderr.trim() || `bwrap exited with ${String(result.status)}`;
  }

  createSandbox(spec: SandboxSpec): Promise<Sandbox> {
    const { limits } = spec;
    const processes = limits.maxProcesses + LAUNCHER_PROCESSES;
    const settings: Partial<Record<Controller, Record<string, string>>> = {
      memory: {
        'memory.limit_in_bytes': String(limits.memoryBytes),
        'memory.memsw.limit_in_bytes': String(limits.memoryBytes),
      },
      pids: { 'pids.max': String(processes) },
      cpu: {
        'cpu.cfs_period_us': '100000',
        'cpu.cfs_quota_us': String(Math.round(spec.nanoCpus / 10_000)),
      },
      cpuacct: {},
    };
    // Named after the executor too, so each executor (and each test) can find its own runs.
    const id = `${spec.executor.executorId}.${spec.runId}`;
    for (const [controller, folder] of Object.entries(this.groups) as [Controller, string][]) {
      const group = `${folder}/${id}`;
      mkdirSync(group, { recursive: true });
      for (const [file, value] of Object.entries(settings[controller] ?? {})) {
        try {
          writeFileSync(`${group}/${file}`, value);
        } catch (error) {
          // Kernels without swap accounting have no memsw file; memory alone still holds.
          if (file !== 'memory.memsw.limit_in_bytes') throw error;
        }
      }
    }
    return Promise.resolve(
      new ProcessSandbox(id, spec, this.groups, (sandboxId) => this.readUsage(sandboxId)),
    );
  }

  readUsage(sandboxId: string): Promise<CgroupUsage> {
    if (this.groups.memory === undefined || this.groups.cpuacct === undefined) {
      return Promise.reject(new Error('usage needs the memory and cpuacct cgroups'));
    }
    return this.cgroups.read(sandboxId);
  }

  /** Removes the cgroups of runs whose processes are all gone, such as those a killed executor left. */
  reapOrphans(): number {
    let removed = 0;
    for (const folder of Object.values(this.groups)) {
      for (const name of readdirSync(folder)) {
        const group = `${folder}/${name}`;
        if (readPids(group).length === 0 && existsSync(`${group}/cgroup.procs`)) {
          removeGroup(group);
          removed += 1;
        }
      }
    }
    return removed;
  }
}

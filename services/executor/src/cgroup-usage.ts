import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

/** Resource use of one container, read from its cgroup. */
export interface CgroupUsage {
  readonly cpuTimeMs: number;
  readonly peakMemoryBytes: number;
  /** Processes the kernel OOM killer ended in this cgroup. */
  readonly oomKills: number;
}

export interface CgroupLayout {
  /** 1 or 2, as `docker info` reports CgroupVersion. */
  readonly version: 1 | 2;
  /** "cgroupfs" or "systemd", as `docker info` reports CgroupDriver. */
  readonly driver: string;
  /** Root of the cgroup file system, as mounted for this process. */
  readonly root: string;
  /** Folder of the groups under each controller, for the cgroupfs driver. Default "docker". */
  readonly parent?: string;
}

function parseKeyedCounter(text: string, key: string): number {
  const line = text.split('\n').find((entry) => entry.startsWith(`${key} `));
  return line === undefined ? 0 : Number(line.slice(key.length + 1));
}

async function readNumber(path: string): Promise<number> {
  return Number((await readFile(path, 'utf8')).trim());
}

/**
 * Reads a container's CPU time, peak memory and OOM kills from the host's
 * cgroup files, which are exact and cheap to poll. It works only where the
 * executor shares the Docker host's /sys/fs/cgroup; elsewhere `read` rejects
 * and the caller reports usage as unknown.
 */
export class CgroupReader {
  /** cgroup v1 mounts the CPU accounting controller alone or joined with cpu, by distribution. */
  private readonly cpuacctController: string;

  constructor(private readonly layout: CgroupLayout) {
    this.cpuacctController = existsSync(`${layout.root}/cpuacct`) ? 'cpuacct' : 'cpu,cpuacct';
  }

  private group(containerId: string, controller: string): string {
    const { root, driver, version } = this.layout;
    const leaf =
      driver === 'systemd'
        ? `system.slice/docker-${containerId}.scope`
        : `${this.layout.parent ?? 'docker'}/${containerId}`;
    return version === 2 ? `${root}/${leaf}` : `${root}/${controller}/${leaf}`;
  }

  async read(containerId: string): Promise<CgroupUsage> {
    if (this.layout.version === 2) {
      const group = this.group(containerId, '');
      const [cpuStat, peak, events] = await Promise.all([
        readFile(`${group}/cpu.stat`, 'utf8'),
        readNumber(`${group}/memory.peak`).catch(() => readNumber(`${group}/memory.current`)),
        readFile(`${group}/memory.events`, 'utf8'),
      ]);
      return {
        cpuTimeMs: Math.round(parseKeyedCounter(cpuStat, 'usage_usec') / 1000),
        peakMemoryBytes: peak,
        oomKills: parseKeyedCounter(events, 'oom_kill'),
      };
    }

    const [cpuNs, peak, oomControl] = await Promise.all([
      readNumber(`${this.group(containerId, this.cpuacctController)}/cpuacct.usage`),
      readNumber(`${this.group(containerId, 'memory')}/memory.max_usage_in_bytes`),
      readFile(`${this.group(containerId, 'memory')}/memory.oom_control`, 'utf8'),
    ]);
    return {
      cpuTimeMs: Math.round(cpuNs / 1_000_000),
      peakMemoryBytes: peak,
      oomKills: parseKeyedCounter(oomControl, 'oom_kill'),
    };
  }
}

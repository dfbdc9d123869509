import { readFileSync } from 'node:fs';
import type Docker from 'dockerode';
import type { Logger } from '@cordon/service-kit';
import { EXECUTOR_ID_LABEL, EXECUTOR_PID_LABEL, EXECUTOR_START_LABEL } from './drivers/docker.js';

/** Creator of a container: an executor id, and the process that ran it. */
export interface ExecutorInstance {
  readonly executorId: string;
  readonly pid: number;
  /** Start time of the process in clock ticks since boot, so a reused pid is not mistaken for it. */
  readonly startTicks: string;
}

/** Returns the start time field of /proc/PID/stat, or undefined when the process does not exist. */
export function processStartTicks(pid: number | 'self'): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

export function currentInstance(executorId: string): ExecutorInstance {
  return { executorId, pid: process.pid, startTicks: processStartTicks('self') ?? '' };
}

function isAlive(labels: Record<string, string>, self: ExecutorInstance): boolean {
  const executorId = labels[EXECUTOR_ID_LABEL];
  const pid = Number(labels[EXECUTOR_PID_LABEL]);
  const startTicks = labels[EXECUTOR_START_LABEL];
  if (executorId === self.executorId) {
    return pid === self.pid && startTicks === self.startTicks;
  }
  return (
    Number.isInteger(pid) &&
    pid > 0 &&
    startTicks !== undefined &&
    processStartTicks(pid) === startTicks
  );
}

async function removeAll(docker: Docker, ids: readonly string[], logger: Logger): Promise<number> {
  let removed = 0;
  for (const id of ids) {
    try {
      await docker.getContainer(id).remove({ force: true, v: true });
      removed += 1;
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode !== 404) {
        logger.warn({ err: error, container_id: id }, 'could not remove a sandbox container');
      }
    }
  }
  return removed;
}

/**
 * Removes sandbox containers whose executor process is gone, such as those
 * a killed executor left. A container of a live executor on this host is
 * never touched. Liveness is read from /proc, so this works only for
 * executors that share this host's process table.
 */
export async function reapOrphanedSandboxes(
  docker: Docker,
  self: ExecutorInstance,
  logger: Logger,
): Promise<number> {
  const containers = await docker.listContainers({
    all: true,
    filters: { label: [EXECUTOR_ID_LABEL] },
  });
  const orphans = containers
    .filter((container) => !isAlive(container.Labels, self))
    .map((container) => container.Id);
  const removed = await removeAll(docker, orphans, logger);
  logger.info(
    { removed, found: orphans.length },
    'removed sandboxes left by executors that are gone',
  );
  return removed;
}

/** Removes every container of this executor instance, the last step of shutdown. */
export async function removeOwnSandboxes(
  docker: Docker,
  self: ExecutorInstance,
  logger: Logger,
): Promise<number> {
  const containers = await docker.listContainers({
    all: true,
    filters: { label: [`${EXECUTOR_ID_LABEL}=${self.executorId}`] },
  });
  const removed = await removeAll(
    docker,
    containers.map((container) => container.Id),
    logger,
  );
  if (removed > 0) {
    logger.warn({ removed }, 'removed sandboxes still present at shutdown');
  }
  return removed;
}

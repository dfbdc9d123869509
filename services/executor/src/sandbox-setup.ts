import { spawnSync } from 'node:child_process';
import type { Logger } from '@cordon/service-kit';
import { CgroupReader } from './cgroup-usage.js';
import { DockerDriver } from './drivers/docker.js';
import { ProcessDriver } from './drivers/process.js';
import type { SandboxDriver } from './drivers/sandbox.js';
import type { ExecutorOptions } from './executor-options.js';
import { resolveRuntimeImage, type RuntimeImage } from './images.js';
import { reapOrphanedSandboxes, type ExecutorInstance } from './reaper.js';
import type { RuntimeSpec } from './runtimes.js';

/** The driver the executor runs with, and where each runtime runs. */
export interface SandboxSetup {
  readonly driver: SandboxDriver;
  /** Set when the driver is Docker, for engine checks and retried removals. */
  readonly docker: DockerDriver | undefined;
  readonly images: ReadonlyMap<string, RuntimeImage>;
  /** Runtime versions the host has, for the process driver; the catalog's otherwise. */
  readonly languageVersions: ReadonlyMap<string, string>;
}

async function dockerAnswers(driver: DockerDriver): Promise<unknown> {
  try {
    await driver.ping();
    return undefined;
  } catch (error) {
    return error;
  }
}

async function setUpDocker(
  driver: DockerDriver,
  runtimes: ReadonlyMap<string, RuntimeSpec>,
  instance: ExecutorInstance,
  logger: Logger,
): Promise<SandboxSetup> {
  driver.useCgroups(new CgroupReader({ ...(await driver.cgroupInfo()), root: '/sys/fs/cgroup' }));
  await reapOrphanedSandboxes(driver.docker, instance, logger);
  const images = new Map<string, RuntimeImage>();
  for (const runtime of runtimes.values()) {
    const image = await resolveRuntimeImage(driver.docker, runtime);
    images.set(runtime.id, image);
    if (image.available) {
      logger.info({ runtime: runtime.id, image: image.tag }, 'runtime ready');
    } else {
      logger.warn({ runtime: runtime.id, reason: image.reason }, 'runtime unavailable');
    }
  }
  const languageVersions = new Map(
    [...runtimes.values()].map((runtime) => [runtime.id, runtime.languageVersion]),
  );
  return { driver, docker: driver, images, languageVersions };
}

/** Runs a runtime's version command on the host, as the process driver will run the runtime. */
function hostVersion(runtime: RuntimeSpec): string | undefined {
  const [command, ...args] = runtime.versionCommand;
  if (command === undefined) return undefined;
  const result = spawnSync(command, args, {
    encoding: 'utf8',
    timeout: 10_000,
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
  const version = result.status === 0 ? result.stdout.trim() : '';
  return version === '' ? undefined : version;
}

function setUpProcesses(
  driver: ProcessDriver,
  runtimes: ReadonlyMap<string, RuntimeSpec>,
  logger: Logger,
): SandboxSetup {
  const removed = driver.reapOrphans();
  logger.info({ removed }, 'removed cgroups left by runs that are gone');
  const images = new Map<string, RuntimeImage>();
  const languageVersions = new Map<string, string>();
  for (const runtime of runtimes.values()) {
    const version = hostVersion(runtime);
    if (version === undefined) {
      images.set(runtime.id, {
        available: false,
        reason: `${runtime.language} is not installed on this host`,
      });
      logger.warn({ runtime: runtime.id }, 'runtime unavailable: not installed on this host');
      continue;
    }
    images.set(runtime.id, { available: true, tag: 'host', id: '' });
    languageVersions.set(runtime.id, version);
    logger.info({ runtime: runtime.id, language_version: version }, 'runtime ready on the host');
  }
  return { driver, docker: undefined, images, languageVersions };
}

/**
 * Chooses how runs are isolated: Docker when its engine responds, else
 * bubblewrap, and refuses to start when neither can run a sandbox.
 * CORDON_SANDBOX_DRIVER forces one of them.
 */
export async function setUpSandboxes(
  options: ExecutorOptions,
  runtimes: ReadonlyMap<string, RuntimeSpec>,
  instance: ExecutorInstance,
  logger: Logger,
): Promise<SandboxSetup> {
  const docker = new DockerDriver(options.dockerSocket, options.dockerRuntime);
  if (options.sandboxDriver !== 'process') {
    const dockerError = await dockerAnswers(docker);
    if (dockerError === undefined) return setUpDocker(docker, runtimes, instance, logger);
    if (options.sandboxDriver === 'docker') {
      throw new Error(
        `the Docker engine at ${options.dockerSocket} does not respond; start dockerd (scripts/setup-host does) or set CORDON_DOCKER_SOCKET`,
        { cause: dockerError },
      );
    }
    logger.warn(
      { socket: options.dockerSocket },
      'the Docker engine does not respond; trying bubblewrap',
    );
  }

  const problem = ProcessDriver.probe();
  if (problem !== undefined) {
    throw new Error(
      `no sandbox is available: the Docker engine at ${options.dockerSocket} does not respond and bubblewrap cannot run (${problem}); install and start Docker (apt-get install docker.io) or install bubblewrap (apt-get install bubblewrap)`,
    );
  }
  const driver = new ProcessDriver();
  logger.warn(
    { isolation: driver.isolation, missing_protections: driver.missingProtections },
    'running sandboxes under bubblewrap, with fewer protections than Docker gives',
  );
  return setUpProcesses(driver, runtimes, logger);
}

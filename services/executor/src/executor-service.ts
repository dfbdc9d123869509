import { status } from '@grpc/grpc-js';
import { executorV1 } from '@cordon/proto';
import {
  activeTraceId,
  CordonError,
  defineService,
  type CallContext,
  type Logger,
  type RunningServer,
  type ServiceRegistration,
} from '@cordon/service-kit';
import { CgroupReader } from './cgroup-usage.js';
import { runInContainer } from './container-run.js';
import { DockerDriver } from './drivers/docker.js';
import type { ExecutorOptions } from './executor-options.js';
import { resolveRuntimeImage, type RuntimeImage } from './images.js';
import { planRun, unknownRuntime } from './run-request.js';
import { currentInstance, reapOrphanedSandboxes, removeOwnSandboxes } from './reaper.js';
import { RunSlots } from './run-slots.js';
import { loadRuntimeCatalog, type RuntimeSpec } from './runtimes.js';

/** How often the executor checks that the Docker engine answers, for its health status. */
const ENGINE_CHECK_INTERVAL_MS = 2000;

export interface Executor {
  readonly registration: ServiceRegistration;
  readonly driver: DockerDriver;
  /** Reports NOT_SERVING through the server's health service while Docker does not answer. */
  watchEngine(server: RunningServer): void;
  /** Stops watching the engine and removes any container of this instance that is left. */
  close(): Promise<void>;
}

async function resolveImages(
  driver: DockerDriver,
  runtimes: ReadonlyMap<string, RuntimeSpec>,
  logger: Logger,
): Promise<Map<string, RuntimeImage>> {
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
  return images;
}

/** Builds the executor: loads the catalog, checks Docker and the images, and returns its gRPC service. */
export async function createExecutor(options: ExecutorOptions, logger: Logger): Promise<Executor> {
  const runtimes = loadRuntimeCatalog(options.catalogPath);
  const driver = new DockerDriver(options.dockerSocket);
  try {
    await driver.ping();
  } catch (error) {
    throw new Error(
      `the Docker engine at ${options.dockerSocket} does not answer; start dockerd (scripts/setup-host does) or set CORDON_DOCKER_SOCKET`,
      { cause: error },
    );
  }
  const cgroups = new CgroupReader({ ...(await driver.cgroupInfo()), root: '/sys/fs/cgroup' });
  const instance = currentInstance(options.instanceId);
  await reapOrphanedSandboxes(driver.docker, instance, logger);
  const images = await resolveImages(driver, runtimes, logger);
  const slots = new RunSlots({
    capacity: options.maxConcurrentRuns,
    maxQueued: options.maxQueuedRuns,
    queueTimeoutMs: options.queueTimeoutMs,
  });
  const pendingRemovals = new Set<string>();
  const deps = {
    driver,
    cgroups,
    options,
    instance,
    onRemoveFailed: (id: string) => pendingRemovals.add(id),
  };
  let engineTimer: NodeJS.Timeout | undefined;

  async function* execute(
    request: executorV1.ExecuteRequest,
    context: CallContext,
  ): AsyncGenerator<executorV1.ExecuteResponse> {
    const runtime = runtimes.get(request.runtime);
    if (runtime === undefined) {
      throw unknownRuntime(request.runtime, runtimes.keys());
    }
    const plan = planRun(request, runtime, options);
    const image = images.get(runtime.id);
    if (image === undefined || !image.available) {
      throw new CordonError(
        status.FAILED_PRECONDITION,
        `runtime ${runtime.id} is unavailable on this executor: ${image?.available === false ? image.reason : 'no image'}`,
      );
    }

    const queuedAt = performance.now();
    const release = await slots.acquire(context.signal);
    try {
      yield* runInContainer(plan, deps, {
        signal: context.signal,
        logger: context.logger,
        traceId: activeTraceId() ?? '',
        queuedMs: Math.round(performance.now() - queuedAt),
        image,
      });
    } finally {
      release();
    }
  }

  function listRuntimes(): Promise<executorV1.ListRuntimesResponse> {
    return Promise.resolve(
      executorV1.ListRuntimesResponse.fromPartial({
        runtimes: [...runtimes.values()].map((runtime) => {
          const image = images.get(runtime.id);
          return {
            id: runtime.id,
            displayName: runtime.displayName,
            language: runtime.language,
            languageVersion: runtime.languageVersion,
            image: image?.available === true ? { tag: image.tag, digest: image.id } : undefined,
            extensions: [...runtime.extensions],
            compiled: runtime.compile !== null,
            entrypointRule: runtime.entrypoint,
            available: image?.available === true,
          };
        }),
      }),
    );
  }

  function watchEngine(server: RunningServer): void {
    let answering = true;
    engineTimer = setInterval(() => {
      driver.ping().then(
        () => {
          if (!answering && server.state === 'serving') {
            logger.info('the Docker engine answers again; serving');
            server.setServing(true);
          }
          answering = true;
          void retryRemovals();
        },
        (error: unknown) => {
          if (answering && server.state === 'serving') {
            logger.error({ err: error }, 'the Docker engine does not answer; not serving');
            server.setServing(false);
          }
          answering = false;
        },
      );
    }, ENGINE_CHECK_INTERVAL_MS);
  }

  async function retryRemovals(): Promise<void> {
    for (const id of pendingRemovals) {
      pendingRemovals.delete(id);
      await driver.docker
        .getContainer(id)
        .remove({ force: true, v: true })
        .then(
          () =>
            logger.info(
              { container_id: id },
              'removed a sandbox container after the Docker engine came back',
            ),
          (error: unknown) => {
            if ((error as { statusCode?: number }).statusCode !== 404) pendingRemovals.add(id);
          },
        );
    }
  }

  async function close(): Promise<void> {
    clearInterval(engineTimer);
    await removeOwnSandboxes(driver.docker, instance, logger).catch((error: unknown) => {
      logger.error({ err: error }, 'could not list sandboxes at shutdown');
    });
  }

  return {
    registration: defineService(executorV1.ExecutorServiceService, { execute, listRuntimes }),
    driver,
    watchEngine,
    close,
  };
}

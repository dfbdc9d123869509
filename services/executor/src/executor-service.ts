import { status } from '@grpc/grpc-js';
import { executorV1 } from '@cordon/proto';
import {
  activeTraceId,
  CordonError,
  defineService,
  type CallContext,
  type Logger,
  type ServiceRegistration,
} from '@cordon/service-kit';
import { CgroupReader } from './cgroup-usage.js';
import { runInContainer } from './container-run.js';
import { DockerDriver } from './drivers/docker.js';
import type { ExecutorOptions } from './executor-options.js';
import { resolveRuntimeImage, type RuntimeImage } from './images.js';
import { planRun, unknownRuntime } from './run-request.js';
import { RunSlots } from './run-slots.js';
import { loadRuntimeCatalog, type RuntimeSpec } from './runtimes.js';

export interface Executor {
  readonly registration: ServiceRegistration;
  readonly driver: DockerDriver;
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
  const images = await resolveImages(driver, runtimes, logger);
  const slots = new RunSlots(options.maxConcurrentRuns);
  const deps = { driver, cgroups, options };

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

  return {
    registration: defineService(executorV1.ExecutorServiceService, { execute, listRuntimes }),
    driver,
  };
}

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
import { randomUUID } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';
import { AuditSpool } from './audit-spool.js';
import { AuditTrail } from './audit-trail.js';
import type { SandboxDriver } from './drivers/sandbox.js';
import { runInContainer } from './container-run.js';
import type { ExecutorOptions } from './executor-options.js';
import { planRun, unknownRuntime } from './run-request.js';
import { currentInstance, removeOwnSandboxes } from './reaper.js';
import { setUpSandboxes } from './sandbox-setup.js';
import { RunSlots } from './run-slots.js';
import { loadRuntimeCatalog } from './runtimes.js';

const tracer = trace.getTracer('cordon-executor');

/** Runs one step of a run inside its own span, so the trace shows where the time went. */
function inSpan<T>(name: string, step: () => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, async (span) => {
    try {
      return await step();
    } finally {
      span.end();
    }
  });
}

const AGENT_ID_METADATA_KEY = 'x-cordon-agent-id';

/**
 * Returns the agent a call acts for, or "anonymous".
 *
 * NOTE: the metadata value is not verified; the identity layer will replace
 * this with the agent id of a verified token.
 */
function callerAgentId(metadata: Metadata): string {
  const value = metadata.get(AGENT_ID_METADATA_KEY)[0];
  return typeof value === 'string' && value !== '' ? value.slice(0, 256) : 'anonymous';
}

/** How often the executor checks that the Docker engine responds, for its health status. */
const ENGINE_CHECK_INTERVAL_MS = 2000;

export interface Executor {
  readonly registration: ServiceRegistration;
  readonly driver: SandboxDriver;
  /** Reports NOT_SERVING through the server's health service while Docker does not respond. */
  watchEngine(server: RunningServer): void;
  /** Stops watching the engine and removes any container of this instance that is left. */
  close(): Promise<void>;
}

/** Builds the executor: loads the catalog, checks Docker and the images, and returns its gRPC service. */
export async function createExecutor(options: ExecutorOptions, logger: Logger): Promise<Executor> {
  const runtimes = loadRuntimeCatalog(options.catalogPath);
  const instance = currentInstance(options.instanceId);
  const { driver, docker, images, languageVersions } = await setUpSandboxes(
    options,
    runtimes,
    instance,
    logger,
  );
  const slots = new RunSlots({
    capacity: options.maxConcurrentRuns,
    maxQueued: options.maxQueuedRuns,
    queueTimeoutMs: options.queueTimeoutMs,
  });
  const trail =
    options.audit === 'required'
      ? new AuditTrail(options.auditAddress, new AuditSpool(options.spoolFolder), logger)
      : undefined;
  if (trail === undefined) {
    logger.warn('auditing is off (CORDON_EXECUTOR_AUDIT=off): runs leave no audit record');
  } else {
    trail.startReplay();
  }
  const pendingRemovals = new Set<string>();
  const deps = {
    driver,
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

    const agentId = callerAgentId(context.metadata);
    const runId = randomUUID();
    const queuedAt = performance.now();
    const release = await inSpan('run.queue', () => slots.acquire(context.signal));
    try {
      const { isolation } = driver;
      await inSpan('audit.execution_started', async () => {
        await trail?.recordStart(plan, {
          runId,
          agentId,
          image: { tag: image.tag, digest: image.id },
          isolation,
        });
      });
      yield* runInContainer(plan, deps, {
        runId,
        signal: context.signal,
        logger: context.logger,
        traceId: activeTraceId() ?? '',
        queuedMs: Math.round(performance.now() - queuedAt),
        image,
        onFinished: (exited, excerpt) =>
          inSpan('audit.execution_finished', async () => {
            await trail?.recordFinish(runId, agentId, exited, excerpt).catch((error: unknown) => {
              context.logger.error(
                { err: error, run_id: runId },
                'could not record or spool the end of a run',
              );
            });
          }),
      });
    } finally {
      release();
    }
  }

  function listRuntimes(): Promise<executorV1.ListRuntimesResponse> {
    return Promise.resolve(
      executorV1.ListRuntimesResponse.fromPartial({
        isolation: driver.isolation,
        missingProtections: [...driver.missingProtections],
        runtimes: [...runtimes.values()].map((runtime) => {
          const image = images.get(runtime.id);
          return {
            id: runtime.id,
            displayName: runtime.displayName,
            language: runtime.language,
            languageVersion: languageVersions.get(runtime.id) ?? runtime.languageVersion,
            image:
              image?.available === true && docker !== undefined
                ? { tag: image.tag, digest: image.id }
                : undefined,
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
    if (docker === undefined) return;
    const engine = docker;
    let responding = true;
    engineTimer = setInterval(() => {
      engine.ping().then(
        () => {
          if (!responding && server.state === 'serving') {
            logger.info('the Docker engine responds again; serving');
            server.setServing(true);
          }
          responding = true;
          void retryRemovals();
        },
        (error: unknown) => {
          if (responding && server.state === 'serving') {
            logger.error({ err: error }, 'the Docker engine does not respond; not serving');
            server.setServing(false);
          }
          responding = false;
        },
      );
    }, ENGINE_CHECK_INTERVAL_MS);
  }

  async function retryRemovals(): Promise<void> {
    for (const id of pendingRemovals) {
      pendingRemovals.delete(id);
      await docker?.docker
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
    trail?.close();
    if (docker === undefined) return;
    await removeOwnSandboxes(docker.docker, instance, logger).catch((error: unknown) => {
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

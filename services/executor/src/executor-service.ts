import { status } from '@grpc/grpc-js';
import { executorV1 } from '@cordon/proto';
import {
  activeTraceId,
  ConfigError,
  CordonError,
  defineService,
  type CallContext,
  type Logger,
  type RunningServer,
  type ServiceRegistration,
} from '@cordon/service-kit';
import { randomUUID } from 'node:crypto';
import { trace } from '@opentelemetry/api';
import { AuditSpool } from './audit-spool.js';
import { AuditTrail } from './audit-trail.js';
import type { Duplex } from 'node:stream';
import type { DockerDriver } from './drivers/docker.js';
import type { Sandbox, SandboxDriver } from './drivers/sandbox.js';
import type { RuntimeImage } from './images.js';
import type { ExecutorInstance } from './reaper.js';
import type { PrestartSpec, RuntimeSpec } from './runtimes.js';
import { describePolicy, ScanGate } from './scan-gate.js';
import { WarmPool, type WarmPoolHooks } from './warm-pool.js';
import { runInContainer } from './container-run.js';
import type { ExecutorOptions } from './executor-options.js';
import { planRun, unknownRuntime } from './run-request.js';
import { createRunAdmission } from './run-admission.js';
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

/**
 * Builds the warm pools: Docker with runc only, because gVisor cannot change
 * a running sandbox's limits. Returns undefined when no runtime has a pool.
 */
function createWarmPool(
  options: ExecutorOptions,
  runtimes: ReadonlyMap<string, RuntimeSpec>,
  docker: DockerDriver | undefined,
  images: ReadonlyMap<string, RuntimeImage>,
  instance: ExecutorInstance,
  hooks: WarmPoolHooks,
  logger: Logger,
): WarmPool | undefined {
  const { everyRuntime, byRuntime } = options.warmPoolSizes;
  for (const runtimeId of byRuntime.keys()) {
    if (!runtimes.has(runtimeId)) {
      throw new ConfigError(
        'CORDON_WARM_POOL_SIZE',
        `invalid configuration: CORDON_WARM_POOL_SIZE names the runtime ${runtimeId}, which the catalog does not have; known runtimes: ${[...runtimes.keys()].join(', ')}`,
      );
    }
  }
  const sizes = new Map(
    [...runtimes.keys()].map((runtimeId) => [runtimeId, byRuntime.get(runtimeId) ?? everyRuntime]),
  );
  if (![...sizes.values()].some((size) => size > 0)) return undefined;
  if (docker === undefined || options.dockerRuntime !== 'runc') {
    logger.info(
      { isolation: docker === undefined ? 'process/bubblewrap' : 'docker/runsc' },
      'the warm pool needs Docker with runc; every run starts cold',
    );
    return undefined;
  }
  const imageIds = new Map<string, string>();
  for (const [runtimeId, image] of images) {
    if (image.available) imageIds.set(runtimeId, image.id);
  }
  const prestart = new Map<string, PrestartSpec>();
  for (const [runtimeId, runtime] of runtimes) {
    if (runtime.prestart !== null) prestart.set(runtimeId, runtime.prestart);
  }
  logger.info({ sizes: Object.fromEntries(sizes) }, 'warm pool sizes');
  return new WarmPool(
    docker,
    {
      sizes,
      images: imageIds,
      prestart,
      maxIdleMs: options.warmPoolMaxIdleMs,
      refillConcurrency: options.warmPoolRefillConcurrency,
      limits: options.defaults,
      nanoCpus: options.sandboxNanoCpus,
      instance,
    },
    hooks,
    logger,
  );
}

/** How often the executor checks that the Docker engine responds, for its health status. */
const ENGINE_CHECK_INTERVAL_MS = 2000;

export interface Executor {
  readonly registration: ServiceRegistration;
  readonly driver: SandboxDriver;
  /** Ready and target warm sandboxes per runtime, e.g. "python 2/2, java 1/2", or "off". */
  warmPoolDepth(): string;
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
  const admission = await createRunAdmission(logger);
  const scanGate = new ScanGate(
    options.scanPolicy,
    options.scannerAddress,
    options.scanDeadlineMs,
    logger,
  );
  logger.info(
    { policy: describePolicy(options.scanPolicy), scanner: options.scannerAddress },
    'scan policy',
  );
  if (trail === undefined) {
    logger.warn('auditing is off (CORDON_EXECUTOR_AUDIT=off): runs leave no audit record');
  } else {
    trail.startReplay();
  }
  const pendingRemovals = new Set<string>();
  const retirements = new Set<Promise<void>>();
  /** Removes a sandbox in the background, reading its stream meanwhile so Docker never stalls. */
  function retire(sandbox: Sandbox, stream: Duplex, beforeRemoval?: () => Promise<void>): void {
    stream.on('error', () => undefined);
    stream.resume();
    const removal = (beforeRemoval?.() ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => sandbox.remove())
      .catch((error: unknown) => {
        logger.error(
          { err: error, container_id: sandbox.id },
          'could not remove a sandbox container; will retry',
        );
        pendingRemovals.add(sandbox.id);
      })
      .finally(() => {
        stream.destroy();
        retirements.delete(removal);
      });
    retirements.add(removal);
  }
  const pool = createWarmPool(
    options,
    runtimes,
    docker,
    images,
    instance,
    { runsWaiting: () => slots.queued > 0, retire },
    logger,
  );
  pool?.start();
  const deps = { driver, options, instance, pool, retire };
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
    // After the request's own checks: a client derives its deadline from the
    // wall limit, so an over-large limit is reported as the limit it is.
    admission.checkDeadline(context);
    const image = images.get(runtime.id);
    if (image === undefined || !image.available) {
      throw new CordonError(
        status.FAILED_PRECONDITION,
        `runtime ${runtime.id} is unavailable on this executor: ${image?.available === false ? image.reason : 'no image'}`,
      );
    }

    const agentId = context.caller.agentId;
    const lease = await admission.acquire(agentId, context);
    const runId = randomUUID();
    let release: (() => void) | undefined;
    try {
      const scan = await inSpan('run.scan', () => scanGate.check(plan, runId, agentId));
      if (scan.blocked !== undefined) {
        await trail?.recordBlocked(
          plan,
          { runId, agentId },
          describePolicy(scanGate.policy),
          scan.blocked.counts,
        );
        context.logger.info(
          { run_id: runId, policy: describePolicy(scanGate.policy) },
          'the scan policy blocked a run',
        );
        throw scan.blocked.error;
      }
      if (scan.reported !== undefined) yield { event: { $case: 'scan', value: scan.reported } };
      const queuedAt = performance.now();
      release = await inSpan('run.queue', () => slots.acquire(context.signal));
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
      release?.();
      void lease.release();
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
    scanGate.close();
    await admission.close();
    await pool?.close();
    await Promise.allSettled([...retirements]);
    if (docker === undefined) return;
    await removeOwnSandboxes(docker.docker, instance, logger).catch((error: unknown) => {
      logger.error({ err: error }, 'could not list sandboxes at shutdown');
    });
  }

  return {
    registration: defineService(
      executorV1.ExecutorServiceService,
      { execute, listRuntimes },
      {
        roles: { execute: ['agent', 'admin'], listRuntimes: ['agent', 'admin', 'service'] },
        maxRequestBytes: { listRuntimes: 1024 },
        onAuthDenied: (denial) => trail?.recordDenial(denial),
      },
    ),
    driver,
    warmPoolDepth: () => pool?.describeDepth() ?? 'off',
    watchEngine,
    close,
  };
}

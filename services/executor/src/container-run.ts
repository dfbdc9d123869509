import { executorV1 } from '@cordon/proto';
import type { Logger } from '@cordon/service-kit';
import type { OutputExcerpt } from './audit-trail.js';
import type { Duplex } from 'node:stream';
import { DockerSandbox, runContainerName } from './drivers/docker.js';
import type { ContainerExit, Sandbox, SandboxDriver } from './drivers/sandbox.js';
import type { ExecutorOptions } from './executor-options.js';
import { launcherInput, newNonce, type RunScriptOptions } from './launcher.js';
import type { ExecutorInstance } from './reaper.js';
import { exitedEvent } from './run-outcome.js';
import { RunMonitor } from './run-monitor.js';
import type { RunPlan } from './run-request.js';
import type { WarmPool } from './warm-pool.js';

const { RunStatus, StartPath } = executorV1;

export interface RunDependencies {
  readonly driver: SandboxDriver;
  readonly options: ExecutorOptions;
  readonly instance: ExecutorInstance;
  /** Started, never-used sandboxes, when the driver is Docker and a pool is configured. */
  readonly pool: WarmPool | undefined;
  /**
   * Removes a sandbox off the request path, once its run is over, after
   * `beforeRemoval` (such as a rename) has settled.
   */
  readonly retire: (sandbox: Sandbox, stream: Duplex, beforeRemoval?: () => Promise<void>) => void;
}

/**
 * How long a run keeps a warm sandbox's pool name before taking its own.
 * Renaming costs the Docker engine CPU while the program starts: about 3 ms
 * of a 28 ms warm Python hello measured end to end. A shorter run renames its
 * sandbox on the way to removal, so a sandbox that fails to be removed still
 * carries its run's name.
 */
const RENAME_AFTER_MS = 200;

/** A sandbox given to one run, and how the run got it. */
interface Lease {
  readonly sandbox: Sandbox;
  readonly stream: Duplex;
  /** False for a cold sandbox, which the run starts once it reads the stream. */
  readonly started: boolean;
  /** The reason the run took the cold path; undefined on the warm path. */
  readonly coldReason: string | undefined;
  /** Options of the run script that a cold sandbox does not need. */
  readonly script: RunScriptOptions;
}

export interface RunRequestContext {
  readonly runId: string;
  readonly signal: AbortSignal;
  readonly logger: Logger;
  readonly traceId: string;
  readonly queuedMs: number;
  readonly image: { tag: string; id: string };
  /** Called exactly once with how the run ended, whatever path it took; must not throw. */
  readonly onFinished: (exited: executorV1.RunExited, excerpt: OutputExcerpt) => Promise<void>;
}

function event(value: executorV1.ExecuteResponse['event']): executorV1.ExecuteResponse {
  return { event: value };
}

/**
 * Runs one plan in a fresh container: create → attach → start → stream →
 * collect → remove. Yields RunStarted, the output as it comes, and RunExited.
 * The container is removed however the run ends, cancel included.
 */
export async function* runInContainer(
  plan: RunPlan,
  deps: RunDependencies,
  context: RunRequestContext,
): AsyncGenerator<executorV1.ExecuteResponse> {
  const { runId } = context;
  const logger = context.logger.child({ run_id: runId, runtime: plan.runtime.id });
  const nonce = newNonce();

  let lease: Lease | undefined;
  let monitor: RunMonitor | undefined;
  let exited: executorV1.RunExited | undefined;
  let failure: unknown;
  let rename: (() => Promise<void>) | undefined;
  let renameTimer: NodeJS.Timeout | undefined;
  try {
    const leasedAt = performance.now();
    lease = await leaseSandbox(plan, deps, context, logger);
    const { sandbox, stream } = lease;
    const input = await launcherInput(plan, nonce, lease.script);
    // The CPU a prestarted interpreter spent starting is not the run's.
    const cpuBeforeRunMs = lease.script.prestarted
      ? (await deps.driver.readUsage(sandbox.id)).cpuTimeMs
      : 0;
    monitor = new RunMonitor(plan, sandbox, stream, deps.driver, {
      nonce,
      cpuBeforeRunMs,
      compileWallTimeMs: deps.options.compileWallTimeMs,
      excerptBytes: deps.options.auditOutputBytes,
    });
    if (!lease.started) await sandbox.start();
    const sandboxWaitMs = Math.round(performance.now() - leasedAt);
    monitor.begin(context.signal);
    stream.write(input);
    stream.end();
    if (lease.started && sandbox instanceof DockerSandbox) {
      let renaming: Promise<void> | undefined;
      const renameOnce = (): Promise<void> =>
        (renaming ??= sandbox.rename(runContainerName(runId)).catch((error: unknown) => {
          logger.debug({ err: error }, 'could not rename a warm sandbox for its run');
        }));
      rename = renameOnce;
      renameTimer = setTimeout(() => void renameOnce(), RENAME_AFTER_MS);
    }

    yield event({
      $case: 'started',
      value: executorV1.RunStarted.fromPartial({
        runId,
        runtime: plan.runtime.id,
        image: { tag: context.image.tag, digest: context.image.id },
        isolation: deps.driver.isolation,
        missingProtections: [...deps.driver.missingProtections],
        queuedMs: context.queuedMs,
        startPath:
          lease.coldReason === undefined ? StartPath.START_PATH_WARM : StartPath.START_PATH_COLD,
        sandboxWaitMs,
        coldReason: lease.coldReason ?? '',
        limits: plan.limits,
        traceId: context.traceId,
      }),
    });

    for (let item = await monitor.next(); item !== 'end'; item = await monitor.next()) {
      yield event({ $case: 'output', value: item });
    }

    const { observation } = monitor;
    // A run that ended at its markers with its usage read needs nothing more from the engine.
    const exit =
      observation.marker !== undefined && observation.usage !== undefined
        ? undefined
        : await inspectQuietly(sandbox);
    const engineLost =
      observation.killError !== undefined ||
      (exit === undefined && observation.marker === undefined && observation.ending === undefined);
    exited = engineLost ? lostEngineEvent(monitor) : exitedEvent(plan, observation, exit);
    logRun(logger, exited, context.queuedMs, lease.coldReason);
    yield event({ $case: 'exited', value: exited });
  } catch (error) {
    failure = error;
    throw error;
  } finally {
    monitor?.discardRemaining();
    if (exited === undefined) {
      // The run failed before it ended, or its client left while a response was being written.
      await monitor?.stop(
        RunStatus.RUN_STATUS_CANCELLED,
        'the client went away before the run ended',
      );
      exited =
        failure === undefined && monitor !== undefined
          ? exitedEvent(plan, monitor.observation, undefined)
          : failedEvent(monitor);
      logRun(logger, exited, context.queuedMs, lease?.coldReason);
    }
    await context.onFinished(exited, excerptOf(monitor));
    monitor?.close();
    clearTimeout(renameTimer);
    if (lease !== undefined) deps.retire(lease.sandbox, lease.stream, rename);
  }
}

/**
 * Gives the run a warm sandbox with the run's limits set, or else creates a
 * cold one for it. A warm sandbox whose limits cannot be set is destroyed,
 * never handed to another run.
 */
async function leaseSandbox(
  plan: RunPlan,
  deps: RunDependencies,
  context: RunRequestContext,
  logger: Logger,
): Promise<Lease> {
  const warm = deps.pool?.take(plan.runtime.id, plan.limits, plan.env) ?? 'the warm pool is off';
  let coldReason: string;
  if (typeof warm === 'string') {
    coldReason = warm;
  } else {
    try {
      if (
        warm.limits.memoryBytes !== plan.limits.memoryBytes ||
        warm.limits.maxProcesses !== plan.limits.maxProcesses
      ) {
        await warm.sandbox.updateLimits(plan.limits, deps.options.dockerRuntime);
      }
      return {
        sandbox: warm.sandbox,
        stream: warm.stream,
        started: true,
        coldReason: undefined,
        script: { lowerRlimits: warm.lowerRlimits, prestarted: warm.prestarted },
      };
    } catch (error) {
      logger.warn({ err: error }, 'could not set the run limits on a warm sandbox; starting cold');
      deps.retire(warm.sandbox, warm.stream);
      coldReason = 'the warm sandbox could not take the run limits';
    }
  }
  const sandbox = await deps.driver.createSandbox({
    runId: context.runId,
    executor: deps.instance,
    imageId: context.image.id,
    limits: plan.limits,
    rlimitCeiling: plan.limits,
    runtime: deps.options.dockerRuntime,
    nanoCpus: deps.options.sandboxNanoCpus,
  });
  try {
    const stream = await sandbox.attach();
    stream.on('error', () => undefined);
    return {
      sandbox,
      stream,
      started: false,
      coldReason,
      script: { lowerRlimits: false, prestarted: false },
    };
  } catch (error) {
    await sandbox.remove().catch(() => undefined);
    throw error;
  }
}

function excerptOf(monitor: RunMonitor | undefined): OutputExcerpt {
  const observation = monitor?.observation;
  return {
    stdout: observation?.stdoutHead ?? Buffer.alloc(0),
    stderr: observation?.stderrHead ?? Buffer.alloc(0),
    stdoutTruncated: (observation?.stdoutBytes ?? 0) > (observation?.stdoutHead.length ?? 0),
    stderrTruncated: (observation?.stderrBytes ?? 0) > (observation?.stderrHead.length ?? 0),
  };
}

/** Builds the RunExited of a run that broke off with an error, with what was seen of it. */
function failedEvent(
  monitor: RunMonitor | undefined,
  message = 'the run failed inside the executor; see its log',
): executorV1.RunExited {
  const observation = monitor?.observation;
  return executorV1.RunExited.fromPartial({
    status: RunStatus.RUN_STATUS_INTERNAL_ERROR,
    phase: observation?.phase ?? executorV1.RunPhase.RUN_PHASE_RUN,
    wallTimeMs:
      observation === undefined ? 0 : Math.round(performance.now() - observation.runStartedAt),
    stdoutBytes: observation?.stdoutBytes ?? 0,
    stderrBytes: observation?.stderrBytes ?? 0,
    outputTruncated: observation?.outputTruncated ?? false,
    message,
  });
}

/** Builds the RunExited of a run whose container stream broke while Docker could not report on it. */
function lostEngineEvent(monitor: RunMonitor): executorV1.RunExited {
  return failedEvent(
    monitor,
    'lost the connection to the Docker engine during the run; the run was abandoned, try it again',
  );
}

async function inspectQuietly(sandbox: Sandbox): Promise<ContainerExit | undefined> {
  try {
    return await sandbox.inspectExit();
  } catch {
    return undefined;
  }
}

function logRun(
  logger: Logger,
  exited: executorV1.RunExited,
  queuedMs: number,
  coldReason: string | undefined,
): void {
  const fields = {
    start_path: coldReason === undefined ? 'warm' : 'cold',
    cold_reason: coldReason,
    status: executorV1.runStatusToJSON(exited.status),
    exit_code: exited.exitCode,
    signal: exited.signal,
    wall_time_ms: exited.wallTimeMs,
    cpu_time_ms: exited.cpuTimeMs,
    peak_memory_bytes: exited.peakMemoryBytes,
    stdout_bytes: exited.stdoutBytes,
    stderr_bytes: exited.stderrBytes,
    output_truncated: exited.outputTruncated,
    queued_ms: queuedMs,
  };
  if (exited.status === RunStatus.RUN_STATUS_INTERNAL_ERROR) {
    logger.error({ ...fields, reason: exited.message }, 'run finished');
  } else {
    logger.info(fields, 'run finished');
  }
}

import { executorV1 } from '@cordon/proto';
import type { Logger } from '@cordon/service-kit';
import type { OutputExcerpt } from './audit-trail.js';
import type { ContainerExit, Sandbox, SandboxDriver } from './drivers/sandbox.js';
import type { ExecutorOptions } from './executor-options.js';
import { launcherInput, launcherScript, newNonce } from './launcher.js';
import type { ExecutorInstance } from './reaper.js';
import { exitedEvent } from './run-outcome.js';
import { RunMonitor } from './run-monitor.js';
import type { RunPlan } from './run-request.js';

const { RunStatus, StartPath } = executorV1;

export interface RunDependencies {
  readonly driver: SandboxDriver;
  readonly options: ExecutorOptions;
  readonly instance: ExecutorInstance;
  /** Called with a container that could not be removed, so it can be removed once Docker responds again. */
  readonly onRemoveFailed: (containerId: string) => void;
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

  let sandbox: Sandbox | undefined;
  let monitor: RunMonitor | undefined;
  let exited: executorV1.RunExited | undefined;
  let failure: unknown;
  try {
    const input = await launcherInput(plan, nonce);
    sandbox = await deps.driver.createSandbox({
      runId,
      executor: deps.instance,
      imageId: context.image.id,
      script: launcherScript(plan),
      env: plan.env,
      limits: plan.limits,
      runtime: deps.options.dockerRuntime,
      nanoCpus: deps.options.sandboxNanoCpus,
    });
    const stream = await sandbox.attach();
    monitor = new RunMonitor(plan, sandbox, stream, deps.driver, {
      nonce,
      compileWallTimeMs: deps.options.compileWallTimeMs,
      excerptBytes: deps.options.auditOutputBytes,
    });
    stream.on('error', () => undefined);
    await sandbox.start();
    monitor.begin(context.signal);
    stream.write(input);
    stream.end();

    yield event({
      $case: 'started',
      value: executorV1.RunStarted.fromPartial({
        runId,
        runtime: plan.runtime.id,
        image: { tag: context.image.tag, digest: context.image.id },
        isolation: deps.driver.isolation,
        missingProtections: [...deps.driver.missingProtections],
        queuedMs: context.queuedMs,
        startPath: StartPath.START_PATH_COLD,
        limits: plan.limits,
        traceId: context.traceId,
      }),
    });

    for (let item = await monitor.next(); item !== 'end'; item = await monitor.next()) {
      yield event({ $case: 'output', value: item });
    }

    const exit = await inspectQuietly(sandbox);
    const { observation } = monitor;
    const engineLost =
      observation.killError !== undefined ||
      (exit === undefined && observation.marker === undefined && observation.ending === undefined);
    exited = engineLost ? lostEngineEvent(monitor) : exitedEvent(plan, observation, exit);
    logRun(logger, exited, context.queuedMs);
    yield event({ $case: 'exited', value: exited });
  } catch (error) {
    failure = error;
    throw error;
  } finally {
    monitor?.discardRemaining();
    await monitor?.stop(
      RunStatus.RUN_STATUS_CANCELLED,
      'the client went away before the run ended',
    );
    if (exited === undefined) {
      // The run failed before it ended, or its client left while a response was being written.
      exited =
        failure === undefined && monitor !== undefined
          ? exitedEvent(plan, monitor.observation, undefined)
          : failedEvent(monitor);
      logRun(logger, exited, context.queuedMs);
    }
    await context.onFinished(exited, excerptOf(monitor));
    if (sandbox !== undefined) {
      const { id } = sandbox;
      await sandbox.remove().catch((error: unknown) => {
        logger.error(
          { err: error, container_id: id },
          'could not remove a sandbox container; will retry',
        );
        deps.onRemoveFailed(id);
      });
    }
    monitor?.close();
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

function logRun(logger: Logger, exited: executorV1.RunExited, queuedMs: number): void {
  const fields = {
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

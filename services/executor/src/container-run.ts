import { randomUUID } from 'node:crypto';
import { executorV1 } from '@cordon/proto';
import type { Logger } from '@cordon/service-kit';
import type { CgroupReader } from './cgroup-usage.js';
import type { ContainerExit, DockerDriver, DockerSandbox } from './drivers/docker.js';
import type { ExecutorOptions } from './executor-options.js';
import { launcherInput, launcherScript, newNonce } from './launcher.js';
import { exitedEvent } from './run-outcome.js';
import { RunMonitor } from './run-monitor.js';
import type { RunPlan } from './run-request.js';

const { RunStatus, StartPath } = executorV1;

export interface RunDependencies {
  readonly driver: DockerDriver;
  readonly cgroups: CgroupReader;
  readonly options: ExecutorOptions;
}

export interface RunRequestContext {
  readonly signal: AbortSignal;
  readonly logger: Logger;
  readonly traceId: string;
  readonly queuedMs: number;
  readonly image: { tag: string; id: string };
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
  const runId = randomUUID();
  const logger = context.logger.child({ run_id: runId, runtime: plan.runtime.id });
  const nonce = newNonce();
  const input = await launcherInput(plan, nonce);

  const sandbox = await deps.driver.createSandbox({
    runId,
    executorId: deps.options.instanceId,
    imageId: context.image.id,
    script: launcherScript(plan),
    env: plan.env,
    limits: plan.limits,
    runtime: deps.options.dockerRuntime,
    nanoCpus: deps.options.sandboxNanoCpus,
  });
  let monitor: RunMonitor | undefined;
  try {
    const stream = await sandbox.attach();
    monitor = new RunMonitor(
      plan,
      sandbox,
      stream,
      deps.cgroups,
      nonce,
      deps.options.compileWallTimeMs,
    );
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
        isolation: `docker/${deps.options.dockerRuntime}`,
        queuedMs: context.queuedMs,
        startPath: StartPath.START_PATH_COLD,
        limits: plan.limits,
        traceId: context.traceId,
      }),
    });

    for (let item = await monitor.next(); item !== 'end'; item = await monitor.next()) {
      yield event({ $case: 'output', value: item });
    }

    const exited = exitedEvent(plan, monitor.observation, await inspectQuietly(sandbox));
    logRun(logger, exited, context.queuedMs);
    yield event({ $case: 'exited', value: exited });
  } finally {
    monitor?.discardRemaining();
    await monitor?.stop(RunStatus.RUN_STATUS_CANCELLED, 'the run was abandoned');
    await sandbox.remove().catch((error: unknown) => {
      logger.error(
        { err: error, container_id: sandbox.id },
        'could not remove a sandbox container',
      );
    });
    monitor?.close();
  }
}

async function inspectQuietly(sandbox: DockerSandbox): Promise<ContainerExit | undefined> {
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

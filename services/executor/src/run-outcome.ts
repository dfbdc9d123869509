import { executorV1 } from '@cordon/proto';
import type { ContainerExit } from './drivers/docker.js';
import type { RunObservation } from './run-monitor.js';
import type { RunPlan } from './run-request.js';

const { RunPhase, RunStatus } = executorV1;

/** Shells report a child killed by signal N as exit status 128 + N. */
const SIGNAL_STATUS_BASE = 128;
const SIGKILL = 9;
const SIGXCPU = 24;

type Outcome = Pick<executorV1.RunExited, 'status' | 'exitCode' | 'signal' | 'message'>;

function exitOrSignal(status: number): Pick<executorV1.RunExited, 'exitCode' | 'signal'> {
  // NOTE: a program that calls exit(137) itself reads as SIGKILL here; the
  // launcher shell's $? cannot tell the two apart.
  return status > SIGNAL_STATUS_BASE
    ? { signal: status - SIGNAL_STATUS_BASE }
    : { exitCode: status };
}

/**
 * Decides why a run ended. A memory verdict needs two witnesses: the program
 * failed, and either the cgroup counted an OOM kill, Docker flagged one, or
 * the runtime printed its own out-of-memory error. A program that SIGKILLs
 * itself is a runtime error with signal 9, never a memory limit.
 */
export function decideOutcome(
  plan: RunPlan,
  observation: RunObservation,
  exit: ContainerExit | undefined,
): Outcome {
  const { ending, marker, usage } = observation;
  if (ending !== undefined) {
    return { status: ending.status, signal: SIGKILL, message: ending.message };
  }

  if (marker?.kind === 'setup-failed') {
    return {
      status: RunStatus.RUN_STATUS_INTERNAL_ERROR,
      message:
        'the files could not be written to /work; check that limits.tmp_bytes and limits.max_file_bytes fit them',
    };
  }
  if (marker?.kind === 'compiled') {
    return {
      status: RunStatus.RUN_STATUS_COMPILE_ERROR,
      exitCode: marker.status,
      message: 'compilation failed',
    };
  }

  const oomKilled = (usage?.oomKills ?? 0) > 0 || exit?.oomKilled === true;
  if (marker === undefined) {
    if (oomKilled) {
      return {
        status: RunStatus.RUN_STATUS_MEMORY_LIMIT,
        message: `out of memory at the limit of ${plan.limits.memoryBytes} bytes`,
      };
    }
    return {
      status: RunStatus.RUN_STATUS_INTERNAL_ERROR,
      message: `the sandbox stopped before the program finished (container exit code ${exit?.exitCode ?? 'unknown'})`,
    };
  }

  const failed = marker.status !== 0;
  const runtimeOutOfMemory =
    plan.runtime.outOfMemoryMessage !== null &&
    observation.stderrTail.includes(plan.runtime.outOfMemoryMessage);
  if (failed && (oomKilled || runtimeOutOfMemory)) {
    return {
      status: RunStatus.RUN_STATUS_MEMORY_LIMIT,
      ...exitOrSignal(marker.status),
      message: `out of memory at the limit of ${plan.limits.memoryBytes} bytes`,
    };
  }
  if (marker.status === SIGNAL_STATUS_BASE + SIGXCPU) {
    return {
      status: RunStatus.RUN_STATUS_CPU_TIMEOUT,
      signal: SIGXCPU,
      message: `a process reached the CPU-time limit of ${plan.limits.cpuTimeMs} ms`,
    };
  }
  if (failed) {
    const result = exitOrSignal(marker.status);
    const message =
      result.signal === undefined
        ? `exited with status ${marker.status}`
        : `killed by signal ${result.signal}`;
    return { status: RunStatus.RUN_STATUS_RUNTIME_ERROR, ...result, message };
  }
  return { status: RunStatus.RUN_STATUS_OK, exitCode: 0, message: 'exited with status 0' };
}

/** Builds the RunExited event of an observation. */
export function exitedEvent(
  plan: RunPlan,
  observation: RunObservation,
  exit: ContainerExit | undefined,
): executorV1.RunExited {
  const outcome = decideOutcome(plan, observation, exit);
  const endedAt = observation.endedAt ?? performance.now();
  const phase =
    outcome.status === RunStatus.RUN_STATUS_COMPILE_ERROR
      ? RunPhase.RUN_PHASE_COMPILE
      : observation.phase;
  return executorV1.RunExited.fromPartial({
    ...outcome,
    phase,
    wallTimeMs: Math.max(0, Math.round(endedAt - observation.runStartedAt)),
    cpuTimeMs: Math.max(0, (observation.usage?.cpuTimeMs ?? 0) - observation.cpuAtRunStartMs),
    // A sandbox the OOM killer ended has no cgroup left to read; it was at its limit.
    peakMemoryBytes:
      observation.usage?.peakMemoryBytes ??
      (outcome.status === RunStatus.RUN_STATUS_MEMORY_LIMIT ? plan.limits.memoryBytes : 0),
    stdoutBytes: observation.stdoutBytes,
    stderrBytes: observation.stderrBytes,
    outputTruncated: observation.outputTruncated,
  });
}

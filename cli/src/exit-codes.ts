import { status } from '@grpc/grpc-js';
import { executorV1 } from '@cordon/proto';

const { RunStatus } = executorV1;

/** Every exit code of `cordon` besides a program's own, with its meaning for --help and the README. */
export const EXIT = {
  ok: 0,
  /** A negative answer: findings at --fail-on, a broken audit chain, a missing key or run, a moved-on version, an unhealthy service. */
  negative: 1,
  usage: 2,
  timeout: 124,
  mesh: 125,
  blocked: 126,
  cancelled: 130,
  memory: 137,
  outputLimit: 141,
} as const;

export const EXIT_CODE_TABLE: readonly (readonly [string, string])[] = [
  ['0-255', 'cordon run: the exit code of the program (0 when it succeeded)'],
  ['128+N', 'cordon run: the program was ended by signal N'],
  [
    '1',
    "cordon run: a compile error (or the compiler's own exit code); other commands: a negative answer (findings at --fail-on, a broken audit chain, a missing key or run, a memory version that moved on, a service not serving)",
  ],
  [
    '2',
    'the command line is invalid (unknown flag, missing file, bad value): nothing was sent, or the service rejected a value as invalid and nothing ran',
  ],
  ['124', 'cordon run: the program hit its wall-clock (--timeout) or CPU (--cpu) limit'],
  ['125', 'the mesh failed: a service is unreachable, refused the call or had an internal error'],
  ['126', 'cordon run: the scan policy blocked the run before it started'],
  ['130', 'cordon run: the run was cancelled (Ctrl-C or SIGTERM)'],
  ['137', 'cordon run: the program hit its memory limit (--memory) and was killed'],
  ['141', 'cordon run: the program hit its output limit (--max-output) and was killed'],
];

/** The exit code `cordon run` ends with for a finished run. */
export function exitCodeForRun(exited: executorV1.RunExited): number {
  switch (exited.status) {
    case RunStatus.RUN_STATUS_OK:
      return exited.exitCode ?? 0;
    case RunStatus.RUN_STATUS_RUNTIME_ERROR:
      if (exited.exitCode !== undefined) return exited.exitCode;
      return exited.signal === undefined ? EXIT.negative : 128 + exited.signal;
    case RunStatus.RUN_STATUS_COMPILE_ERROR:
      return exited.exitCode !== undefined && exited.exitCode !== 0
        ? exited.exitCode
        : EXIT.negative;
    case RunStatus.RUN_STATUS_WALL_TIMEOUT:
    case RunStatus.RUN_STATUS_CPU_TIMEOUT:
      return EXIT.timeout;
    case RunStatus.RUN_STATUS_MEMORY_LIMIT:
      return EXIT.memory;
    case RunStatus.RUN_STATUS_OUTPUT_LIMIT:
      return EXIT.outputLimit;
    case RunStatus.RUN_STATUS_CANCELLED:
      return EXIT.cancelled;
    default:
      return EXIT.mesh;
  }
}

/** Returns the exit code for a failed mesh call, from its status code. */
export function exitCodeForMeshError(code: status): number {
  // A record that does not exist, or a version that moved on, is a negative result, not a failure.
  if (code === status.NOT_FOUND || code === status.ABORTED) return EXIT.negative;
  // The service checks values the command line cannot, such as a limit above its maximum.
  return code === status.INVALID_ARGUMENT ? EXIT.usage : EXIT.mesh;
}

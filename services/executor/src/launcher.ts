import { randomBytes } from 'node:crypto';
import { pack } from 'tar-stream';
import type { RunLimits } from './executor-options.js';
import type { RunPlan } from './run-request.js';

/** Processes the launcher adds to the program's own: tini and the launcher shell. */
export const LAUNCHER_PROCESSES = 2;

/** The sandbox user of every image: uid and gid 10001, home /work. */
export const SANDBOX_UID = 10001;

/**
 * Quotes one argument for POSIX sh. Run scripts travel as one line, so a
 * newline becomes the launcher's $nl variable, expanded inside double quotes.
 */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`).replaceAll('\n', `'"$nl"'`)}'`;
}

function commandLine(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}

/** The named pipe on which a prestarted interpreter waits for its run. */
const START_PIPE = '/tmp/.cordon-start';

/**
 * The sh script every sandbox runs under tini, the same for every run, so a
 * sandbox can be started before its run is known. It waits for a header line
 * on stdin ("<nonce> <tar size>") and the run's script as one more line, then
 * evaluates the script. The run script extracts the tar into /work and runs
 * the compile phase (if any) and the program, whose stdin is the rest of the
 * container's stdin. After each phase it writes "<nonce> compiled|exited
 * <status>" to stdout and stderr, then sleeps so the container's cgroup, and
 * with it the usage counters, stays until the executor has read them. The
 * nonce travels only on stdin and lives in the shell's memory, so the program
 * cannot print a marker that the executor would believe. Even if it did, it
 * could only report a status of its own making. Reading with the shell's own
 * `read` costs no process, which a warm run's start would feel.
 *
 * With a prestart command, the launcher first starts that interpreter in the
 * background, with the container's stdin and stderr, waiting on a named pipe
 * for its run (see `PrestartSpec`). It starts before the nonce is read, so it
 * never receives it. The shell keeps the pipe open for writing, so a message
 * written before the interpreter opens it waits in the pipe.
 */
export function launcherScript(prestartCommand: readonly string[] | null): string {
  const prestart =
    prestartCommand === null
      ? []
      : [
          `mkfifo ${START_PIPE} || exit 125`,
          `exec 5<>${START_PIPE} 4<&0`,
          // A background command's stdin would be /dev/null without the explicit 0<&4.
          `${commandLine([...prestartCommand, START_PIPE])} 0<&4 4<&- 5<&- 2>&3 3>&- &`,
          'zpid=$!',
          'exec 4<&-',
        ];
  return [
    // The shell's own stderr goes to /dev/null, so its "Killed" notices never
    // mix into the program's stderr; fd 3 keeps the real stderr for the program
    // and the markers.
    'exec 3>&2 2>/dev/null',
    "nl='",
    "'",
    ...prestart,
    `IFS=' ' read -r nonce size || exit 125`,
    'IFS= read -r script || exit 125',
    // Each marker goes to stdout and to stderr: a stream is complete up to a
    // phase's end only once its own marker arrives, because Docker (and
    // gVisor even more) forwards the two pipes independently.
    `mark() { printf '%s %s %d\\n' "$nonce" "$1" "$2"; printf '%s %s %d\\n' "$nonce" "$1" "$2" >&3; }`,
    'eval "$script"',
  ].join('\n');
}

/** The launcher of a sandbox that starts its program with the run. */
export const LAUNCHER_SCRIPT = launcherScript(null);

/** The per-process limits (rlimits) of a run: open files, file size and CPU seconds. */
export interface Rlimits {
  readonly openFiles: number;
  readonly fileBytes: number;
  readonly cpuSoftSeconds: number;
  readonly cpuHardSeconds: number;
}

/** Rlimits that enforce a run's limits; RLIMIT_CPU is a per-process backstop of the cgroup-wide CPU limit. */
export function rlimitsOf(limits: RunLimits): Rlimits {
  const cpuSeconds = Math.ceil(limits.cpuTimeMs / 1000);
  return {
    openFiles: limits.maxOpenFiles,
    fileBytes: limits.maxFileBytes,
    cpuSoftSeconds: cpuSeconds + 1,
    cpuHardSeconds: cpuSeconds + 2,
  };
}

export interface RunScriptOptions {
  /**
   * Set when the sandbox started with higher rlimits than the run's, as a
   * warm sandbox at the server's defaults does for a run that requests less.
   * The script lowers them before anything of the run executes, which needs
   * no privilege.
   */
  readonly lowerRlimits: boolean;
  /**
   * Set when the sandbox's launcher already started the run's interpreter
   * (see `launcherScript`): the script hands it the program's arguments and
   * environment instead of starting the program itself.
   */
  readonly prestarted: boolean;
}

const SETUP_FAILED = '{ mark setup-failed 1; exec sleep 86400; }';

/**
 * Builds the one-line script a run evaluates inside the launcher: its
 * rlimits and environment, then the files, the compile phase and the
 * program. Each phase runs in a subshell, because dash reports a killed
 * simple command on the stderr that command was given.
 */
export function runScript(plan: RunPlan, options: RunScriptOptions): string {
  const commands: string[] = [];
  if (options.lowerRlimits) {
    const rlimits = rlimitsOf(plan.limits);
    // A prestarted interpreter is already running, so its own limits are lowered; children inherit them.
    const pid = options.prestarted ? '$zpid' : '$$';
    commands.push(
      `prlimit --pid ${pid} --nofile=${rlimits.openFiles}:${rlimits.openFiles} --fsize=${rlimits.fileBytes}:${rlimits.fileBytes} --cpu=${rlimits.cpuSoftSeconds}:${rlimits.cpuHardSeconds} || ${SETUP_FAILED}`,
    );
  }
  if (!options.prestarted) {
    commands.push(
      ...plan.env.map((entry) => {
        const at = entry.indexOf('=');
        return `export ${entry.slice(0, at)}=${shellQuote(entry.slice(at + 1))}`;
      }),
    );
  }
  commands.push(`head -c "$size" | tar -x -f - -C /work || ${SETUP_FAILED}`);
  if (plan.compileArgv !== null) {
    commands.push(
      `(${commandLine(plan.compileArgv)} </dev/null 2>&3 3>&-)`,
      'status=$?',
      'mark compiled "$status"',
      '[ "$status" -eq 0 ] || exec sleep 86400',
    );
  }
  if (options.prestarted) {
    // The interpreter replaces the run command's first word.
    const start = JSON.stringify({ argv: plan.runArgv.slice(1), env: plan.env });
    commands.push(`printf '%s\\n' ${shellQuote(start)} >&5`, 'wait "$zpid"');
  } else {
    commands.push(`(${commandLine(plan.runArgv)} 2>&3 3>&-)`);
  }
  commands.push('status=$?', 'mark exited "$status"', 'exec sleep 86400');
  return commands.join('; ');
}

/** Returns a fresh 128-bit nonce for one run's phase markers. */
export function newNonce(): string {
  return randomBytes(16).toString('hex');
}

async function tarFiles(files: RunPlan['files']): Promise<Buffer> {
  const archive = pack();
  const folders = new Set<string>();
  const chunks: Buffer[] = [];
  archive.on('data', (chunk: unknown) => chunks.push(chunk as Buffer));
  const finished = new Promise<void>((resolve, reject) => {
    archive.on('end', resolve);
    archive.on('error', reject);
  });

  const mtime = new Date(0);
  const owner = { uid: SANDBOX_UID, gid: SANDBOX_UID, mtime };
  for (const file of files) {
    const segments = file.path.split('/');
    for (let depth = 1; depth < segments.length; depth += 1) {
      const folder = segments.slice(0, depth).join('/');
      if (!folders.has(folder)) {
        folders.add(folder);
        archive.entry({ name: folder, type: 'directory', mode: 0o755, ...owner });
      }
    }
    archive.entry({ name: file.path, mode: 0o644, ...owner }, file.content);
  }
  archive.finalize();
  await finished;
  return Buffer.concat(chunks);
}

/**
 * Everything the sandbox reads on stdin: the header line, the run script as
 * one line, the files as tar, then the program's stdin.
 */
export async function launcherInput(
  plan: RunPlan,
  nonce: string,
  options: RunScriptOptions,
): Promise<Buffer> {
  const tar = await tarFiles(plan.files);
  return Buffer.concat([
    Buffer.from(`${nonce} ${tar.length}\n${runScript(plan, options)}\n`),
    tar,
    plan.stdin,
  ]);
}

import { randomBytes } from 'node:crypto';
import { pack } from 'tar-stream';
import type { RunPlan } from './run-request.js';

/** The sandbox user of every image: uid and gid 10001, home /work. */
export const SANDBOX_UID = 10001;

/** Quotes one argument for POSIX sh; the launcher script embeds argv this way. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

function commandLine(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}

/**
 * Builds the sh script a sandbox runs under tini. It reads one header line
 * ("<nonce> <tar size>") from stdin, extracts exactly that many bytes of tar
 * into /work, runs the compile phase (if any) and the program, whose stdin is
 * the rest of the container's stdin. After each phase it writes
 * "<nonce> compiled|exited <status>" to stdout and stderr, then sleeps so the container's
 * cgroup, and with it the usage counters, stays until the executor has read
 * them. The nonce travels only on stdin and lives in the shell's memory, so
 * the program cannot print a marker that the executor would believe. Even if
 * it did, it could only report a status of its own making.
 */
export function launcherScript(plan: RunPlan): string {
  // The shell's own stderr goes to /dev/null, so its "Killed" notices never
  // mix into the program's stderr; fd 3 keeps the real stderr for the program
  // and the markers. Each phase runs in a subshell, because dash reports a
  // killed simple command on the stderr that command was given.
  const lines = [
    'exec 3>&2 2>/dev/null',
    `IFS=' ' read -r nonce size || exit 125`,
    // Each marker goes to stdout and to stderr: a stream is complete up to a
    // phase's end only once its own marker arrives, because Docker (and
    // gVisor even more) forwards the two pipes independently.
    `mark() { printf '%s %s %d\\n' "$nonce" "$1" "$2"; printf '%s %s %d\\n' "$nonce" "$1" "$2" >&3; }`,
    `head -c "$size" | tar -x -f - -C /work || { mark setup-failed 1; exec sleep 86400; }`,
  ];
  if (plan.compileArgv !== null) {
    lines.push(
      `(${commandLine(plan.compileArgv)} </dev/null 2>&3 3>&-)`,
      'status=$?',
      'mark compiled "$status"',
      '[ "$status" -eq 0 ] || exec sleep 86400',
    );
  }
  lines.push(
    `(${commandLine(plan.runArgv)} 2>&3 3>&-)`,
    'status=$?',
    'mark exited "$status"',
    'exec sleep 86400',
  );
  return lines.join('\n');
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

/** Everything the sandbox reads on stdin: the header line, the files as tar, then the program's stdin. */
export async function launcherInput(plan: RunPlan, nonce: string): Promise<Buffer> {
  const tar = await tarFiles(plan.files);
  return Buffer.concat([Buffer.from(`${nonce} ${tar.length}\n`), tar, plan.stdin]);
}

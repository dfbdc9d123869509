import { CordonClientError } from '@cordon/client';
import { auditCommand } from './commands/audit.js';
import { healthCommand, runtimesCommand } from './commands/mesh-info.js';
import { memoryCommand } from './commands/memory.js';
import { runCommand } from './commands/run.js';
import { scanCommand } from './commands/scan.js';
import { tokenCommand } from './commands/token.js';
import { EXIT, exitCodeForMeshError } from './exit-codes.js';
import { commandHelp, MAIN_HELP } from './help.js';
import { describeMeshError } from './mesh-error.js';
import { processTerminal, writeLine, type Terminal } from './terminal.js';
import { NegativeAnswer, UsageError } from './usage-error.js';

export { EXIT, EXIT_CODE_TABLE, exitCodeForRun } from './exit-codes.js';
export { formatRunTimeline } from './audit-timeline.js';
export { summaryLine } from './run-display.js';
export { type Terminal } from './terminal.js';

type Command = (args: readonly string[], terminal: Terminal) => Promise<number>;

const COMMANDS: Readonly<Record<string, Command>> = {
  run: runCommand,
  scan: scanCommand,
  memory: memoryCommand,
  audit: auditCommand,
  runtimes: runtimesCommand,
  health: healthCommand,
  token: tokenCommand,
};

function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((arg) => arg === '--help' || arg === '-h');
}

/**
 * Runs one `cordon` command line and returns its exit code. Failures end as
 * one line on stderr: a usage error or a value the service rejected (2), a
 * negative answer (1) or a mesh error (125). Anything else is a bug in this program and keeps its stack.
 */
export async function runCli(
  argv: readonly string[],
  terminal: Terminal = processTerminal(),
): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    writeLine(name === undefined ? terminal.stderr : terminal.stdout, MAIN_HELP);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (command === undefined) {
    writeLine(
      terminal.stderr,
      `cordon: unknown command "${name}"; use run, scan, memory, audit, runtimes, health or token (cordon --help lists them)`,
    );
    return EXIT.usage;
  }
  if (wantsHelp(args)) {
    writeLine(terminal.stdout, commandHelp(name) ?? MAIN_HELP);
    return EXIT.ok;
  }

  try {
    return await command(args, terminal);
  } catch (error) {
    if (error instanceof UsageError) {
      writeLine(terminal.stderr, `cordon: ${error.message}`);
      return EXIT.usage;
    }
    if (error instanceof NegativeAnswer) {
      writeLine(terminal.stderr, `cordon: ${error.message}`);
      return EXIT.negative;
    }
    if (error instanceof CordonClientError) {
      writeLine(terminal.stderr, `cordon: ${describeMeshError(error)}`);
      return exitCodeForMeshError(error.code);
    }
    throw error;
  }
}

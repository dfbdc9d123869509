import { EXIT_CODE_TABLE } from './exit-codes.js';

const CONNECTION = `Connection:
  --address HOST[:PORT]  mesh host, or host:port of the executor (default CORDON_ADDRESS, else 127.0.0.1);
                         the scanner, memory and audit services listen on 7102, 7103 and 7104 of that host.
  CORDON_EXECUTOR_ADDRESS, CORDON_SCANNER_ADDRESS, CORDON_MEMORY_ADDRESS, CORDON_AUDIT_ADDRESS
                         host:port of one service, used when --address is not given.
  Token: CORDON_TOKEN, else the file $XDG_CONFIG_HOME/cordon/token (~/.config/cordon/token).`;

function exitCodes(): string {
  const width = Math.max(...EXIT_CODE_TABLE.map(([code]) => code.length));
  return [
    'Exit codes:',
    ...EXIT_CODE_TABLE.map(([code, meaning]) => `  ${code.padEnd(width)}  ${meaning}`),
  ].join('\n');
}

const COMMANDS: Readonly<Record<string, string>> = {
  run: `Usage: cordon run FILE... [flags]

Runs a program in a fresh sandbox and mirrors its stdout and stderr as they arrive.
The first FILE is the entry file; a folder adds every file under it. Paths in the
sandbox are relative to the deepest folder holding all files. When the run ends, one
summary line goes to stderr: status, wall and CPU time, peak memory, run id, trace id.

Flags:
  --runtime ID       runtime to use (default: chosen by the entry file's extension; see cordon runtimes)
  --stdin FILE|-     give the program this file, or this command's stdin (-), as its stdin
  --arg A            pass an argument to the program (repeat for more)
  --env K=V          set an environment variable in the sandbox (repeat for more)
  --timeout 10s      wall-clock limit (ms, s, m, h, d)
  --cpu 10s          CPU time limit
  --memory 256m      memory limit, swap included (k, m, g)
  --pids 64          most processes and threads
  --max-output 1m    most bytes of stdout and stderr together
  --json             print each event as one JSON object per line (proto3 JSON; output bytes in base64)
Unset limits take the executor's defaults.`,
  scan: `Usage: cordon scan FILE... [--sarif OUT] [--fail-on SEVERITY] [--language L] [--json]

Scans files with the scanner service and prints the findings grouped by file, each with
line:column, severity, rule, CWE, title and fix hint. A FILE may be a folder: every file
under it is scanned.

Flags:
  --sarif OUT        also write the findings as SARIF 2.1.0 to OUT
  --fail-on SEV      exit 1 when a finding is at or above SEV: info, low, medium, high, critical, or none (default none)
  --language L       scan every file as L (default: from each file's extension)
  --json             print each finding as one JSON object per line`,
  memory: `Usage:
  cordon memory put NAMESPACE KEY [VALUE | --file FILE | -] [--content-type T] [--ttl 1h] [--if-version N]
  cordon memory get NAMESPACE KEY [--json]     writes the value to stdout as stored
  cordon memory list NAMESPACE [--prefix P] [--json]
  cordon memory delete NAMESPACE KEY [--if-version N]

The memory belongs to the agent of the token. put reads the value from stdin when VALUE
is - or missing. get and delete exit 1 when the key does not exist.`,
  audit: `Usage:
  cordon audit query [--agent ID] [--action A] [--outcome success|failure|denied] [--run ID]
                     [--trace ID] [--since TIME] [--until TIME] [--after-seq N] [--limit N] [--json]
  cordon audit run RUN_ID [--json]      the run's timeline: who, when, code, limits, findings, output, outcome, trace
  cordon audit trace TRACE_ID [--json]  every record of one trace
  cordon audit verify [--from N] [--to N]   recompute the hash chain; exit 1 when it is broken
  cordon audit export [--from N] [--to N] [--output FILE]   every record as JSON Lines

Agents see only their own records; auditors see all. TIME is ISO 8601, e.g. 2025-01-31T14:02:00Z.`,
  runtimes: `Usage: cordon runtimes [--json]

Lists the executor's runtimes, the file extensions that select each, its image, and the
isolation every run gets.`,
  health: `Usage: cordon health [--json]

Checks the health of the executor, scanner, memory and audit services. Exits 0 when all
four are serving, 1 otherwise.`,
  token: `Usage: cordon token create --agent ID --role agent|auditor|admin|service [--ttl 24h] [--key-file FILE]

Mints a signed token and prints it. It needs the mesh's token key file: --key-file, else
CORDON_TOKEN_KEY_FILE, else the services' default (/var/lib/cordon/token.key for root,
~/.local/state/cordon/token.key otherwise). Whoever can read that file can mint any role.`,
};

export const MAIN_HELP = `Usage: cordon COMMAND [flags]

Runs untrusted code in the Cordon mesh and reads what it recorded.

Commands:
  run FILE...            run a program in a sandbox and stream its output
  scan FILE...           scan files for security weaknesses
  memory put|get|list|delete   the agent's key/value memory
  audit query|run|trace|verify|export   the audit log
  runtimes               the runtimes the executor offers
  health                 the health of the four services
  token create           mint an agent token (needs the mesh's key file)

"cordon COMMAND --help" describes a command's flags.

${CONNECTION}

${exitCodes()}`;

/** Help of one command, with the connection settings and exit codes every command shares. */
export function commandHelp(command: string): string | undefined {
  const text = COMMANDS[command];
  return text === undefined ? undefined : `${text}\n\n${CONNECTION}\n\n${exitCodes()}`;
}

import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { status } from '@grpc/grpc-js';
import { CordonClientError, type CordonClient, type ExecutionEvent } from '@cordon/client';
import { executorV1 } from '@cordon/proto';
import { parseCommand, type FlagValues } from '../arguments.js';
import { connect } from '../connect.js';
import { EXIT, exitCodeForMeshError, exitCodeForRun } from '../exit-codes.js';
import { describeMeshError } from '../mesh-error.js';
import { collectFiles } from '../run-files.js';
import { Spinner, summaryLine } from '../run-display.js';
import { readAll, writeLine, type Terminal } from '../terminal.js';
import { parseCount, parseDuration, parseSize } from '../units.js';
import { UsageError } from '../usage-error.js';

const { OutputStream, RunPhase } = executorV1;

const RUN_OPTIONS = {
  runtime: { type: 'string' },
  stdin: { type: 'string' },
  arg: { type: 'string', multiple: true },
  env: { type: 'string', multiple: true },
  timeout: { type: 'string' },
  cpu: { type: 'string' },
  memory: { type: 'string' },
  pids: { type: 'string' },
  'max-output': { type: 'string' },
  json: { type: 'boolean' },
} as const;

type RunFlags = FlagValues<typeof RUN_OPTIONS>;

function parseEnv(pairs: readonly string[] | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs ?? []) {
    const equals = pair.indexOf('=');
    if (equals <= 0) {
      throw new UsageError(`run: --env "${pair}" is not NAME=value`);
    }
    env[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  return env;
}

function parseLimits(flags: RunFlags): executorV1.DeepPartial<executorV1.Limits> {
  const limits: executorV1.DeepPartial<executorV1.Limits> = {};
  if (flags.timeout !== undefined) limits.wallTimeMs = parseDuration(flags.timeout, '--timeout');
  if (flags.cpu !== undefined) limits.cpuTimeMs = parseDuration(flags.cpu, '--cpu');
  if (flags.memory !== undefined) limits.memoryBytes = parseSize(flags.memory, '--memory');
  if (flags.pids !== undefined) limits.maxProcesses = parseCount(flags.pids, '--pids', 1);
  if (flags['max-output'] !== undefined) {
    limits.maxOutputBytes = parseSize(flags['max-output'], '--max-output');
  }
  return limits;
}

async function readStdin(source: string | undefined, terminal: Terminal): Promise<Buffer> {
  if (source === undefined) return Buffer.alloc(0);
  if (source === '-') return readAll(terminal.stdin);
  try {
    return readFileSync(source);
  } catch (error) {
    throw new UsageError(
      `run: --stdin ${source}: cannot read it (${(error as NodeJS.ErrnoException).code ?? 'unknown error'})`,
    );
  }
}

/** Picks the runtime whose extensions include the entry file's, as ListRuntimes reports them. */
async function chooseRuntime(
  client: CordonClient,
  entrypoint: string,
): Promise<{ id: string; compiled: boolean }> {
  const { runtimes } = await client.listRuntimes();
  const extension = extname(entrypoint).toLowerCase();
  const match = runtimes.find((runtime) => runtime.extensions.includes(extension));
  if (match === undefined) {
    const known = runtimes
      .map((runtime) => `${runtime.id} (${runtime.extensions.join(' ')})`)
      .join(', ');
    throw new UsageError(
      `run: no runtime of this executor runs "${extension === '' ? entrypoint : extension}" files; pass --runtime with one of ${known}`,
    );
  }
  return { id: match.id, compiled: match.compiled };
}

/** Mirrors the program's output, keeping track of whether the terminal sits at the start of a line. */
class OutputMirror {
  atLineStart = true;

  constructor(
    private readonly terminal: Terminal,
    private readonly spinner: Spinner | undefined,
  ) {}

  /** Writes one line of the CLI's own on stderr, before any program output. */
  note(line: string): void {
    writeLine(this.terminal.stderr, line);
  }

  write(chunk: executorV1.OutputChunk): void {
    if (chunk.data.length === 0) return;
    this.spinner?.clear();
    const target =
      chunk.stream === OutputStream.OUTPUT_STREAM_STDERR
        ? this.terminal.stderr
        : this.terminal.stdout;
    target.write(chunk.data);
    this.atLineStart = chunk.data[chunk.data.length - 1] === 0x0a;
  }
}

function showEvent(
  event: ExecutionEvent,
  mirror: OutputMirror,
  spinner: Spinner | undefined,
  compiled: boolean,
): void {
  if (event.$case === 'started') {
    if (compiled) spinner?.show('compiling');
    else spinner?.clear();
  } else if (event.$case === 'output') {
    if (event.value.phase === RunPhase.RUN_PHASE_RUN) spinner?.clear();
    mirror.write(event.value);
  } else if (event.$case === 'exited') {
    spinner?.clear();
  } else {
    const line = scanSummary(event.value);
    if (line !== undefined) {
      spinner?.clear();
      mirror.note(line);
    }
  }
}

/** One line on the scan made before the run, when it found something or could not be made. */
function scanSummary(scan: executorV1.ScanReported): string | undefined {
  if (scan.skipped) return `cordon: the scan before the run was skipped: ${scan.skippedReason}`;
  const findings = scan.report?.findings ?? [];
  if (findings.length === 0) return undefined;
  const listed = findings
    .map((finding) => `${finding.file}:${finding.startLine} ${finding.ruleId}`)
    .join(', ');
  return `cordon: the scan found ${findings.length} finding(s) before the run: ${listed}`;
}

/** `cordon run FILE...`: runs a program in the sandbox and mirrors its output. */
export async function runCommand(args: readonly string[], terminal: Terminal): Promise<number> {
  const { values: flags, positionals } = parseCommand(args, RUN_OPTIONS, 'run');
  const submission = collectFiles(positionals);
  const limits = parseLimits(flags);
  const env = parseEnv(flags.env);
  const stdin = await readStdin(flags.stdin, terminal);

  const client = connect(flags.address, terminal);
  const controller = new AbortController();
  const onSignal = (): void => {
    controller.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const runtime =
      flags.runtime === undefined
        ? await chooseRuntime(client, submission.entrypoint)
        : { id: flags.runtime, compiled: false };
    const spinner =
      terminal.stderrIsTty && flags.json !== true ? new Spinner(terminal.stderr) : undefined;
    spinner?.show('waiting for a sandbox');

    const execution = client.execute(
      {
        runtime: runtime.id,
        files: submission.files,
        entrypoint: submission.entrypoint,
        args: flags.arg ?? [],
        stdin,
        env,
        limits,
      },
      { signal: controller.signal },
    );
    const mirror = new OutputMirror(terminal, spinner);
    try {
      for await (const event of execution) {
        if (flags.json === true) {
          writeLine(terminal.stdout, JSON.stringify(executorV1.ExecuteResponse.toJSON({ event })));
        } else {
          showEvent(event, mirror, spinner, runtime.compiled);
        }
      }
    } finally {
      spinner?.clear();
    }

    const { started, exited } = await execution.result;
    if (flags.json !== true) {
      writeLine(
        terminal.stderr,
        `${mirror.atLineStart ? '' : '\n'}${summaryLine(started, exited)}`,
      );
    }
    return exitCodeForRun(exited);
  } catch (error) {
    return reportRunFailure(error, flags.json === true, terminal);
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    client.close();
  }
}

function reportRunFailure(error: unknown, json: boolean, terminal: Terminal): number {
  if (!(error instanceof CordonClientError)) {
    throw error;
  }
  if (json) {
    writeLine(
      terminal.stdout,
      JSON.stringify({ error: { code: error.codeName, message: error.message } }),
    );
  }
  if (error.code === status.CANCELLED) {
    writeLine(
      terminal.stderr,
      'cordon: cancelled; the executor stops the program and removes its sandbox',
    );
    return EXIT.cancelled;
  }
  writeLine(terminal.stderr, `cordon: ${describeMeshError(error)}`);
  const findings = error.details?.findings ?? [];
  if (error.code === status.FAILED_PRECONDITION && findings.length > 0) {
    for (const finding of findings) {
      writeLine(
        terminal.stderr,
        `  ${finding.file}:${finding.startLine}  ${finding.ruleId}  ${finding.title}`,
      );
    }
    return EXIT.blocked;
  }
  return exitCodeForMeshError(error.code);
}

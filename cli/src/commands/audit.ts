import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { auditV1 } from '@cordon/proto';
import { type CordonClient } from '@cordon/client';
import { expectPositionals, parseCommand, type FlagValues } from '../arguments.js';
import { formatRunTimeline, recordLine } from '../audit-timeline.js';
import { connect } from '../connect.js';
import { EXIT } from '../exit-codes.js';
import { writeLine, type Terminal } from '../terminal.js';
import { parseCount } from '../units.js';
import { NegativeAnswer, UsageError } from '../usage-error.js';

const AUDIT_OPTIONS = {
  agent: { type: 'string' },
  action: { type: 'string' },
  outcome: { type: 'string' },
  run: { type: 'string' },
  trace: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  'after-seq': { type: 'string' },
  limit: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  output: { type: 'string' },
  json: { type: 'boolean' },
} as const;

type AuditFlags = FlagValues<typeof AUDIT_OPTIONS>;

const OUTCOMES: Readonly<Record<string, auditV1.AuditOutcome>> = {
  success: auditV1.AuditOutcome.AUDIT_OUTCOME_SUCCESS,
  failure: auditV1.AuditOutcome.AUDIT_OUTCOME_FAILURE,
  denied: auditV1.AuditOutcome.AUDIT_OUTCOME_DENIED,
};

function parseTime(text: string, flag: string): Date {
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) {
    throw new UsageError(
      `audit: ${flag} "${text}" is not a time; use ISO 8601 such as 2025-01-31T14:02:00Z`,
    );
  }
  return date;
}

function queryFilter(flags: AuditFlags): auditV1.DeepPartial<auditV1.QueryRequest> {
  const filter: auditV1.DeepPartial<auditV1.QueryRequest> = {
    agentId: flags.agent ?? '',
    action: flags.action ?? '',
    runId: flags.run ?? '',
    traceId: flags.trace ?? '',
  };
  if (flags.outcome !== undefined) {
    const outcome = OUTCOMES[flags.outcome];
    if (outcome === undefined) {
      throw new UsageError(
        `audit: --outcome "${flags.outcome}" is not an outcome; use success, failure or denied`,
      );
    }
    filter.outcome = outcome;
  }
  if (flags.since !== undefined) filter.startTime = parseTime(flags.since, '--since');
  if (flags.until !== undefined) filter.endTime = parseTime(flags.until, '--until');
  if (flags['after-seq'] !== undefined)
    filter.afterSeq = parseCount(flags['after-seq'], '--after-seq');
  if (flags.limit !== undefined) filter.limit = parseCount(flags.limit, '--limit', 1);
  return filter;
}

function printRecords(
  records: readonly auditV1.AuditRecord[],
  json: boolean,
  terminal: Terminal,
): void {
  for (const record of records) {
    writeLine(
      terminal.stdout,
      json ? JSON.stringify(auditV1.AuditRecord.toJSON(record)) : recordLine(record),
    );
  }
  if (!json && records.length === 0) writeLine(terminal.stderr, 'cordon: no audit records match');
}

async function query(
  client: CordonClient,
  positionals: readonly string[],
  flags: AuditFlags,
  terminal: Terminal,
): Promise<number> {
  expectPositionals(positionals, [], 'audit query');
  printRecords(await client.audit.query(queryFilter(flags)), flags.json === true, terminal);
  return EXIT.ok;
}

async function run(
  client: CordonClient,
  positionals: readonly string[],
  flags: AuditFlags,
  terminal: Terminal,
): Promise<number> {
  const [runId = ''] = expectPositionals(positionals, ['RUN_ID'], 'audit run');
  const response = await client.audit.getRun(runId);
  if (flags.json === true) {
    writeLine(terminal.stdout, JSON.stringify(auditV1.GetRunResponse.toJSON(response)));
  } else {
    for (const line of formatRunTimeline(response)) writeLine(terminal.stdout, line);
  }
  return EXIT.ok;
}

async function trace(
  client: CordonClient,
  positionals: readonly string[],
  flags: AuditFlags,
  terminal: Terminal,
): Promise<number> {
  const [traceId = ''] = expectPositionals(positionals, ['TRACE_ID'], 'audit trace');
  printRecords(
    await client.audit.query({ ...queryFilter(flags), traceId }),
    flags.json === true,
    terminal,
  );
  return EXIT.ok;
}

function range(flags: AuditFlags): { fromSeq: number; toSeq: number } {
  return {
    fromSeq: flags.from === undefined ? 0 : parseCount(flags.from, '--from'),
    toSeq: flags.to === undefined ? 0 : parseCount(flags.to, '--to'),
  };
}

async function verify(
  client: CordonClient,
  positionals: readonly string[],
  flags: AuditFlags,
  terminal: Terminal,
): Promise<number> {
  expectPositionals(positionals, [], 'audit verify');
  const result = await client.audit.verify(range(flags));
  if (flags.json === true)
    writeLine(terminal.stdout, JSON.stringify(auditV1.VerifyResponse.toJSON(result)));
  if (!result.ok) {
    throw new NegativeAnswer(
      `audit chain broken at record ${result.firstBadSeq ?? 'unknown'}: ${result.reason}`,
    );
  }
  if (flags.json !== true) {
    writeLine(
      terminal.stdout,
      `audit chain ok: ${result.recordsChecked} records checked, last hash ${result.lastHash === '' ? 'none' : result.lastHash}`,
    );
  }
  return EXIT.ok;
}

async function exportRecords(
  client: CordonClient,
  positionals: readonly string[],
  flags: AuditFlags,
  terminal: Terminal,
): Promise<number> {
  expectPositionals(positionals, [], 'audit export');
  const target: Writable =
    flags.output === undefined ? terminal.stdout : createWriteStream(flags.output, { mode: 0o600 });
  let count = 0;
  try {
    for await (const record of client.audit.export(range(flags))) {
      if (!target.write(`${JSON.stringify(auditV1.AuditRecord.toJSON(record))}\n`))
        await once(target, 'drain');
      count += 1;
    }
  } finally {
    if (target !== terminal.stdout) {
      target.end();
      await once(target, 'close');
    }
  }
  if (flags.output !== undefined)
    writeLine(terminal.stderr, `cordon: wrote ${count} records to ${flags.output}`);
  return EXIT.ok;
}

const ACTIONS = { query, run, trace, verify, export: exportRecords } as const;

/** `cordon audit query|run|trace|verify|export`: reads the audit log. */
export async function auditCommand(args: readonly string[], terminal: Terminal): Promise<number> {
  const [action, ...rest] = args;
  const handler =
    action !== undefined && Object.hasOwn(ACTIONS, action)
      ? ACTIONS[action as keyof typeof ACTIONS]
      : undefined;
  if (handler === undefined) {
    throw new UsageError(
      `audit: ${action === undefined ? 'missing action' : `unknown action "${action}"`}; use query, run, trace, verify or export`,
    );
  }
  const { values: flags, positionals } = parseCommand(rest, AUDIT_OPTIONS, `audit ${action ?? ''}`);
  const client = connect(flags.address, terminal);
  try {
    return await handler(client, positionals, flags, terminal);
  } finally {
    client.close();
  }
}

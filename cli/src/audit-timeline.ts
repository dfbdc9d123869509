import { auditV1 } from '@cordon/proto';
import { formatMs, formatSize } from './units.js';

type Attributes = Readonly<Record<string, auditV1.AttributeValue>>;

/** Returns an attribute's value as text, or an empty string when it is missing. */
export function attributeText(attributes: Attributes, key: string): string {
  const value = attributes[key]?.value;
  return value === undefined ? '' : String(value.value);
}

function attributeNumber(attributes: Attributes, key: string): number | undefined {
  const value = attributes[key]?.value;
  return value?.$case === 'intValue' || value?.$case === 'doubleValue' ? value.value : undefined;
}

/** Outcome of a record in words: success, failure or denied. */
export function outcomeWord(outcome: auditV1.AuditOutcome): string {
  return auditV1.auditOutcomeToJSON(outcome).replace('AUDIT_OUTCOME_', '').toLowerCase();
}

function time(record: auditV1.AuditRecord): string {
  return (record.event?.occurredTime ?? record.time)?.toISOString() ?? 'unknown time';
}

/** Formats a record as one line: seq, time, service, agent, action, outcome, run id. */
export function recordLine(record: auditV1.AuditRecord): string {
  const event = record.event;
  const run = event?.runId === undefined || event.runId === '' ? '' : `  run ${event.runId}`;
  return `${String(record.seq).padStart(6)}  ${time(record)}  ${(event?.service ?? '').padEnd(8)}  ${(event?.agentId ?? '').padEnd(16)}  ${(event?.action ?? '').padEnd(20)}  ${outcomeWord(event?.outcome ?? auditV1.AuditOutcome.AUDIT_OUTCOME_UNSPECIFIED)}${run}`;
}

function indentExcerpt(excerpt: Buffer, truncated: boolean): string[] {
  if (excerpt.length === 0) return ['    (empty)'];
  const text = excerpt.toString('utf8').replace(/\n$/, '');
  const lines = text.split('\n').map((line) => `    | ${line}`);
  if (truncated)
    lines.push('    (cut here: the audit log keeps only the first bytes of each stream)');
  return lines;
}

function outcomeLines(finished: auditV1.AuditEvent | undefined): string[] {
  if (finished === undefined) {
    return [
      '  outcome    not recorded yet: the run is still going, or its end record is spooled at the executor',
    ];
  }
  const attributes = finished.attributes;
  const exitCode = attributeText(attributes, 'exit_code');
  const signal = attributeText(attributes, 'signal');
  let ending = 'no exit code';
  if (exitCode !== '') {
    ending = `exit code ${exitCode}`;
  } else if (signal !== '') {
    ending = `signal ${signal}`;
  }
  const lines = [
    `  outcome    ${attributeText(attributes, 'status')}, ${ending} (${outcomeWord(finished.outcome)})`,
  ];
  const message = attributeText(attributes, 'message');
  if (message !== '') lines.push(`  message    ${message}`);
  const wall = attributeNumber(attributes, 'wall_time_ms');
  const cpu = attributeNumber(attributes, 'cpu_time_ms');
  const memory = attributeNumber(attributes, 'peak_memory_bytes');
  if (wall !== undefined && cpu !== undefined && memory !== undefined) {
    lines.push(
      `  usage      wall ${formatMs(wall)}, cpu ${formatMs(cpu)}, peak memory ${formatSize(memory)}`,
    );
  }
  const stdout = attributeNumber(attributes, 'stdout_bytes');
  const stderr = attributeNumber(attributes, 'stderr_bytes');
  if (stdout !== undefined && stderr !== undefined) {
    lines.push(
      `  output     ${stdout} bytes on stdout, ${stderr} bytes on stderr${attributeText(attributes, 'output_truncated') === 'true' ? ', cut at the output limit' : ''}`,
    );
  }
  return lines;
}

function findingLines(records: readonly auditV1.AuditRecord[]): string[] {
  const scans = records.filter(
    (record) =>
      record.event?.service === 'scanner' ||
      record.event?.action.startsWith('scan.') === true ||
      record.event?.action === 'policy.blocked',
  );
  if (scans.length === 0) return ['  findings   no scan recorded for this run'];
  return scans.map((record) => {
    const attributes = record.event?.attributes ?? {};
    const counts = Object.keys(attributes)
      .filter((key) => key.startsWith('scan.findings.'))
      .sort()
      .map((key) => `${key.slice('scan.findings.'.length)} ${attributeText(attributes, key)}`);
    return `  findings   ${record.event?.action ?? ''}: ${counts.length === 0 ? 'no counts recorded' : counts.join(', ')}`;
  });
}

/**
 * Formats a run as an incident responder reads it: who ran it and when, which
 * code under which limits, what the scanner found, what it printed, how
 * it ended, and the trace that ties the records together.
 */
export function formatRunTimeline(run: auditV1.GetRunResponse): string[] {
  const events = run.timeline.map((record) => record.event);
  const started = run.timeline.find((record) => record.event?.action === 'execution.started');
  const finished = run.timeline.find((record) => record.event?.action === 'execution.finished');
  const first = started ?? run.timeline[0];
  const attributes = started?.event?.attributes ?? {};
  const agents = [
    ...new Set(events.map((event) => event?.agentId ?? '').filter((id) => id !== '')),
  ];
  const traces = [
    ...new Set(events.map((event) => event?.traceId ?? '').filter((id) => id !== '')),
  ];

  const lines = [`run ${run.runId}`];
  lines.push(`  agent      ${agents.length === 0 ? 'unknown' : agents.join(', ')}`);
  lines.push(`  started    ${first === undefined ? 'not recorded' : time(first)}`);
  lines.push(`  ended      ${finished === undefined ? 'not recorded' : time(finished)}`);
  lines.push(`  trace      ${traces.length === 0 ? 'none recorded' : traces.join(', ')}`);
  const runtime = attributeText(attributes, 'runtime');
  if (runtime !== '') {
    lines.push(
      `  runtime    ${runtime}, image ${attributeText(attributes, 'image.tag')} ${attributeText(attributes, 'image.digest')}, isolation ${attributeText(attributes, 'isolation')}`,
    );
  }
  const codeHash = started?.event?.codeSha256 ?? '';
  lines.push(
    `  code       sha256 ${codeHash === '' ? 'not recorded' : codeHash}, ${run.files.length} file${run.files.length === 1 ? '' : 's'}`,
  );
  for (const file of run.files) {
    lines.push(`               ${file.path}  ${formatSize(file.content.length)}`);
  }
  const limits = Object.keys(attributes)
    .filter((key) => key.startsWith('limits.'))
    .sort()
    .map((key) => `${key.slice('limits.'.length)} ${attributeText(attributes, key)}`);
  lines.push(`  limits     ${limits.length === 0 ? 'not recorded' : limits.join(', ')}`);
  lines.push(...findingLines(run.timeline));
  lines.push(...outcomeLines(finished?.event));
  lines.push('timeline');
  lines.push(...run.timeline.map((record) => `  ${recordLine(record).trimStart()}`));
  lines.push('stdout (excerpt)');
  lines.push(...indentExcerpt(run.stdoutExcerpt, run.stdoutTruncated));
  lines.push('stderr (excerpt)');
  lines.push(...indentExcerpt(run.stderrExcerpt, run.stderrTruncated));
  return lines;
}

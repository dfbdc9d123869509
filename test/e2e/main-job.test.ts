import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCordonClient, type CordonClient } from '@cordon/client';
import { executorV1 } from '@cordon/proto';
import {
  cordon,
  EXAMPLES,
  startMesh,
  token,
  type CliResult,
  type Mesh,
} from '../../cli/test/mesh-harness.js';
import { containersCreatedSince } from '../../services/executor/test/executor-harness.js';

// The whole mesh as README's first command starts it, four processes on
// loopback, driven through the CLI and the client as an agent and an
// auditor would, with the scan policy at block:HIGH.
let mesh: Mesh;
let agent: Record<string, string>;
let auditor: Record<string, string>;
let client: CordonClient;

beforeAll(async () => {
  mesh = await startMesh({ scanPolicy: 'block:HIGH' });
  agent = { ...mesh.env, CORDON_TOKEN: token('agent-e2e') };
  auditor = { ...mesh.env, CORDON_TOKEN: token('auditor-e2e', 'auditor') };
  client = createCordonClient({
    env: {},
    token: token('agent-e2e'),
    addresses: {
      executor: mesh.env['CORDON_EXECUTOR_ADDRESS'] ?? '',
      scanner: mesh.env['CORDON_SCANNER_ADDRESS'] ?? '',
      memory: mesh.env['CORDON_MEMORY_ADDRESS'] ?? '',
      audit: mesh.env['CORDON_AUDIT_ADDRESS'] ?? '',
    },
  });
});

afterAll(async () => {
  client.close();
  const leftovers = await mesh.stop();
  expect(leftovers, 'containers left behind').toEqual([]);
});

/** Reads the run id and trace id the CLI printed in its summary line. */
function summaryIds(result: CliResult): { runId: string; traceId: string } {
  const match = /; run ([0-9a-f-]{36}); trace ([0-9a-f]{32})\n$/.exec(result.stderr);
  return { runId: match?.[1] ?? '', traceId: match?.[2] ?? '' };
}

interface RecordLine {
  event: { action: string; runId: string; traceId: string; agentId: string };
}

async function auditRecords(runId: string): Promise<RecordLine['event'][]> {
  const result = await cordon(['audit', 'query', '--run', runId, '--json'], auditor);
  expect(result.code).toBe(0);
  return result.stdout
    .trimEnd()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => (JSON.parse(line) as RecordLine).event);
}

interface ExampleRun {
  readonly title: string;
  readonly args: readonly string[];
  /** File under examples/ with the exact stdout. */
  readonly stdout: string;
  readonly exitCode: number;
}

/** The examples npm start --examples runs; the scan example is covered by the block test here. */
const EXAMPLE_RUNS = (
  JSON.parse(readFileSync(join(EXAMPLES, 'runs.json'), 'utf8')) as ExampleRun[]
).filter((example) => example.args[0] === 'run');

describe('the main job on one machine', () => {
  it.each(EXAMPLE_RUNS)(
    'runs $title with its exact output, exit code and audit trail',
    async ({ args, stdout, exitCode }) => {
      const result = await cordon(args, agent);

      expect(result.stdout).toBe(readFileSync(join(EXAMPLES, stdout), 'utf8'));
      expect(result.code).toBe(exitCode);
      const { runId, traceId } = summaryIds(result);
      expect(traceId).toMatch(/^[0-9a-f]{32}$/);
      const records = await auditRecords(runId);
      expect(records.map((record) => record.action)).toEqual([
        'scan.completed',
        'execution.started',
        'execution.finished',
      ]);
      expect(new Set(records.map((record) => record.traceId))).toEqual(new Set([traceId]));
      expect(new Set(records.map((record) => record.agentId))).toEqual(new Set(['agent-e2e']));
    },
  );

  it('blocks the file with findings before any container exists, and records why', async () => {
    const since = Date.now();
    const result = await cordon(['run', 'examples/security/vulnerable.py'], agent);

    expect(result.code).toBe(126);
    expect(result.stdout).toBe('');
    expect(result.stderr.split('\n')[0]).toBe(
      'cordon: executor: the request was refused (FAILED_PRECONDITION): the scan policy block:HIGH blocked this run: 6 finding(s) at or above HIGH; no sandbox was started',
    );
    expect(result.stderr).toContain('vulnerable.py:15  command.shell-injection');
    expect(containersCreatedSince(mesh.executorId, since)).toBe(0);
    const blocked = await cordon(
      ['audit', 'query', '--action', 'policy.blocked', '--json'],
      auditor,
    );
    const events = blocked.stdout
      .trimEnd()
      .split('\n')
      .map((line) => (JSON.parse(line) as RecordLine).event);
    expect(events.map((event) => [event.action, event.agentId])).toEqual([
      ['policy.blocked', 'agent-e2e'],
    ]);
  });

  it('streams a run through the client as an agent embeds it', async () => {
    const execution = client.execute({
      runtime: 'javascript',
      files: [{ path: 'main.js', content: Buffer.from('console.log(6 * 7)') }],
    });
    const kinds: string[] = [];
    let stdout = '';
    for await (const event of execution) {
      kinds.push(event.$case);
      if (event.$case === 'output') stdout += event.value.data.toString();
    }
    const result = await execution.result;

    // Under a block policy a clean scan sends no event; the run simply starts.
    expect(kinds[0]).toBe('started');
    expect(kinds.at(-1)).toBe('exited');
    expect(result.exited.status).toBe(executorV1.RunStatus.RUN_STATUS_OK);
    expect(stdout).toBe('42\n');
  });

  it('verifies the whole audit chain at the end', async () => {
    const result = await cordon(['audit', 'verify'], auditor);

    expect(result.stdout).toMatch(
      /^audit chain ok: \d+ records checked, last hash [0-9a-f]{64}\n$/,
    );
    expect(result.code).toBe(0);
  });
});

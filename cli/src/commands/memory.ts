import { readFileSync } from 'node:fs';
import { status } from '@grpc/grpc-js';
import { CordonClientError, type CordonClient } from '@cordon/client';
import { memoryV1 } from '@cordon/proto';
import { expectPositionals, parseCommand, type FlagValues } from '../arguments.js';
import { connect } from '../connect.js';
import { EXIT } from '../exit-codes.js';
import { readAll, writeLine, type Terminal } from '../terminal.js';
import { formatSize, parseCount, parseDuration } from '../units.js';
import { NegativeAnswer, UsageError } from '../usage-error.js';

const MEMORY_OPTIONS = {
  file: { type: 'string' },
  'content-type': { type: 'string' },
  ttl: { type: 'string' },
  'if-version': { type: 'string' },
  prefix: { type: 'string' },
  json: { type: 'boolean' },
} as const;

type MemoryFlags = FlagValues<typeof MEMORY_OPTIONS>;

async function putValue(
  client: CordonClient,
  positionals: readonly string[],
  flags: MemoryFlags,
  terminal: Terminal,
): Promise<number> {
  const [namespace, key, text] = positionals;
  if (namespace === undefined || key === undefined || positionals.length > 3) {
    throw new UsageError(
      'memory put: usage: cordon memory put NAMESPACE KEY [VALUE | --file FILE | -]',
    );
  }
  if (text !== undefined && flags.file !== undefined) {
    throw new UsageError('memory put: give the value either as VALUE or with --file, not both');
  }
  let value: Buffer;
  if (flags.file !== undefined) {
    value = readFileSync(flags.file);
  } else if (text === undefined || text === '-') {
    value = await readAll(terminal.stdin);
  } else {
    value = Buffer.from(text);
  }

  const request: memoryV1.DeepPartial<memoryV1.PutRequest> = {
    namespace,
    key,
    value,
    contentType: flags['content-type'] ?? '',
  };
  if (flags.ttl !== undefined)
    request.ttlSeconds = Math.ceil(parseDuration(flags.ttl, '--ttl') / 1000);
  if (flags['if-version'] !== undefined)
    request.ifVersion = parseCount(flags['if-version'], '--if-version');
  const { version } = await client.memory.put(request);
  writeLine(
    terminal.stdout,
    flags.json === true ? JSON.stringify({ key, version }) : `stored ${key} at version ${version}`,
  );
  return EXIT.ok;
}

async function getValue(
  client: CordonClient,
  positionals: readonly string[],
  flags: MemoryFlags,
  terminal: Terminal,
): Promise<number> {
  const [namespace = '', key = ''] = expectPositionals(
    positionals,
    ['NAMESPACE', 'KEY'],
    'memory get',
  );
  try {
    const response = await client.memory.get(namespace, key);
    if (flags.json === true) {
      writeLine(terminal.stdout, JSON.stringify(memoryV1.GetResponse.toJSON(response)));
    } else {
      terminal.stdout.write(response.value);
    }
    return EXIT.ok;
  } catch (error) {
    if (error instanceof CordonClientError && error.code === status.NOT_FOUND) {
      throw new NegativeAnswer(error.message);
    }
    throw error;
  }
}

async function listKeys(
  client: CordonClient,
  positionals: readonly string[],
  flags: MemoryFlags,
  terminal: Terminal,
): Promise<number> {
  const [namespace = ''] = expectPositionals(positionals, ['NAMESPACE'], 'memory list');
  let pageToken = '';
  let count = 0;
  do {
    const page = await client.memory.list({ namespace, prefix: flags.prefix ?? '', pageToken });
    for (const info of page.keys) {
      count += 1;
      if (flags.json === true) {
        writeLine(terminal.stdout, JSON.stringify(memoryV1.KeyInfo.toJSON(info)));
        continue;
      }
      const ttl =
        info.ttlRemainingMs === undefined
          ? 'no expiry'
          : `expires in ${Math.ceil(info.ttlRemainingMs / 1000)} s`;
      const type = info.contentType === '' ? '' : `  ${info.contentType}`;
      writeLine(
        terminal.stdout,
        `${info.key}  v${info.version}  ${formatSize(info.sizeBytes)}${type}  ${ttl}`,
      );
    }
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  if (flags.json !== true && count === 0)
    writeLine(terminal.stderr, `cordon: no keys in namespace ${namespace}`);
  return EXIT.ok;
}

async function deleteKey(
  client: CordonClient,
  positionals: readonly string[],
  flags: MemoryFlags,
  terminal: Terminal,
): Promise<number> {
  const [namespace = '', key = ''] = expectPositionals(
    positionals,
    ['NAMESPACE', 'KEY'],
    'memory delete',
  );
  const request: memoryV1.DeepPartial<memoryV1.DeleteRequest> = { namespace, key };
  if (flags['if-version'] !== undefined)
    request.ifVersion = parseCount(flags['if-version'], '--if-version');
  const { deleted } = await client.memory.delete(request);
  if (!deleted) {
    throw new NegativeAnswer(`${key} does not exist in namespace ${namespace}`);
  }
  writeLine(terminal.stdout, `deleted ${key}`);
  return EXIT.ok;
}

const ACTIONS = { put: putValue, get: getValue, list: listKeys, delete: deleteKey } as const;

/** `cordon memory put|get|list|delete`: the calling agent's key/value memory. */
export async function memoryCommand(args: readonly string[], terminal: Terminal): Promise<number> {
  const [action, ...rest] = args;
  const handler =
    action !== undefined && Object.hasOwn(ACTIONS, action)
      ? ACTIONS[action as keyof typeof ACTIONS]
      : undefined;
  if (handler === undefined) {
    throw new UsageError(
      `memory: ${action === undefined ? 'missing action' : `unknown action "${action}"`}; use put, get, list or delete`,
    );
  }
  const { values: flags, positionals } = parseCommand(
    rest,
    MEMORY_OPTIONS,
    `memory ${action ?? ''}`,
  );
  const client = connect(flags.address, terminal);
  try {
    return await handler(client, positionals, flags, terminal);
  } finally {
    client.close();
  }
}

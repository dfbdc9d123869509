import { executorV1 } from '@cordon/proto';
import { expectPositionals, parseCommand } from '../arguments.js';
import { connect } from '../connect.js';
import { EXIT } from '../exit-codes.js';
import { describeMeshError } from '../mesh-error.js';
import { writeLine, type Terminal } from '../terminal.js';

const INFO_OPTIONS = { json: { type: 'boolean' } } as const;

/** `cordon runtimes`: the executor's runtimes, the extensions that select them, and their images. */
export async function runtimesCommand(
  args: readonly string[],
  terminal: Terminal,
): Promise<number> {
  const { values: flags, positionals } = parseCommand(args, INFO_OPTIONS, 'runtimes');
  expectPositionals(positionals, [], 'runtimes');
  const client = connect(flags.address, terminal);
  try {
    const response = await client.listRuntimes();
    if (flags.json === true) {
      writeLine(terminal.stdout, JSON.stringify(executorV1.ListRuntimesResponse.toJSON(response)));
      return EXIT.ok;
    }
    for (const runtime of response.runtimes) {
      const state = runtime.available
        ? `${runtime.image?.tag ?? ''} ${runtime.image?.digest ?? ''}`.trim()
        : 'unavailable: image missing or not matching the catalog';
      writeLine(
        terminal.stdout,
        `${runtime.id.padEnd(11)} ${runtime.displayName.padEnd(26)} ${runtime.extensions.join(' ').padEnd(16)} ${state}`,
      );
    }
    const missing =
      response.missingProtections.length === 0
        ? ''
        : `; missing: ${response.missingProtections.join('; ')}`;
    writeLine(terminal.stdout, `isolation: ${response.isolation}${missing}`);
    return EXIT.ok;
  } finally {
    client.close();
  }
}

/** `cordon health`: the health of each of the four services. */
export async function healthCommand(args: readonly string[], terminal: Terminal): Promise<number> {
  const { values: flags, positionals } = parseCommand(args, INFO_OPTIONS, 'health');
  expectPositionals(positionals, [], 'health');
  const client = connect(flags.address, terminal);
  try {
    const results = await client.health();
    for (const result of results) {
      if (flags.json === true) {
        const error =
          result.error === undefined
            ? {}
            : { error: { code: result.error.codeName, message: result.error.message } };
        writeLine(
          terminal.stdout,
          JSON.stringify({
            service: result.service,
            address: result.address,
            status: result.status,
            facts: result.facts,
            ...error,
          }),
        );
        continue;
      }
      const facts = Object.entries(result.facts)
        .map(([key, value]) => `${key}: ${value}`)
        .join('; ');
      const reason = result.error === undefined ? facts : describeMeshError(result.error);
      writeLine(
        terminal.stdout,
        `${result.service.padEnd(8)}  ${result.address.padEnd(21)}  ${result.status.padEnd(11)}  ${reason}`.trimEnd(),
      );
    }
    return results.every((result) => result.status === 'SERVING') ? EXIT.ok : EXIT.negative;
  } finally {
    client.close();
  }
}

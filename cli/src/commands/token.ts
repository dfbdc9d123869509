import { expectPositionals, parseCommand } from '../arguments.js';
import { EXIT } from '../exit-codes.js';
import { writeLine, type Terminal } from '../terminal.js';
import { UsageError } from '../usage-error.js';

const TOKEN_OPTIONS = {
  agent: { type: 'string' },
  role: { type: 'string' },
  ttl: { type: 'string' },
  'key-file': { type: 'string' },
} as const;

/**
 * `cordon token create`: mints a signed token with the mesh's key file.
 * Whoever can read that file can mint any role, so this is an admin's command.
 */
export async function tokenCommand(args: readonly string[], terminal: Terminal): Promise<number> {
  const [action, ...rest] = args;
  if (action !== 'create') {
    throw new UsageError(
      `token: ${action === undefined ? 'missing action' : `unknown action "${action}"`}; use create`,
    );
  }
  const { values: flags, positionals } = parseCommand(rest, TOKEN_OPTIONS, 'token create');
  expectPositionals(positionals, [], 'token create');
  if (flags.agent === undefined || flags.role === undefined) {
    throw new UsageError(
      'token create: --agent and --role are required; usage: cordon token create --agent ID --role agent|auditor|admin|service [--ttl 24h]',
    );
  }

  // The service kit loads OpenTelemetry and jose; only this command needs it, so it is loaded here.
  const kit = await import('@cordon/service-kit');
  const keyFile =
    flags['key-file'] ??
    terminal.env[kit.TOKEN_KEY_FILE_VARIABLE] ??
    kit.defaultStatePath('token.key');
  let token: string;
  try {
    token = await kit.createToken({
      agentId: flags.agent,
      role: flags.role as (typeof kit.CALLER_ROLES)[number],
      ttl: flags.ttl ?? '24h',
      keyFile,
    });
  } catch (error) {
    if (error instanceof RangeError || error instanceof kit.ConfigError) {
      throw new UsageError(`token create: ${error.message}`);
    }
    throw error;
  }
  writeLine(terminal.stdout, token);
  return EXIT.ok;
}

import { parseArgs } from 'node:util';
import { UsageError } from './usage-error.js';

interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
  readonly short?: string;
}

type Options = Readonly<Record<string, OptionSpec>>;

/** Values of parsed flags: a string, a list of strings for a repeatable flag, or a boolean. */
export type FlagValues<O extends Options> = {
  readonly [K in keyof O]?: O[K] extends { type: 'boolean' }
    ? boolean
    : O[K] extends { multiple: true }
      ? string[]
      : string;
};

export interface ParsedCommand<O extends Options> {
  values: FlagValues<O & typeof COMMON_OPTIONS>;
  positionals: string[];
}

/** Flags every command takes. */
export const COMMON_OPTIONS = {
  address: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

// Node's messages suggest "--" tricks meant for other programs, so the common cases get shorter ones.
function describeParseError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as NodeJS.ErrnoException).code;
  const flag = /'(-[^' ]+)/.exec(message)?.[1] ?? '';
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    return `unknown flag ${flag}`;
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    return message.includes('argument missing')
      ? `flag ${flag} needs a value`
      : `flag ${flag} does not take a value`;
  }
  return message.replace(/\.$/, '');
}

/**
 * Joins a flag that takes a value with a following "-5s" or "-1", which
 * parseArgs would read as a flag, so the value's own check reports what is wrong with it.
 */
function joinNegativeValues(args: readonly string[], options: Options): string[] {
  const joined: string[] = [];
  for (let index = 0; index < args.length; index += 1) {
    const arg = args[index] ?? '';
    if (arg === '--') {
      joined.push(...args.slice(index));
      break;
    }
    const next = args[index + 1];
    const name = arg.startsWith('--') ? arg.slice(2) : undefined;
    const takesValue = name !== undefined && options[name]?.type === 'string';
    if (takesValue && next !== undefined && /^-\d/.test(next)) {
      joined.push(`${arg}=${next}`);
      index += 1;
    } else {
      joined.push(arg);
    }
  }
  return joined;
}

/**
 * Parses a command's arguments strictly, so an unknown flag or a missing
 * value is a usage error that names the flag.
 */
export function parseCommand<O extends Options>(
  args: readonly string[],
  options: O,
  command: string,
) {
  try {
    return parseArgs({
      args: joinNegativeValues(args, options),
      options: { ...COMMON_OPTIONS, ...options },
      allowPositionals: true,
      strict: true,
    }) as ParsedCommand<O>;
  } catch (error) {
    throw new UsageError(
      `${command}: ${describeParseError(error)}; see "cordon ${command} --help"`,
    );
  }
}

/** Returns exactly `count` positional arguments, or throws a usage error naming the missing ones. */
export function expectPositionals(
  positionals: readonly string[],
  names: readonly string[],
  command: string,
): string[] {
  if (positionals.length < names.length) {
    const missing = names.slice(positionals.length).join(' ');
    throw new UsageError(
      `${command}: missing ${missing}; usage: cordon ${command} ${names.join(' ')}`,
    );
  }
  if (positionals.length > names.length) {
    throw new UsageError(
      `${command}: unexpected argument "${positionals[names.length] ?? ''}"; usage: cordon ${command} ${names.join(' ')}`,
    );
  }
  return [...positionals];
}

/**
 * Configuration from `CORDON_*` environment variables. Each variable is
 * declared once with its type, default and range; `readConfig` validates
 * them all at start-up, so nothing after start-up reads raw env vars.
 */

/** One environment variable: how to parse it and what is allowed. */
export interface VarSpec<T> {
  readonly name: string;
  readonly description: string;
  readonly defaultValue: T;
  /** Values the variable accepts, in words, for the error message. */
  readonly allowed: string;
  /** Returns the parsed value, or undefined when the text is not allowed. */
  parse(text: string): T | undefined;
}

export type ConfigSpec = Record<string, VarSpec<unknown>>;

export type ConfigValues<S extends ConfigSpec> = {
  readonly [K in keyof S]: S[K] extends VarSpec<infer T> ? T : never;
};

/** A configuration value that is not allowed; its message is one line. */
export class ConfigError extends Error {
  readonly variable: string;

  constructor(variable: string, message: string) {
    super(message);
    this.name = 'ConfigError';
    this.variable = variable;
  }
}

interface RangeOptions {
  description: string;
  default: number;
  min: number;
  max: number;
}

const INTEGER_PATTERN = /^\d+$/;

function inRange(value: number, options: RangeOptions): number | undefined {
  return Number.isSafeInteger(value) && value >= options.min && value <= options.max
    ? value
    : undefined;
}

export function integerVar(name: string, options: RangeOptions): VarSpec<number> {
  return {
    name,
    description: options.description,
    defaultValue: options.default,
    allowed: `an integer from ${options.min} to ${options.max}`,
    parse: (text) => (INTEGER_PATTERN.test(text) ? inRange(Number(text), options) : undefined),
  };
}

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** Formats a byte count the way the byte parser reads it back, e.g. "16MiB". */
export function formatBytes(bytes: number): string {
  for (const [suffix, size] of [
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (bytes >= size && bytes % size === 0) {
      return `${bytes / size}${suffix}`;
    }
  }
  return `${bytes}`;
}

/** Parses "1048576", "64k", "256m", "1GiB" (binary units) into bytes. */
export function parseBytes(text: string): number | undefined {
  const match = /^(\d+)\s*([a-z]*)$/i.exec(text.trim());
  const multiplier = match?.[2] === undefined ? undefined : BYTE_UNITS[match[2].toLowerCase()];
  if (match?.[1] === undefined || multiplier === undefined) {
    return undefined;
  }
  const value = Number(match[1]) * multiplier;
  return Number.isSafeInteger(value) ? value : undefined;
}

export function bytesVar(name: string, options: RangeOptions): VarSpec<number> {
  return {
    name,
    description: options.description,
    defaultValue: options.default,
    allowed: `a size from ${formatBytes(options.min)} to ${formatBytes(options.max)}, in bytes or with a unit such as 64k, 16m or 1g`,
    parse: (text) => {
      const bytes = parseBytes(text);
      return bytes === undefined ? undefined : inRange(bytes, options);
    },
  };
}

const DURATION_UNITS_MS: Record<string, number> = {
  '': 1,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** Parses "1500", "500ms", "10s", "2m", "1h" or "1d" into milliseconds. */
export function parseDurationMs(text: string): number | undefined {
  const match = /^(\d+)\s*(ms|s|m|h|d)?$/i.exec(text.trim());
  const multiplier = DURATION_UNITS_MS[(match?.[2] ?? '').toLowerCase()];
  if (match?.[1] === undefined || multiplier === undefined) {
    return undefined;
  }
  const value = Number(match[1]) * multiplier;
  return Number.isSafeInteger(value) ? value : undefined;
}

export function durationMsVar(name: string, options: RangeOptions): VarSpec<number> {
  return {
    name,
    description: options.description,
    defaultValue: options.default,
    allowed: `a duration from ${options.min} ms to ${options.max} ms, in milliseconds or with a unit such as 500ms, 10s or 2m`,
    parse: (text) => {
      const ms = parseDurationMs(text);
      return ms === undefined ? undefined : inRange(ms, options);
    },
  };
}

export function enumVar<const T extends string>(
  name: string,
  values: readonly T[],
  options: { description: string; default: T },
): VarSpec<T> {
  return {
    name,
    description: options.description,
    defaultValue: options.default,
    allowed: `one of ${values.join(', ')}`,
    parse: (text) => values.find((value) => value === text),
  };
}

export function booleanVar(
  name: string,
  options: { description: string; default: boolean },
): VarSpec<boolean> {
  return {
    name,
    description: options.description,
    defaultValue: options.default,
    allowed: 'true or false',
    parse: (text) => (text === 'true' ? true : text === 'false' ? false : undefined),
  };
}

export function stringVar(
  name: string,
  options: { description: string; default: string; pattern: RegExp; allowed: string },
): VarSpec<string> {
  return {
    name,
    description: options.description,
    defaultValue: options.default,
    allowed: options.allowed,
    parse: (text) => (options.pattern.test(text) ? text : undefined),
  };
}

const HOST_PORT_PATTERN = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+):(\d{1,5})$/i;

/** A `host:port` address. Port 0 lets the system choose a free port. */
export function addressVar(
  name: string,
  options: { description: string; default: string },
): VarSpec<string> {
  return {
    name,
    description: options.description,
    defaultValue: options.default,
    allowed: 'host:port, such as 127.0.0.1:7101 or [::1]:7101, with a port from 0 to 65535',
    parse: (text) => {
      const port = HOST_PORT_PATTERN.exec(text)?.[2];
      return port !== undefined && Number(port) <= 65_535 ? text : undefined;
    },
  };
}

/**
 * Reads and validates every variable of a spec. An unset or empty variable
 * takes its default. Throws one ConfigError that names every bad variable,
 * its value and what is allowed, on one line.
 */
export function readConfig<S extends ConfigSpec>(
  spec: S,
  env: NodeJS.ProcessEnv = process.env,
): ConfigValues<S> {
  const values: Record<string, unknown> = {};
  const problems: string[] = [];
  let firstBad: string | undefined;

  for (const [key, variable] of Object.entries(spec)) {
    const text = env[variable.name];
    if (text === undefined || text === '') {
      values[key] = variable.defaultValue;
      continue;
    }
    const value = variable.parse(text);
    if (value === undefined) {
      firstBad ??= variable.name;
      problems.push(
        `${variable.name}=${JSON.stringify(text)} is invalid: expected ${variable.allowed}`,
      );
      continue;
    }
    values[key] = value;
  }

  if (firstBad !== undefined) {
    throw new ConfigError(firstBad, `invalid configuration: ${problems.join('; ')}`);
  }
  return values as ConfigValues<S>;
}

import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { CordonClientError, type ServiceName } from './client-error.js';

/** Port each service listens on when nothing else is configured. */
export const STANDARD_PORTS: Readonly<Record<ServiceName, number>> = {
  executor: 7101,
  scanner: 7102,
  memory: 7103,
  audit: 7104,
};

export const SERVICE_NAMES: readonly ServiceName[] = ['executor', 'scanner', 'memory', 'audit'];

/** PEM contents, or the path of a PEM file. */
export type PemSource = string | Buffer;

export interface TlsOptions {
  /** CA certificate that signed the services' certificates. */
  ca: PemSource;
  /** This client's certificate, for mutual TLS. */
  cert: PemSource;
  /** This client's private key. */
  key: PemSource;
}

export interface RetryOptions {
  /** Attempts in all, the first included. Default 4. */
  maxAttempts?: number;
  /** Upper bound of the first backoff; each later one doubles it. Default 100 ms. */
  initialBackoffMs?: number;
  /** Cap of any backoff. Default 2 s. */
  maxBackoffMs?: number;
}

export interface CordonClientOptions {
  /**
   * Mesh host, or `host:port` of the executor; the other services listen on
   * their standard ports on that host. Default: `CORDON_ADDRESS`, else 127.0.0.1.
   * When given, it also takes precedence over the per-service variables.
   */
  address?: string;
  /** `host:port` of single services. Default: `CORDON_<SERVICE>_ADDRESS` when `address` is not given. */
  addresses?: Partial<Record<ServiceName, string>>;
  /** Agent token sent as `authorization: Bearer`. Default: `CORDON_TOKEN`, else the token file. */
  token?: string;
  /** File read when neither `token` nor `CORDON_TOKEN` is set. Default `$XDG_CONFIG_HOME/cordon/token`. */
  tokenFile?: string;
  /** Mutual TLS; without it the client connects in plain text (loopback meshes only). */
  tls?: TlsOptions;
  /** Deadline of every call except Execute. Default 10 s. */
  deadlineMs?: number;
  /** Added to a run's wall-clock limit for Execute's deadline, to cover queueing and compiling. Default 75 s. */
  executeDeadlineMarginMs?: number;
  /** Backoff of idempotent reads retried after UNAVAILABLE. */
  retry?: RetryOptions;
  /** Extra metadata sent with every call, such as a routing header for a proxy. */
  metadata?: Readonly<Record<string, string>>;
  /** Largest message either way. Default 64 MiB. */
  maxMessageBytes?: number;
  /** Where environment variables are read. Default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
}

/** Options after defaults, env and files were applied. */
export interface ResolvedOptions {
  addresses: Readonly<Record<ServiceName, string>>;
  token: string | undefined;
  tls: { ca: Buffer; cert: Buffer; key: Buffer } | undefined;
  deadlineMs: number;
  executeDeadlineMarginMs: number;
  retry: Required<RetryOptions>;
  metadata: Readonly<Record<string, string>>;
  maxMessageBytes: number;
}

export const DEFAULT_DEADLINE_MS = 10_000;
// The executor's default queue timeout and compile limit are 30 s each; the
// rest covers creating and removing the sandbox.
export const DEFAULT_EXECUTE_DEADLINE_MARGIN_MS = 75_000;
// The executor's default wall-clock limit, used when a request sets none.
export const SERVER_DEFAULT_WALL_TIME_MS = 10_000;

const HOST_AND_PORT = /^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]]+)(?::(\d{1,5}))?$/;

/** Splits `host`, `host:port`, `[v6]` or `[v6]:port`; undefined when the text is none of them. */
export function splitAddress(
  address: string,
): { host: string; port: number | undefined } | undefined {
  const match = HOST_AND_PORT.exec(address);
  const host = match?.[1];
  if (match === null || host === undefined) {
    return undefined;
  }
  const port = match[2] === undefined ? undefined : Number(match[2]);
  if (port !== undefined && (port < 1 || port > 65_535)) {
    return undefined;
  }
  return { host, port };
}

function invalidOption(message: string): CordonClientError {
  return new CordonClientError(status.INVALID_ARGUMENT, message);
}

function resolveAddresses(
  options: CordonClientOptions,
  env: ResolvedEnv,
): Record<ServiceName, string> {
  const meshAddress = options.address ?? env['CORDON_ADDRESS'] ?? '127.0.0.1';
  const source = options.address === undefined ? 'CORDON_ADDRESS' : 'address';
  const mesh = splitAddress(meshAddress);
  if (mesh === undefined) {
    throw invalidOption(
      `${source} "${meshAddress}" is not a host or host:port; use for example 127.0.0.1 or 127.0.0.1:7101`,
    );
  }

  const resolved = {} as Record<ServiceName, string>;
  for (const service of SERVICE_NAMES) {
    const variable = `CORDON_${service.toUpperCase()}_ADDRESS`;
    const single =
      options.addresses?.[service] ?? (options.address === undefined ? env[variable] : undefined);
    if (single !== undefined) {
      const parsed = splitAddress(single);
      if (parsed?.port === undefined) {
        throw invalidOption(
          `${variable} "${single}" is not host:port; use for example 127.0.0.1:7101`,
        );
      }
      resolved[service] = single;
      continue;
    }
    const port =
      service === 'executor' ? (mesh.port ?? STANDARD_PORTS.executor) : STANDARD_PORTS[service];
    resolved[service] = `${mesh.host}:${port}`;
  }
  return resolved;
}

type ResolvedEnv = Readonly<Record<string, string | undefined>>;

/** Path of the token file: `$XDG_CONFIG_HOME/cordon/token`, else `~/.config/cordon/token`. */
export function defaultTokenFile(env: ResolvedEnv = process.env): string {
  const configHome = env['XDG_CONFIG_HOME'];
  const base =
    configHome !== undefined && configHome !== '' ? configHome : join(homedir(), '.config');
  return join(base, 'cordon', 'token');
}

function readTokenFile(path: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      return undefined;
    }
    throw new CordonClientError(
      status.UNAUTHENTICATED,
      `cannot read the token file ${path} (${(error as NodeJS.ErrnoException).code ?? 'unknown error'}); fix its permissions or set CORDON_TOKEN`,
      { cause: error },
    );
  }
  const token = text.trim();
  return token === '' ? undefined : token;
}

function resolveToken(options: CordonClientOptions, env: ResolvedEnv): string | undefined {
  if (options.token !== undefined && options.token !== '') {
    return options.token;
  }
  const fromEnv = env['CORDON_TOKEN'];
  if (fromEnv !== undefined && fromEnv.trim() !== '') {
    return fromEnv.trim();
  }
  return readTokenFile(options.tokenFile ?? defaultTokenFile(env));
}

function readPem(source: PemSource, field: string): Buffer {
  if (Buffer.isBuffer(source)) {
    return source;
  }
  if (source.includes('-----BEGIN')) {
    return Buffer.from(source);
  }
  try {
    return readFileSync(source);
  } catch (error) {
    throw invalidOption(
      `tls.${field}: cannot read ${source} (${(error as NodeJS.ErrnoException).code ?? 'unknown error'}); give a readable PEM file`,
    );
  }
}

function positive(value: number | undefined, fallback: number, field: string): number {
  if (value === undefined) {
    return fallback;
  }
  if (!Number.isFinite(value) || value <= 0) {
    throw invalidOption(`${field} ${value} is not allowed; give a positive number`);
  }
  return value;
}

/** Applies defaults, environment variables and files to the client options. */
export function resolveOptions(options: CordonClientOptions): ResolvedOptions {
  const env = options.env ?? process.env;
  const tls =
    options.tls === undefined
      ? undefined
      : {
          ca: readPem(options.tls.ca, 'ca'),
          cert: readPem(options.tls.cert, 'cert'),
          key: readPem(options.tls.key, 'key'),
        };

  return {
    addresses: resolveAddresses(options, env),
    token: resolveToken(options, env),
    tls,
    deadlineMs: positive(options.deadlineMs, DEFAULT_DEADLINE_MS, 'deadlineMs'),
    executeDeadlineMarginMs: positive(
      options.executeDeadlineMarginMs,
      DEFAULT_EXECUTE_DEADLINE_MARGIN_MS,
      'executeDeadlineMarginMs',
    ),
    retry: {
      maxAttempts: Math.floor(positive(options.retry?.maxAttempts, 4, 'retry.maxAttempts')),
      initialBackoffMs: positive(options.retry?.initialBackoffMs, 100, 'retry.initialBackoffMs'),
      maxBackoffMs: positive(options.retry?.maxBackoffMs, 2_000, 'retry.maxBackoffMs'),
    },
    metadata: options.metadata ?? {},
    maxMessageBytes: positive(options.maxMessageBytes, 64 * 1024 ** 2, 'maxMessageBytes'),
  };
}

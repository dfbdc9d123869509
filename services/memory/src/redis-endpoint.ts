import { ConfigError } from '@cordon/service-kit';

/** Where one Redis is and how the service's administrative connection logs in. */
export interface RedisEndpoint {
  readonly host: string;
  readonly port: number;
  readonly db: number;
  readonly tls: boolean;
  /** Administrative user; undefined logs in as Redis's `default` user. */
  readonly username: string | undefined;
  readonly password: string | undefined;
  /** The URL without credentials, safe to log. */
  readonly display: string;
}

const DEFAULT_PORT = 6379;

function invalidUrl(variable: string, reason: string): ConfigError {
  return new ConfigError(
    variable,
    `invalid configuration: ${variable} is invalid: ${reason}; expected redis://[user:password@]host[:port][/db] or rediss:// for TLS`,
  );
}

/**
 * Parses a redis:// or rediss:// URL. The error never repeats the URL,
 * because it can hold a password.
 */
export function parseRedisUrl(variable: string, text: string): RedisEndpoint {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalidUrl(variable, 'it is not a URL');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw invalidUrl(variable, `its scheme is ${url.protocol.slice(0, 20)}`);
  }
  if (url.hostname === '') {
    throw invalidUrl(variable, 'it names no host');
  }
  if (url.search !== '' || url.hash !== '') {
    throw invalidUrl(variable, 'it has a query or fragment, which the service does not read');
  }

  const dbText = url.pathname.replace(/^\//, '');
  const db = dbText === '' ? 0 : Number(dbText);
  if (!/^\d{0,9}$/.test(dbText)) {
    throw invalidUrl(variable, 'its path is not a database number');
  }

  const port = url.port === '' ? DEFAULT_PORT : Number(url.port);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return {
    host,
    port,
    db,
    tls: url.protocol === 'rediss:',
    username: url.username === '' ? undefined : decodeURIComponent(url.username),
    password: url.password === '' ? undefined : decodeURIComponent(url.password),
    display: `${url.protocol}//${url.host}/${db}`,
  };
}

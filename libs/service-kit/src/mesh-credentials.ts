import { readFileSync } from 'node:fs';
import {
  credentials,
  InterceptingCall,
  Metadata,
  ServerCredentials,
  type ChannelCredentials,
  type Interceptor,
} from '@grpc/grpc-js';
import { ConfigError } from './config.js';
import type { TokenKey } from './token-key.js';
import { signActingForToken, signBearerToken } from './tokens.js';

/** Metadata key of the bearer token every call carries. */
export const AUTHORIZATION_METADATA_KEY = 'authorization';
/** Metadata key of the signed proof that a service calls on behalf of an agent. */
export const ACTING_FOR_METADATA_KEY = 'x-cordon-acting-for';

/** Lifetime of a service's own token; it is re-minted at half-life, so a live process never holds an expired one. */
const SERVICE_TOKEN_TTL_MS = 3_600_000;
/** Lifetime of an acting-for token: long enough for one call and its retries, short enough to be useless if leaked. */
const ACTING_FOR_TTL_MS = 60_000;

/** What a service proves itself with when it calls another service. */
export class ServiceIdentity {
  private token = '';
  private refreshTimer: NodeJS.Timeout | undefined;

  private constructor(
    readonly key: TokenKey,
    readonly serviceName: string,
  ) {}

  /** Mints the first service token and keeps it fresh in the background. */
  static async start(key: TokenKey, serviceName: string): Promise<ServiceIdentity> {
    const identity = new ServiceIdentity(key, serviceName);
    identity.token = await signBearerToken(key, serviceName, 'service', SERVICE_TOKEN_TTL_MS);
    identity.refreshTimer = setInterval(() => {
      void signBearerToken(key, serviceName, 'service', SERVICE_TOKEN_TTL_MS).then((token) => {
        identity.token = token;
      });
    }, SERVICE_TOKEN_TTL_MS / 2);
    identity.refreshTimer.unref();
    return identity;
  }

  /** The current service token, valid for at least half an hour. */
  get bearerToken(): string {
    return this.token;
  }

  /** Metadata that proves this service acts for `agentId` (and run `runId`, when given). */
  async actingForMetadata(agentId: string, runId = ''): Promise<Metadata> {
    const metadata = new Metadata();
    metadata.set(
      ACTING_FOR_METADATA_KEY,
      await signActingForToken(
        this.key,
        { agentId, service: this.serviceName, runId },
        ACTING_FOR_TTL_MS,
      ),
    );
    return metadata;
  }

  stop(): void {
    clearInterval(this.refreshTimer);
  }
}

/** PEM files of mutual TLS: the CA that signs every peer, and this process's own certificate and key. */
export interface TlsFiles {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

const TLS_VARIABLES = ['CORDON_TLS_CA', 'CORDON_TLS_CERT', 'CORDON_TLS_KEY'] as const;

/** Reads the three TLS files when all are set; none set means no TLS. */
export function readTlsFiles(paths: {
  ca: string;
  cert: string;
  key: string;
}): TlsFiles | undefined {
  const given = [paths.ca, paths.cert, paths.key];
  if (given.every((path) => path === '')) return undefined;
  const missing = TLS_VARIABLES.filter((_, index) => given[index] === '');
  if (missing.length > 0) {
    throw new ConfigError(
      missing[0] ?? TLS_VARIABLES[0],
      `${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} unset; mutual TLS needs all of ${TLS_VARIABLES.join(', ')}, or none of them`,
    );
  }
  const read = (variable: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'unknown error';
      throw new ConfigError(variable, `${variable} ${path} cannot be read (${code})`);
    }
  };
  return {
    ca: read('CORDON_TLS_CA', paths.ca),
    cert: read('CORDON_TLS_CERT', paths.cert),
    key: read('CORDON_TLS_KEY', paths.key),
  };
}

/** Server credentials: mutual TLS that requires a client certificate from the CA, or plaintext. */
export function serverCredentials(tls: TlsFiles | undefined): ServerCredentials {
  if (tls === undefined) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(
    tls.ca,
    [{ private_key: tls.key, cert_chain: tls.cert }],
    true,
  );
}

/** Channel credentials that present this process's certificate, or plaintext without TLS. */
export function channelCredentials(tls: TlsFiles | undefined): ChannelCredentials {
  if (tls === undefined) return credentials.createInsecure();
  return credentials.createSsl(tls.ca, tls.key, tls.cert);
}

/** How this process authenticates its calls to other services. */
export interface MeshCredentials {
  readonly identity: ServiceIdentity | undefined;
  readonly tls: TlsFiles | undefined;
}

let processCredentials: MeshCredentials = { identity: undefined, tls: undefined };

/**
 * Sets the credentials that createServiceClient gives every client of this
 * process. runService calls it once at start-up, before the service's
 * factory creates its clients.
 */
export function setMeshCredentials(value: MeshCredentials): void {
  processCredentials = value;
}

export function meshCredentials(): MeshCredentials {
  return processCredentials;
}

/** A client interceptor that adds the service's bearer token unless the call carries one. */
export function bearerTokenInterceptor(identity: ServiceIdentity): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start: (metadata, listener, next) => {
        if (metadata.get(AUTHORIZATION_METADATA_KEY).length === 0) {
          metadata.set(AUTHORIZATION_METADATA_KEY, `Bearer ${identity.bearerToken}`);
        }
        next(metadata, listener);
      },
    });
}

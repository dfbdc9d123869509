import { isIP } from 'node:net';
import { ConfigError } from './config.js';
import type { KitConfig } from './kit-options.js';
import { readTlsFiles, type TlsFiles } from './mesh-credentials.js';
import { defaultStatePath } from './state-path.js';
import { createTokenKeyFile, readTokenKey, type TokenKey } from './token-key.js';

/** The token key and TLS files a service runs with, read and checked at start-up. */
export interface MeshSecurity {
  readonly tokenKey: TokenKey;
  readonly tls: TlsFiles | undefined;
  /** True when this start created the default token key file. */
  readonly createdKeyFile: boolean;
}

/** Returns the host of a host:port address, without the brackets of an IPv6 literal. */
function hostOf(address: string): string {
  const host = address.slice(0, address.lastIndexOf(':'));
  return host.startsWith('[') ? host.slice(1, -1) : host;
}

/** True for addresses only this machine can reach: 127.0.0.0/8, ::1 and localhost. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/**
 * Reads the token key (creating the default one on a first start), the TLS
 * files, and rejects listening beyond loopback without TLS unless
 * CORDON_ALLOW_INSECURE_BIND is true.
 */
export function loadMeshSecurity(kit: KitConfig, addressVariable: string): MeshSecurity {
  let keyFile = kit.tokenKeyFile;
  let createdKeyFile = false;
  if (keyFile === '') {
    keyFile = defaultStatePath('token.key');
    createdKeyFile = createTokenKeyFile(keyFile);
  }
  const tokenKey = readTokenKey(keyFile);
  const tls = readTlsFiles({ ca: kit.tlsCa, cert: kit.tlsCert, key: kit.tlsKey });

  const host = hostOf(kit.address);
  if (tls === undefined && !isLoopbackHost(host) && !kit.allowInsecureBind) {
    throw new ConfigError(
      addressVariable,
      `${addressVariable}=${kit.address} is not a loopback address and TLS is off; set CORDON_TLS_CA, CORDON_TLS_CERT and CORDON_TLS_KEY, listen on 127.0.0.1, or set CORDON_ALLOW_INSECURE_BIND=true to accept plaintext tokens on the network`,
    );
  }
  return { tokenKey, tls, createdKeyFile };
}

import {
  createPrivateKey,
  createSecretKey,
  createPublicKey,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ConfigError } from './config.js';

/** Variable naming the file that contains the key agent and service tokens are signed with. */
export const TOKEN_KEY_FILE_VARIABLE = 'CORDON_TOKEN_KEY_FILE';

/** Minimum HS256 secret length: RFC 7518 section 3.2 requires a key of at least the hash size. */
export const MIN_SECRET_BYTES = 32;

/**
 * The key every token of the mesh is signed and verified with: an HS256
 * secret, or an Ed25519 key pair read from a PKCS#8 private key.
 */
export interface TokenKey {
  readonly algorithm: 'HS256' | 'EdDSA';
  readonly signingKey: KeyObject | Uint8Array;
  readonly verificationKey: KeyObject | Uint8Array;
  /** The file the key came from, for messages. */
  readonly path: string;
}

/**
 * Rejects a key file that anyone but its owner may read or write, because
 * whoever reads it can mint admin tokens.
 */
function checkMode(path: string): void {
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new ConfigError(
      TOKEN_KEY_FILE_VARIABLE,
      `${TOKEN_KEY_FILE_VARIABLE} ${path} has mode 0${mode.toString(8)}; it holds the token signing key, so allow only its owner to read it: chmod 600 ${path}`,
    );
  }
}

function parseKey(path: string, content: Buffer): TokenKey {
  const text = content.toString('utf8').trim();
  if (text.startsWith('-----BEGIN PRIVATE KEY-----')) {
    const privateKey = createPrivateKey(text);
    if (privateKey.asymmetricKeyType !== 'ed25519') {
      throw new ConfigError(
        TOKEN_KEY_FILE_VARIABLE,
        `${TOKEN_KEY_FILE_VARIABLE} ${path} holds a ${privateKey.asymmetricKeyType ?? 'unknown'} key; use an Ed25519 key (openssl genpkey -algorithm ed25519) or a secret of at least ${MIN_SECRET_BYTES} bytes`,
      );
    }
    return {
      algorithm: 'EdDSA',
      signingKey: privateKey,
      verificationKey: createPublicKey(privateKey),
      path,
    };
  }

  const secret = Buffer.from(text, 'utf8');
  if (secret.length < MIN_SECRET_BYTES) {
    throw new ConfigError(
      TOKEN_KEY_FILE_VARIABLE,
      `${TOKEN_KEY_FILE_VARIABLE} ${path} holds ${secret.length} bytes; an HS256 secret needs at least ${MIN_SECRET_BYTES} (openssl rand -base64 32 makes one)`,
    );
  }
  // A KeyObject is imported once; raw bytes would be imported again for every token.
  const key = createSecretKey(secret);
  return { algorithm: 'HS256', signingKey: key, verificationKey: key, path };
}

/** Reads and checks a token key file; a bad file is a ConfigError naming the fix. */
export function readTokenKey(path: string): TokenKey {
  let content: Buffer;
  try {
    checkMode(path);
    content = readFileSync(path);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const code = (error as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new ConfigError(
      TOKEN_KEY_FILE_VARIABLE,
      `${TOKEN_KEY_FILE_VARIABLE} ${path} cannot be read (${code}); point it at the mesh's token key file`,
    );
  }
  return parseKey(path, content);
}

/**
 * Writes a new random HS256 secret to `path` with mode 0600 unless the file
 * exists. Several services may start at once: the secret is written to a
 * temporary file and hard-linked into place, which fails when another
 * process won, so every process ends up reading the same secret.
 * Returns true when this call created the file.
 */
export function createTokenKeyFile(path: string): boolean {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(temporary, `${randomBytes(32).toString('base64url')}\n`, {
    mode: 0o600,
    flag: 'wx',
  });
  try {
    linkSync(temporary, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    rmSync(temporary, { force: true });
  }
}

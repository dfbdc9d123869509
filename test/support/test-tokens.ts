import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InterceptingCall, Metadata, type Interceptor } from '@grpc/grpc-js';

/** Roles a test token can carry; "intruder" stands for any role the mesh does not know. */
export type TestRole = 'agent' | 'auditor' | 'admin' | 'service' | 'intruder';

/**
 * Folder of this test process's key. It is named after the pid because the
 * setup file that removes it loads its own copy of this module.
 */
function keyFolder(): string {
  return join(tmpdir(), `cordon-token-key-${process.pid}`);
}

/**
 * Returns this test process's token key file (an HS256 secret, mode 0600),
 * creating it on first use in a temporary folder that removeTestKeyFile
 * deletes after the test file. Every service a test starts gets it as
 * CORDON_TOKEN_KEY_FILE.
 */
export function testKeyFile(): string {
  const path = join(keyFolder(), 'token.key');
  if (!existsSync(path)) {
    mkdirSync(keyFolder(), { recursive: true, mode: 0o700 });
    writeFileSync(path, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600 });
  }
  return path;
}

/** Removes the test key folder; the next testKeyFile call makes a new key. */
export function removeTestKeyFile(): void {
  rmSync(keyFolder(), { recursive: true, force: true });
}

export interface TestTokenOptions {
  /** `sub`: the agent id or service name. */
  subject: string;
  role: TestRole;
  /** Seconds until `exp`; negative makes an expired token. Default 600. */
  ttlSeconds?: number;
  /** HS256 secret to sign with; default the test key, another one makes a bad signature. */
  secret?: Buffer;
  /** JOSE `typ`; default "JWT". */
  type?: string;
  /** Claims added to or replacing the standard ones. */
  claims?: Record<string, unknown>;
}

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/**
 * Signs an HS256 JWT synchronously with the test key, the way the kit's
 * createToken does, so harnesses can build metadata without awaiting. It
 * also makes the broken tokens the auth tests need (expired, wrongly
 * signed, unknown role).
 */
export function mintTestToken(options: TestTokenOptions): string {
  const nowS = Math.floor(Date.now() / 1000);
  const header = base64url({ alg: 'HS256', typ: options.type ?? 'JWT' });
  const payload = base64url({
    iss: 'cordon',
    sub: options.subject,
    cordon_role: options.role,
    iat: nowS,
    exp: nowS + (options.ttlSeconds ?? 600),
    ...options.claims,
  });
  const secret = options.secret ?? Buffer.from(readFileSync(testKeyFile(), 'utf8').trim(), 'utf8');
  const signature = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

/** Metadata with a bearer token for `subject` in `role`. */
export function bearerMetadata(subject: string, role: TestRole = 'agent'): Metadata {
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${mintTestToken({ subject, role })}`);
  return metadata;
}

/** Metadata with an agent's token. */
export function agentMetadata(agentId: string): Metadata {
  return bearerMetadata(agentId, 'agent');
}

/** A client interceptor that sends a test token on every call, for clients made with `new XClient(...)`. */
export function tokenInterceptor(subject: string, role: TestRole = 'agent'): Interceptor {
  const token = mintTestToken({ subject, role, ttlSeconds: 3600 });
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start: (metadata, listener, next) => {
        if (metadata.get('authorization').length === 0) {
          metadata.set('authorization', `Bearer ${token}`);
        }
        next(metadata, listener);
      },
    });
}

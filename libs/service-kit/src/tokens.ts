import { errors, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import { parseDurationMs } from './config.js';
import { readTokenKey, type TokenKey } from './token-key.js';

/** Roles a token can carry. Only holders of the signing key (admins) can mint any token. */
export const CALLER_ROLES = ['agent', 'auditor', 'admin', 'service'] as const;
export type CallerRole = (typeof CALLER_ROLES)[number];

/** `iss` of every Cordon token. */
export const TOKEN_ISSUER = 'cordon';
/** Claim that contains the caller's role. */
export const ROLE_CLAIM = 'cordon_role';
/** Claim of an acting-for token that names the service that signed it. */
export const ACTING_SERVICE_CLAIM = 'cordon_service';
/** Claim of an acting-for token that names the run the call belongs to, when there is one. */
export const RUN_ID_CLAIM = 'cordon_run_id';
/** JOSE `typ` of bearer tokens; acting-for tokens carry their own, so neither passes as the other. */
export const BEARER_TOKEN_TYPE = 'JWT';
export const ACTING_FOR_TOKEN_TYPE = 'cordon-acting-for+jwt';

/**
 * Agent ids and service names a token may carry in `sub`. The id becomes
 * part of Redis key names, ACL user names and glob patterns in the memory
 * service, so it may not hold `{`, `}`, `:`, `*`, `?`, `[`, `\` or spaces.
 */
export const SUBJECT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const SUBJECT_RULE =
  '1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit';

/** Maximum lifetime createToken accepts. */
export const MAX_TOKEN_TTL_MS = 366 * 24 * 3_600_000;
/** Clock difference between hosts tolerated when checking `exp`. */
const CLOCK_TOLERANCE_S = 5;

/** Reason a token was rejected; each value maps to one message and one gRPC status. */
export type TokenFailure = 'malformed' | 'bad-signature' | 'expired' | 'invalid-claims';

/** A token that did not verify, with what was wrong and whatever it claimed. */
export class TokenRejected extends Error {
  constructor(
    readonly failure: TokenFailure,
    message: string,
    /** `sub` the token claimed, read without trusting it; empty when unreadable. */
    readonly claimedSubject: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TokenRejected';
  }
}

/** Claims of a verified bearer token. */
export interface TokenClaims {
  readonly subject: string;
  readonly role: CallerRole;
  readonly expiresAtMs: number;
}

/** Claims of a verified acting-for token. */
export interface ActingForClaims {
  readonly agentId: string;
  readonly service: string;
  readonly runId: string;
}

function isRole(value: unknown): value is CallerRole {
  return CALLER_ROLES.some((role) => role === value);
}

function checkSubject(subject: string, what: string): void {
  if (!SUBJECT_PATTERN.test(subject)) {
    throw new RangeError(`${what} ${JSON.stringify(subject)} is not valid; use ${SUBJECT_RULE}`);
  }
}

/** Signs a bearer token for a subject and role with the mesh key. */
export async function signBearerToken(
  key: TokenKey,
  subject: string,
  role: CallerRole,
  ttlMs: number,
): Promise<string> {
  checkSubject(subject, 'subject');
  const nowS = Math.floor(Date.now() / 1000);
  return new SignJWT({ [ROLE_CLAIM]: role })
    .setProtectedHeader({ alg: key.algorithm, typ: BEARER_TOKEN_TYPE })
    .setIssuer(TOKEN_ISSUER)
    .setSubject(subject)
    .setIssuedAt(nowS)
    .setExpirationTime(nowS + Math.max(1, Math.round(ttlMs / 1000)))
    .sign(key.signingKey);
}

/** Signs the short-lived proof that `service` calls on behalf of `agentId`. */
export async function signActingForToken(
  key: TokenKey,
  claims: ActingForClaims,
  ttlMs: number,
): Promise<string> {
  checkSubject(claims.agentId, 'agent id');
  const nowS = Math.floor(Date.now() / 1000);
  return new SignJWT({ [ACTING_SERVICE_CLAIM]: claims.service, [RUN_ID_CLAIM]: claims.runId })
    .setProtectedHeader({ alg: key.algorithm, typ: ACTING_FOR_TOKEN_TYPE })
    .setIssuer(TOKEN_ISSUER)
    .setSubject(claims.agentId)
    .setIssuedAt(nowS)
    .setExpirationTime(nowS + Math.max(1, Math.round(ttlMs / 1000)))
    .sign(key.signingKey);
}

/** Reads `sub` without verifying anything, only to name the claimed caller in an audit record. */
function unverifiedSubject(token: string): string {
  const payload = token.split('.')[1];
  if (payload === undefined) return '';
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as unknown;
    const subject = (claims as { sub?: unknown } | null)?.sub;
    return typeof subject === 'string' && SUBJECT_PATTERN.test(subject) ? subject : '';
  } catch {
    return '';
  }
}

/** Turns jose's errors into a failure kind and a message that never repeats the token. */
function rejection(error: unknown, token: string, what: string): TokenRejected {
  const claimed = unverifiedSubject(token);
  if (error instanceof errors.JWTExpired) {
    return new TokenRejected('expired', `the ${what} has expired; get a new one`, claimed);
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return new TokenRejected(
      'bad-signature',
      `the ${what}'s signature does not verify with this mesh's key`,
      claimed,
    );
  }
  if (error instanceof errors.JOSEAlgNotAllowed) {
    return new TokenRejected(
      'bad-signature',
      `the ${what} is signed with an algorithm this mesh does not use`,
      claimed,
    );
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    return new TokenRejected(
      'invalid-claims',
      `the ${what}'s ${error.claim} claim is not valid (${error.reason})`,
      claimed,
    );
  }
  return new TokenRejected('malformed', `the ${what} is not a well-formed JWT`, claimed, {
    cause: error,
  });
}

async function verify(
  key: TokenKey,
  token: string,
  typ: string,
  what: string,
): Promise<JWTPayload & { sub: string }> {
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, key.verificationKey, {
      algorithms: [key.algorithm],
      issuer: TOKEN_ISSUER,
      typ,
      requiredClaims: ['sub', 'exp', 'iat'],
      clockTolerance: CLOCK_TOLERANCE_S,
    }));
  } catch (error) {
    throw rejection(error, token, what);
  }
  const subject = payload.sub ?? '';
  if (!SUBJECT_PATTERN.test(subject)) {
    throw new TokenRejected('invalid-claims', `the ${what}'s sub claim is not ${SUBJECT_RULE}`, '');
  }
  return { ...payload, sub: subject };
}

/** Tokens kept verified per key; past this the oldest entries go first. */
const VERIFIED_CACHE_ENTRIES = 10_000;
const verifiedTokens = new WeakMap<TokenKey, Map<string, TokenClaims>>();

/**
 * Verifies a bearer token; throws TokenRejected saying what is wrong. A
 * client sends the same token on every call, so a token verified once is
 * remembered until its expiry: checking a signature costs more than the
 * rest of a small call.
 */
export async function verifyBearerToken(key: TokenKey, token: string): Promise<TokenClaims> {
  let cache = verifiedTokens.get(key);
  if (cache === undefined) {
    cache = new Map();
    verifiedTokens.set(key, cache);
  }
  const cached = cache.get(token);
  if (cached !== undefined) {
    if (cached.expiresAtMs > Date.now()) return cached;
    cache.delete(token);
  }
  const claims = await verifyBearerTokenSignature(key, token);
  if (cache.size >= VERIFIED_CACHE_ENTRIES) {
    const oldest = cache.keys().next();
    if (oldest.done !== true) cache.delete(oldest.value);
  }
  cache.set(token, claims);
  return claims;
}

async function verifyBearerTokenSignature(key: TokenKey, token: string): Promise<TokenClaims> {
  const payload = await verify(key, token, BEARER_TOKEN_TYPE, 'token');
  const role = payload[ROLE_CLAIM];
  if (!isRole(role)) {
    throw new TokenRejected(
      'invalid-claims',
      `the token's ${ROLE_CLAIM} claim is not one of ${CALLER_ROLES.join(', ')}`,
      payload.sub,
    );
  }
  return { subject: payload.sub, role, expiresAtMs: (payload.exp ?? 0) * 1000 };
}

/** Verifies an acting-for token; throws TokenRejected saying what is wrong. */
export async function verifyActingForToken(
  key: TokenKey,
  token: string,
): Promise<ActingForClaims & { readonly expiresAtMs: number }> {
  const payload = await verify(key, token, ACTING_FOR_TOKEN_TYPE, 'acting-for token');
  const service = payload[ACTING_SERVICE_CLAIM];
  const runId = payload[RUN_ID_CLAIM];
  if (typeof service !== 'string' || (runId !== undefined && typeof runId !== 'string')) {
    throw new TokenRejected(
      'invalid-claims',
      `the acting-for token's ${ACTING_SERVICE_CLAIM} or ${RUN_ID_CLAIM} claim is not a string`,
      payload.sub,
    );
  }
  return {
    agentId: payload.sub,
    service,
    runId: runId ?? '',
    expiresAtMs: (payload.exp ?? 0) * 1000,
  };
}

export interface CreateTokenOptions {
  /** `sub` of the token: the agent id (or service name for role service). */
  agentId: string;
  role: CallerRole;
  /** Lifetime as milliseconds or a duration such as "15m" or "24h"; at most 366 days. */
  ttl: number | string;
  /** The mesh's token key file (CORDON_TOKEN_KEY_FILE); it must be mode 0600 or stricter. */
  keyFile: string;
}

/**
 * Mints a token with the mesh's signing key. Whoever can read the key file
 * can mint any role, so only admins should hold it; services read it to
 * verify tokens and to mint their own service tokens.
 */
export async function createToken(options: CreateTokenOptions): Promise<string> {
  const ttlMs = typeof options.ttl === 'number' ? options.ttl : parseDurationMs(options.ttl);
  if (ttlMs === undefined || !Number.isSafeInteger(ttlMs) || ttlMs < 1000) {
    throw new RangeError(
      `ttl ${JSON.stringify(options.ttl)} is not valid; give a duration of at least 1s, such as 15m or 24h`,
    );
  }
  if (ttlMs > MAX_TOKEN_TTL_MS) {
    throw new RangeError(`ttl ${JSON.stringify(options.ttl)} is above the maximum of 366 days`);
  }
  if (!isRole(options.role)) {
    throw new RangeError(
      `role ${JSON.stringify(options.role)} is not one of ${CALLER_ROLES.join(', ')}`,
    );
  }
  return signBearerToken(readTokenKey(options.keyFile), options.agentId, options.role, ttlMs);
}

import {
  Metadata,
  ServerInterceptingCall,
  ServerListenerBuilder,
  status,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ACTING_FOR_METADATA_KEY, AUTHORIZATION_METADATA_KEY } from './mesh-credentials.js';
import type { TokenKey } from './token-key.js';
import {
  TokenRejected,
  verifyActingForToken,
  verifyBearerToken,
  type CallerRole,
  type TokenFailure,
} from './tokens.js';

/** The caller of an RPC, as its verified token (and acting-for token) prove it. */
export interface VerifiedCaller {
  /** `sub` of the bearer token: an agent id, or a service name for role service. */
  readonly subject: string;
  readonly role: CallerRole;
  /**
   * The agent the call is for: the subject itself for agents, auditors and
   * admins; for a service, the agent its verified acting-for token names,
   * or empty when it acts for nobody.
   */
  readonly agentId: string;
  /** Run named by the acting-for token; empty otherwise. */
  readonly runId: string;
}

/** Reason a call was rejected before its handler ran. */
export type DenialReason =
  'missing-token' | TokenFailure | 'wrong-role' | 'acting-for-not-allowed' | 'bad-acting-for';

/** A rejected call, as recorded in the audit log; it never holds a token. */
export interface AuthDenial {
  readonly code: 'UNAUTHENTICATED' | 'PERMISSION_DENIED';
  readonly reason: DenialReason;
  /** The message the caller received. */
  readonly message: string;
  /** Full method name, e.g. "cordon.v1.MemoryService/Put". */
  readonly method: string;
  /** The caller's address as grpc-js reports it, e.g. "127.0.0.1:53412". */
  readonly peer: string;
  /** `sub` the token claimed; empty when there was no readable token. Unverified unless the reason is a role one. */
  readonly claimedSubject: string;
  /** Role of a verified token; empty when the token did not verify. */
  readonly role: string;
}

/** Roles that may call one method, and the recorder of its denials. */
export interface MethodPolicy {
  readonly roles: readonly CallerRole[];
  /** Records a denial; must not throw or block, and is called after the status is sent. */
  readonly onDenied?: (denial: AuthDenial) => void;
}

/** Longest authorization value read; longer is rejected as malformed without parsing. */
const MAX_TOKEN_CHARS = 8 * 1024;

/** A verified caller, and when the first of its call's tokens expires, in ms since the epoch. */
interface Verification {
  readonly caller: VerifiedCaller;
  readonly expiresAtMs: number;
}

const verifications = new WeakMap<Metadata, Verification>();

/**
 * Returns the caller the auth interceptor verified for a call's metadata.
 * grpc-js hands the handler the same Metadata object the interceptor passed on.
 */
export function verifiedCallerOf(metadata: Metadata): VerifiedCaller | undefined {
  return verifications.get(metadata)?.caller;
}

/**
 * Returns when the first of the verified tokens of a call expires, in ms
 * since the epoch: the bearer token, or the acting-for token when it
 * expires sooner. Returns undefined when the caller was not verified.
 */
export function tokenExpiryOf(metadata: Metadata): number | undefined {
  return verifications.get(metadata)?.expiresAtMs;
}

class Denied extends Error {
  constructor(
    readonly code: AuthDenial['code'],
    readonly reason: DenialReason,
    message: string,
    readonly claimedSubject = '',
    readonly role = '',
  ) {
    super(message);
  }
}

function unauthenticated(reason: DenialReason, message: string, claimedSubject = ''): Denied {
  return new Denied('UNAUTHENTICATED', reason, message, claimedSubject);
}

function singleValue(metadata: Metadata, key: string): string | undefined {
  const values = metadata.get(key);
  if (values.length === 0) return undefined;
  const [value] = values;
  if (values.length > 1 || typeof value !== 'string') {
    throw unauthenticated('malformed', `${key} metadata must be sent once, as text`);
  }
  return value;
}

function bearerToken(metadata: Metadata): string {
  const header = singleValue(metadata, AUTHORIZATION_METADATA_KEY);
  if (header === undefined || header === '') {
    throw unauthenticated(
      'missing-token',
      `no token: send ${AUTHORIZATION_METADATA_KEY}: Bearer <token> metadata (an admin mints one with cordon token create)`,
    );
  }
  const match = /^Bearer ([^\s]+)$/i.exec(header);
  if (match?.[1] === undefined || header.length > MAX_TOKEN_CHARS) {
    throw unauthenticated(
      'malformed',
      `${AUTHORIZATION_METADATA_KEY} metadata is not "Bearer <token>" with a token of at most ${MAX_TOKEN_CHARS} characters`,
    );
  }
  return match[1];
}

async function verifyToken<T>(verification: Promise<T>, reason?: DenialReason): Promise<T> {
  try {
    return await verification;
  } catch (error) {
    if (error instanceof TokenRejected) {
      throw unauthenticated(reason ?? error.failure, error.message, error.claimedSubject);
    }
    throw error;
  }
}

/** Verifies the call's tokens and decides whether its role may call the method. */
async function authenticate(
  metadata: Metadata,
  method: string,
  policy: MethodPolicy,
  key: TokenKey,
): Promise<Verification> {
  const claims = await verifyToken(verifyBearerToken(key, bearerToken(metadata)));
  const { subject, role } = claims;

  const actingFor = singleValue(metadata, ACTING_FOR_METADATA_KEY);
  let agentId = role === 'service' ? '' : subject;
  let runId = '';
  let expiresAtMs = claims.expiresAtMs;
  if (actingFor !== undefined) {
    if (role !== 'service') {
      throw new Denied(
        'PERMISSION_DENIED',
        'acting-for-not-allowed',
        `only services may send ${ACTING_FOR_METADATA_KEY} metadata; a caller with role ${role} acts only for itself`,
        subject,
        role,
      );
    }
    const proof = await verifyToken(verifyActingForToken(key, actingFor), 'bad-acting-for');
    if (proof.service !== subject) {
      throw unauthenticated(
        'bad-acting-for',
        `the acting-for token was signed for service ${proof.service}, not for the calling service ${subject}`,
        subject,
      );
    }
    agentId = proof.agentId;
    runId = proof.runId;
    expiresAtMs = Math.min(expiresAtMs, proof.expiresAtMs);
  }

  if (!policy.roles.includes(role)) {
    throw new Denied(
      'PERMISSION_DENIED',
      'wrong-role',
      `role ${role} may not call ${method}; it is open to ${policy.roles.join(', ')}`,
      subject,
      role,
    );
  }
  return { caller: { subject, role, agentId, runId }, expiresAtMs };
}

/**
 * Checks the bearer token of every call to a method in `policies` before
 * the request message is read: UNAUTHENTICATED when it is missing,
 * malformed, badly signed or expired, PERMISSION_DENIED when its role may
 * not call the method. Methods without a policy (health, reflection) stay
 * open. The verified caller reaches the handler through verifiedCallerOf,
 * and the token metadata is removed before the handler sees the call.
 */
export function authInterceptor(
  policies: ReadonlyMap<string, MethodPolicy>,
  key: TokenKey,
  logger: Logger,
): ServerInterceptor {
  return (methodDescriptor, call) => {
    const policy = policies.get(methodDescriptor.path);
    if (policy === undefined) {
      return new ServerInterceptingCall(call);
    }
    const method = methodDescriptor.path.slice(1);

    const listener = new ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        authenticate(metadata, method, policy, key).then(
          (verification) => {
            metadata.remove(AUTHORIZATION_METADATA_KEY);
            metadata.remove(ACTING_FOR_METADATA_KEY);
            verifications.set(metadata, verification);
            next(metadata);
          },
          (error: unknown) => {
            const denied =
              error instanceof Denied
                ? error
                : unauthenticated('malformed', 'the token could not be checked');
            if (!(error instanceof Denied)) {
              logger.error({ err: error, rpc: method }, 'token check failed unexpectedly');
            }
            call.sendStatus({
              code: status[denied.code],
              details: denied.message,
              metadata: new Metadata(),
            });
            const denial: AuthDenial = {
              code: denied.code,
              reason: denied.reason,
              message: denied.message,
              method,
              peer: call.getPeer(),
              claimedSubject: denied.claimedSubject,
              role: denied.role,
            };
            logger.info(
              {
                rpc: method,
                code: denial.code,
                reason: denial.reason,
                peer: denial.peer,
                agent_id: denial.claimedSubject,
              },
              'rpc rejected',
            );
            try {
              policy.onDenied?.(denial);
            } catch (recordError) {
              logger.error({ err: recordError, rpc: method }, 'could not record a denied call');
            }
          },
        );
      })
      .build();
    return new ServerInterceptingCall(call, { start: (next) => next(listener) });
  };
}

/** The audit action of a rejected call. */
export const AUTH_DENIED_ACTION = 'auth.denied';

/** Attributes of a denial's audit record: what was called, from where, and why it was rejected. */
export function denialAttributes(denial: AuthDenial): Record<string, string> {
  return {
    rpc: denial.method,
    code: denial.code,
    reason: denial.reason,
    message: denial.message,
    peer: denial.peer,
    ...(denial.role === '' ? {} : { role: denial.role }),
  };
}

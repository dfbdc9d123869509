import { status } from '@grpc/grpc-js';
import type { memoryV1 } from '@cordon/proto';
import { CordonError } from '@cordon/service-kit';
import type { MemoryLimits } from './memory-options.js';
import type { DeleteCommand, ListCommand, PutCommand } from './memory-store.js';

/** Characters namespaces, keys and prefixes may hold; all are ASCII below `\x7f`. */
const FORBIDDEN_NAME_CHARACTER = /[^A-Za-z0-9._:/-]/u;
const NAME_CHARACTERS_TEXT = 'A-Z a-z 0-9 . _ : / -';
export const MAX_NAMESPACE_LENGTH = 64;
export const MAX_KEY_LENGTH = 512;
export const MAX_CONTENT_TYPE_LENGTH = 255;
/** Printable ASCII, not starting with a space. */
const CONTENT_TYPE_PATTERN = /^[\x21-\x7e][\x20-\x7e]*$/;
const MAX_PAGE_TOKEN_LENGTH = 2048;

function invalid(field: string, description: string): CordonError {
  return CordonError.invalidArgument(field, description);
}

/**
 * Checks a namespace, key or prefix against the charset and a length
 * limit. The message names the field, the rule broken and the limit.
 */
function checkName(field: string, value: string, maxLength: number, required: boolean): void {
  if (value === '') {
    if (required) {
      throw invalid(
        field,
        `is missing; use 1 to ${maxLength} characters of ${NAME_CHARACTERS_TEXT}`,
      );
    }
    return;
  }
  if (value.length > maxLength) {
    throw invalid(field, `is ${value.length} characters long, above the maximum of ${maxLength}`);
  }
  const forbidden = FORBIDDEN_NAME_CHARACTER.exec(value);
  if (forbidden !== null) {
    throw invalid(
      field,
      `contains ${JSON.stringify(forbidden[0])} at position ${forbidden.index}; use only ${NAME_CHARACTERS_TEXT}`,
    );
  }
}

export function checkNamespace(namespace: string): void {
  checkName('namespace', namespace, MAX_NAMESPACE_LENGTH, true);
}

export function checkKey(key: string): void {
  checkName('key', key, MAX_KEY_LENGTH, true);
}

function checkIfVersion(field: string, ifVersion: number | undefined): void {
  if (ifVersion !== undefined && !Number.isSafeInteger(ifVersion)) {
    throw invalid(field, `${ifVersion} is above the largest version ${Number.MAX_SAFE_INTEGER}`);
  }
}

function ttlMsOf(ttlSeconds: number | undefined, limits: MemoryLimits): number {
  const seconds =
    ttlSeconds === undefined || ttlSeconds === 0 ? limits.defaultTtlSeconds : ttlSeconds;
  if (seconds > limits.maxTtlSeconds) {
    throw invalid(
      'ttl_seconds',
      `${seconds} is above this server's maximum of ${limits.maxTtlSeconds}; lower it or raise CORDON_MEMORY_MAX_TTL_SECONDS`,
    );
  }
  return seconds * 1000;
}

export function parsePut(request: memoryV1.PutRequest, limits: MemoryLimits): PutCommand {
  checkNamespace(request.namespace);
  checkKey(request.key);
  if (request.value.length > limits.maxValueBytes) {
    throw invalid(
      'value',
      `is ${request.value.length} bytes, above this server's maximum of ${limits.maxValueBytes}; store less or raise CORDON_MEMORY_MAX_VALUE_BYTES`,
    );
  }
  if (request.contentType.length > MAX_CONTENT_TYPE_LENGTH) {
    throw invalid(
      'content_type',
      `is ${request.contentType.length} characters long, above the maximum of ${MAX_CONTENT_TYPE_LENGTH}`,
    );
  }
  if (request.contentType !== '' && !CONTENT_TYPE_PATTERN.test(request.contentType)) {
    throw invalid(
      'content_type',
      'contains a character outside printable ASCII or starts with a space; send a media type such as application/json',
    );
  }
  checkIfVersion('if_version', request.ifVersion);

  return {
    namespace: request.namespace,
    key: request.key,
    value: request.value,
    contentType: request.contentType,
    ttlMs: ttlMsOf(request.ttlSeconds, limits),
    ifVersion: request.ifVersion,
  };
}

export function parseGet(request: memoryV1.GetRequest): { namespace: string; key: string } {
  checkNamespace(request.namespace);
  checkKey(request.key);
  return { namespace: request.namespace, key: request.key };
}

export function parseDelete(request: memoryV1.DeleteRequest): DeleteCommand {
  checkNamespace(request.namespace);
  checkKey(request.key);
  checkIfVersion('if_version', request.ifVersion);
  return { namespace: request.namespace, key: request.key, ifVersion: request.ifVersion };
}

interface PageTokenContent {
  readonly namespace: string;
  readonly prefix: string;
  readonly afterKey: string;
}

/** Encodes where the next List page starts, bound to its namespace and prefix. */
export function encodePageToken(content: PageTokenContent): string {
  const { namespace, prefix, afterKey } = content;
  return Buffer.from(JSON.stringify({ n: namespace, p: prefix, a: afterKey })).toString(
    'base64url',
  );
}

function decodePageToken(token: string, namespace: string, prefix: string): string {
  const rejection = invalid(
    'page_token',
    'is not a token this server issued for this namespace and prefix; repeat the List without page_token to start over',
  );
  if (token.length > MAX_PAGE_TOKEN_LENGTH) {
    throw rejection;
  }

  let content: unknown;
  try {
    content = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw rejection;
  }
  const { n, p, a } = (content ?? {}) as Record<string, unknown>;
  if (n !== namespace || p !== prefix || typeof a !== 'string') {
    throw rejection;
  }
  try {
    checkKey(a);
  } catch {
    throw rejection;
  }
  return a;
}

export function parseList(request: memoryV1.ListRequest, limits: MemoryLimits): ListCommand {
  checkNamespace(request.namespace);
  checkName('prefix', request.prefix, MAX_KEY_LENGTH, false);
  if (request.pageSize > limits.maxPageSize) {
    throw invalid(
      'page_size',
      `${request.pageSize} is above this server's maximum of ${limits.maxPageSize}; ask for fewer keys per page`,
    );
  }

  return {
    namespace: request.namespace,
    prefix: request.prefix,
    pageSize: request.pageSize === 0 ? limits.defaultPageSize : request.pageSize,
    afterKey:
      request.pageToken === ''
        ? undefined
        : decodePageToken(request.pageToken, request.namespace, request.prefix),
  };
}

/** Builds the ABORTED error of a write or delete whose if_version did not match. */
export function versionMismatch(
  ifVersion: number,
  currentVersion: number,
  namespace: string,
  key: string,
): CordonError {
  const where = `key ${JSON.stringify(key)} in namespace ${JSON.stringify(namespace)}`;
  const message =
    currentVersion === 0
      ? `if_version ${ifVersion} does not match: ${where} does not exist (current version 0); read it again and retry`
      : ifVersion === 0
        ? `if_version 0 requires ${where} to be absent, but it exists at version ${currentVersion}; read it again and retry`
        : `if_version ${ifVersion} does not match the current version ${currentVersion} of ${where}; read it again and retry`;
  return new CordonError(status.ABORTED, message, { details: { currentVersion } });
}

/** Validation of what an Append carries besides its event: the files and the output excerpts. */
import type { auditV1, commonV1 } from '@cordon/proto';
import { CordonError } from '@cordon/service-kit';
import type { AuditOptions } from './audit-options.js';
import { sha256Hex } from './canonical.js';

/** A file to store, with the SHA-256 of its content. */
export interface StoredFile {
  readonly path: string;
  readonly sha256: string;
  readonly content: Buffer;
}

/** Attribute keys under this prefix are written by the audit service itself. */
export const RESERVED_ATTRIBUTE_PREFIX = 'audit.';

const MAX_PATH_BYTES = 1024;
// Unicode category Cc: the C0 controls (NUL among them), DEL and the C1 controls.
const CONTROL_CHARACTER = /\p{Cc}/u;

function invalid(field: string, description: string): CordonError {
  return CordonError.invalidArgument(field, description);
}

function checkFilePath(path: string, field: string): void {
  if (path === '') {
    throw invalid(field, 'is empty; give the path relative to the work folder, such as main.py');
  }
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) {
    throw invalid(field, `is longer than ${MAX_PATH_BYTES} bytes`);
  }
  if (CONTROL_CHARACTER.test(path) || path.includes('\\')) {
    throw invalid(field, 'contains a control character or a backslash; separate folders with "/"');
  }
  if (
    path.startsWith('/') ||
    path.split('/').some((segment) => ['', '.', '..'].includes(segment))
  ) {
    throw invalid(
      field,
      `"${path}" is not a plain relative path; remove leading, doubled or trailing "/" and "." or ".." segments`,
    );
  }
}

/** Validates the files of an Append against the configured limits and hashes each one. */
export function prepareFiles(files: readonly commonV1.File[], options: AuditOptions): StoredFile[] {
  if (files.length > options.maxFiles) {
    throw invalid(
      'files',
      `has ${files.length} files; this server stores at most ${options.maxFiles} (CORDON_AUDIT_MAX_FILES)`,
    );
  }
  const totalBytes = files.reduce((sum, file) => sum + file.content.length, 0);
  if (totalBytes > options.maxFilesBytes) {
    throw invalid(
      'files',
      `total ${totalBytes} bytes; this server stores at most ${options.maxFilesBytes} (CORDON_AUDIT_MAX_FILES_BYTES)`,
    );
  }

  const seen = new Set<string>();
  return files.map((file, index) => {
    checkFilePath(file.path, `files[${index}].path`);
    if (seen.has(file.path)) {
      throw invalid(`files[${index}].path`, `"${file.path}" appears twice; give each file once`);
    }
    seen.add(file.path);
    return { path: file.path, sha256: sha256Hex(file.content), content: file.content };
  });
}

export interface KeptExcerpt {
  readonly bytes: Buffer;
  readonly truncated: boolean;
}

/**
 * Rejects an excerpt above CORDON_AUDIT_MAX_EXCERPT_BYTES, and cuts one above
 * CORDON_AUDIT_OUTPUT_BYTES to that length, marking it truncated.
 */
export function keepExcerpt(
  excerpt: Buffer,
  senderTruncated: boolean,
  field: string,
  options: AuditOptions,
): KeptExcerpt {
  if (excerpt.length > options.maxExcerptBytes) {
    throw invalid(
      field,
      `is ${excerpt.length} bytes; this server accepts at most ${options.maxExcerptBytes} (CORDON_AUDIT_MAX_EXCERPT_BYTES); send only the first bytes of the output`,
    );
  }
  const cut = excerpt.length > options.outputBytes;
  return {
    bytes: cut ? excerpt.subarray(0, options.outputBytes) : excerpt,
    truncated: senderTruncated || cut,
  };
}

/** Writes the audit.<stream>_bytes, _sha256 and _truncated attributes that bind an excerpt to its record. */
export function describeExcerpt(
  attributes: Record<string, auditV1.AttributeValue>,
  stream: 'stdout' | 'stderr',
  kept: KeptExcerpt,
): void {
  attributes[`${RESERVED_ATTRIBUTE_PREFIX}${stream}_bytes`] = {
    value: { $case: 'intValue', value: kept.bytes.length },
  };
  attributes[`${RESERVED_ATTRIBUTE_PREFIX}${stream}_sha256`] = {
    value: { $case: 'stringValue', value: sha256Hex(kept.bytes) },
  };
  attributes[`${RESERVED_ATTRIBUTE_PREFIX}${stream}_truncated`] = {
    value: { $case: 'boolValue', value: kept.truncated },
  };
}

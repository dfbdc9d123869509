import { status } from '@grpc/grpc-js';
import type { scannerV1 } from '@cordon/proto';
import { CordonError, formatBytes } from '@cordon/service-kit';
import {
  ACCEPTED_LANGUAGE_NAMES,
  languageOfFile,
  languageOfName,
  type LanguageId,
} from './languages/language-ids.js';
import type { ScanLimits } from './scanner-options.js';
import type { SourceFile } from './scan-engine.js';

const MAX_PATH_BYTES = 1024;

/** A Scan request after validation: the files to scan, decoded, and those left out. */
export interface ParsedScan {
  /** The language the request named; undefined when it named none. */
  readonly language: LanguageId | undefined;
  readonly sources: readonly SourceFile[];
  /** Every file of the request, for the code hash of the audit record. */
  readonly files: readonly { path: string; content: Buffer }[];
  readonly runId: string;
}

function invalid(field: string, description: string): CordonError {
  return CordonError.invalidArgument(field, description);
}

function checkPath(path: string, field: string, seen: Set<string>): void {
  if (path === '') throw invalid(field, 'is empty; give the file a relative path such as main.py');
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) {
    throw invalid(field, `is longer than ${MAX_PATH_BYTES} bytes`);
  }
  if (path.startsWith('/') || path.split('/').some((part) => part === '..' || part === '')) {
    throw invalid(
      field,
      `"${path}" must be a relative path without "..", empty parts or a leading "/"`,
    );
  }
  if (/[\p{Cc}\\]/u.test(path)) {
    throw invalid(
      field,
      `"${JSON.stringify(path).slice(1, -1)}" holds a control character or backslash; use printable characters and "/"`,
    );
  }
  if (seen.has(path)) throw invalid(field, `"${path}" appears twice; send each file once`);
  seen.add(path);
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Decodes source text; binary content (a NUL byte, invalid UTF-8) is refused. */
function decodeSource(content: Buffer, path: string, field: string): string {
  const nul = content.indexOf(0);
  if (nul !== -1) {
    throw invalid(
      field,
      `${path} holds a NUL byte at offset ${nul}; the scanner reads UTF-8 source text, not binary files`,
    );
  }
  try {
    return utf8.decode(content);
  } catch {
    throw invalid(
      field,
      `${path} is not valid UTF-8; the scanner reads UTF-8 source text, not binary files`,
    );
  }
}

/** Validates a Scan request against the limits and decodes the files it will scan. */
export function parseScanRequest(request: scannerV1.ScanRequest, limits: ScanLimits): ParsedScan {
  const language = request.language === '' ? undefined : languageOfName(request.language);
  if (request.language !== '' && language === undefined) {
    throw invalid(
      'language',
      `"${request.language.slice(0, 64)}" is not supported; use one of ${ACCEPTED_LANGUAGE_NAMES.join(', ')}, or leave it empty to go by file extension`,
    );
  }
  if (request.files.length === 0) throw invalid('files', 'is empty; send at least one file');
  if (request.files.length > limits.maxFiles) {
    throw new CordonError(
      status.INVALID_ARGUMENT,
      `files: ${request.files.length} files is above this scanner's maximum of ${limits.maxFiles} per scan (CORDON_SCANNER_MAX_FILES); send fewer files per scan`,
      {
        details: {
          fieldViolations: [{ field: 'files', description: `at most ${limits.maxFiles} files` }],
        },
      },
    );
  }

  const seen = new Set<string>();
  const sources: SourceFile[] = [];
  let totalBytes = 0;
  request.files.forEach((file, index) => {
    const field = `files[${index}]`;
    checkPath(file.path, `${field}.path`, seen);
    if (file.content.length > limits.maxFileBytes) {
      throw invalid(
        `${field}.content`,
        `${file.path} is ${file.content.length} bytes, above this scanner's maximum of ${formatBytes(limits.maxFileBytes)} (${limits.maxFileBytes} bytes) per file (CORDON_SCANNER_MAX_FILE_BYTES)`,
      );
    }
    totalBytes += file.content.length;
    if (totalBytes > limits.maxTotalBytes) {
      throw invalid(
        'files',
        `the files up to ${file.path} add up to ${totalBytes} bytes, above this scanner's maximum of ${formatBytes(limits.maxTotalBytes)} (${limits.maxTotalBytes} bytes) per scan (CORDON_SCANNER_MAX_TOTAL_BYTES)`,
      );
    }
    const fileLanguage = languageOfFile(file.path, language);
    if (fileLanguage !== undefined) {
      sources.push({
        path: file.path,
        language: fileLanguage,
        text: decodeSource(file.content, file.path, `${field}.content`),
      });
    }
  });
  return { language, sources, files: request.files, runId: request.runId };
}

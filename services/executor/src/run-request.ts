import { posix } from 'node:path';
import { status } from '@grpc/grpc-js';
import type { executorV1 } from '@cordon/proto';
import { CordonError } from '@cordon/service-kit';
import {
  LIMIT_FIELDS,
  LIMIT_SPECS,
  type ExecutorOptions,
  type RunLimits,
} from './executor-options.js';
import type { RuntimeSpec } from './runtimes.js';

/** A request after validation: everything a sandbox needs, nothing it must check again. */
export interface RunPlan {
  readonly runtime: RuntimeSpec;
  readonly files: readonly { path: string; content: Buffer }[];
  readonly entryPath: string;
  readonly compileArgv: readonly string[] | null;
  readonly runArgv: readonly string[];
  readonly stdin: Buffer;
  /** KEY=value pairs the program gets, besides the image's own environment. */
  readonly env: readonly string[];
  readonly limits: RunLimits;
  readonly clientRequestId: string;
}

const MAX_PATH_BYTES = 1024;
const MAX_SEGMENT_BYTES = 255;
const MAX_ARGS = 256;
const MAX_ARG_BYTES = 16 * 1024;
const MAX_ENV_VARS = 64;
const MAX_ENV_VALUE_BYTES = 32 * 1024;
const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const MAX_CLIENT_REQUEST_ID_CHARACTERS = 128;
/** Longest request text an error message repeats whole; longer text is cut and its length given. */
const MAX_QUOTED_CHARACTERS = 64;

/** Quotes request text for an error message without repeating a huge value back. */
function quoted(text: string): string {
  return text.length <= MAX_QUOTED_CHARACTERS
    ? `"${text}"`
    : `"${text.slice(0, MAX_QUOTED_CHARACTERS)}…" (${text.length} characters)`;
}
/** True for C0 controls (NUL among them), DEL and C1 controls. */
function hasControlCharacter(text: string): boolean {
  for (const character of text) {
    const code = character.codePointAt(0) ?? 0;
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return true;
  }
  return false;
}

/** Variables the sandbox sets itself or that would change how the runtime loads code. */
const PROTECTED_ENV = new Set([
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'SHELL',
  'PWD',
  'HOSTNAME',
  'TMPDIR',
  'LANG',
  'PYTHONDONTWRITEBYTECODE',
  'PYTHONUNBUFFERED',
  'JAVA_TOOL_OPTIONS',
  'JDK_JAVA_OPTIONS',
  '_JAVA_OPTIONS',
]);
const PROTECTED_ENV_PREFIXES = ['LD_', 'CORDON_'];

/**
 * Environment every program starts with. The image adds its own (LANG, the
 * Python flags), Docker adds HOSTNAME and the launcher shell exports PWD.
 */
export const BASE_ENV: readonly string[] = [
  'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  'HOME=/work',
  'TMPDIR=/tmp',
];

function invalid(field: string, description: string): CordonError {
  return CordonError.invalidArgument(field, description);
}

function checkPath(path: string, field: string): void {
  if (path === '') {
    throw invalid(field, 'is empty; give a relative path such as main.py');
  }
  if (hasControlCharacter(path)) {
    throw invalid(field, 'contains a NUL or control character; use printable characters only');
  }
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) {
    throw invalid(field, `is longer than ${MAX_PATH_BYTES} bytes`);
  }
  if (path.startsWith('/')) {
    throw invalid(field, `"${path}" is absolute; give a path relative to the work folder`);
  }
  if (path.includes('\\')) {
    throw invalid(field, `"${path}" contains a backslash; separate folders with "/"`);
  }
  for (const segment of path.split('/')) {
    if (segment === '') {
      throw invalid(field, `"${path}" has an empty segment; remove doubled or trailing "/"`);
    }
    if (segment === '.' || segment === '..') {
      throw invalid(
        field,
        `"${path}" contains a "${segment}" segment; paths must stay inside the work folder`,
      );
    }
    if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) {
      throw invalid(field, `has a name longer than ${MAX_SEGMENT_BYTES} bytes`);
    }
  }
}

function checkFiles(request: executorV1.ExecuteRequest, options: ExecutorOptions): void {
  if (request.files.length === 0) {
    throw invalid('files', 'is empty; submit at least the file to run');
  }
  if (request.files.length > options.maxFiles) {
    throw invalid(
      'files',
      `has ${request.files.length} files; this server accepts at most ${options.maxFiles}`,
    );
  }

  const seen = new Set<string>();
  let totalBytes = 0;
  request.files.forEach((file, index) => {
    checkPath(file.path, `files[${index}].path`);
    if (seen.has(file.path)) {
      throw invalid(`files[${index}].path`, `"${file.path}" is given twice`);
    }
    seen.add(file.path);
    totalBytes += file.content.length;
  });
  for (const path of seen) {
    for (let parent = posix.dirname(path); parent !== '.'; parent = posix.dirname(parent)) {
      if (seen.has(parent)) {
        throw invalid('files', `"${parent}" is both a file and the folder of "${path}"`);
      }
    }
  }
  if (totalBytes > options.maxSourceBytes) {
    throw invalid(
      'files',
      `total ${totalBytes} bytes is above this server's maximum ${options.maxSourceBytes}; send less code or raise CORDON_MAX_SOURCE_BYTES`,
    );
  }
}

function resolveLimits(request: executorV1.ExecuteRequest, options: ExecutorOptions): RunLimits {
  const limits = { ...options.defaults };
  for (const field of LIMIT_FIELDS) {
    const requested = request.limits?.[field];
    if (requested === undefined) {
      continue;
    }
    const spec = LIMIT_SPECS[field];
    const name = `limits.${spec.protoName}`;
    if (requested < spec.min) {
      throw invalid(name, `${requested} is below the minimum ${spec.min}`);
    }
    if (requested > options.maxima[field]) {
      throw invalid(
        name,
        `${requested} is above this server's maximum ${options.maxima[field]}; lower it or raise CORDON_MAX_${spec.envStem}`,
      );
    }
    limits[field] = requested;
  }
  return limits;
}

function checkEnv(env: Record<string, string>): string[] {
  const entries = Object.entries(env);
  if (entries.length > MAX_ENV_VARS) {
    throw invalid('env', `has ${entries.length} variables; at most ${MAX_ENV_VARS} are allowed`);
  }
  return entries.map(([name, value]) => {
    if (!ENV_NAME_PATTERN.test(name)) {
      throw invalid(
        `env.${name}`,
        'is not a valid variable name; use letters, digits and _ and do not start with a digit',
      );
    }
    if (
      PROTECTED_ENV.has(name) ||
      PROTECTED_ENV_PREFIXES.some((prefix) => name.startsWith(prefix))
    ) {
      throw invalid(`env.${name}`, 'is set by the sandbox and cannot be overridden');
    }
    if (value.includes('\u0000')) {
      throw invalid(`env.${name}`, 'contains a NUL character');
    }
    if (Buffer.byteLength(value) > MAX_ENV_VALUE_BYTES) {
      throw invalid(`env.${name}`, `is longer than ${MAX_ENV_VALUE_BYTES} bytes`);
    }
    return `${name}=${value}`;
  });
}

function checkArgs(args: readonly string[]): void {
  if (args.length > MAX_ARGS) {
    throw invalid('args', `has ${args.length} arguments; at most ${MAX_ARGS} are allowed`);
  }
  args.forEach((arg, index) => {
    if (arg.includes('\u0000')) {
      throw invalid(`args[${index}]`, 'contains a NUL character');
    }
    if (Buffer.byteLength(arg) > MAX_ARG_BYTES) {
      throw invalid(`args[${index}]`, `is longer than ${MAX_ARG_BYTES} bytes`);
    }
  });
}

const JAVA_PACKAGE = /^\s*package\s+([A-Za-z_][\w.]*)\s*;/m;
const JAVA_PUBLIC_CLASS =
  /^\s*public\s+(?:(?:final|abstract|sealed|non-sealed|strictfp)\s+)*(?:class|record|enum|interface)\s+([A-Za-z_]\w*)/m;

/**
 * Finds the class to run for the "public-class" rule: javac requires a public
 * top-level class X to be in X.java, and `java` runs it by its full name.
 */
function javaEntryClass(entryPath: string, content: Buffer): string {
  const source = content.toString('utf8');
  const className = JAVA_PUBLIC_CLASS.exec(source)?.[1];
  if (className === undefined) {
    throw invalid(
      'entrypoint',
      `${entryPath} declares no public class; declare "public class Main" with a main method`,
    );
  }
  if (posix.basename(entryPath) !== `${className}.java`) {
    throw invalid(
      'entrypoint',
      `${entryPath} declares public class ${className}, so javac requires the file to be named ${className}.java`,
    );
  }
  const packageName = JAVA_PACKAGE.exec(source)?.[1];
  return packageName === undefined ? className : `${packageName}.${className}`;
}

function expand(template: readonly string[], values: Record<string, readonly string[]>): string[] {
  return template.flatMap((part) => values[part] ?? [part]);
}

/** Validates a request against the runtime and this server's limits before anything is created. */
export function planRun(
  request: executorV1.ExecuteRequest,
  runtime: RuntimeSpec,
  options: ExecutorOptions,
): RunPlan {
  checkFiles(request, options);
  checkArgs(request.args);
  if (request.stdin.length > options.maxStdinBytes) {
    throw invalid(
      'stdin',
      `${request.stdin.length} bytes is above this server's maximum ${options.maxStdinBytes}; raise CORDON_MAX_STDIN_BYTES to allow more`,
    );
  }
  const limits = resolveLimits(request, options);
  const env = checkEnv(request.env);
  if (
    request.clientRequestId.length > MAX_CLIENT_REQUEST_ID_CHARACTERS ||
    hasControlCharacter(request.clientRequestId)
  ) {
    throw invalid(
      'client_request_id',
      `must be at most ${MAX_CLIENT_REQUEST_ID_CHARACTERS} characters without control characters; got ${quoted(request.clientRequestId)}`,
    );
  }

  const entryPath = request.entrypoint === '' ? request.files[0]?.path : request.entrypoint;
  const entryFile = request.files.find((file) => file.path === entryPath);
  if (entryPath === undefined || entryFile === undefined) {
    throw invalid(
      'entrypoint',
      `${quoted(request.entrypoint)} is not the path of a submitted file`,
    );
  }

  const sources = request.files
    .map((file) => file.path)
    .filter((path) => runtime.extensions.some((extension) => path.endsWith(extension)));
  const entryClass =
    runtime.entrypoint === 'public-class' ? javaEntryClass(entryPath, entryFile.content) : '';
  const placeholders = { '{entry}': [entryPath], '{entryClass}': [entryClass], '{files}': sources };

  return {
    runtime,
    files: request.files,
    entryPath,
    compileArgv: runtime.compile === null ? null : expand(runtime.compile, placeholders),
    runArgv: [...expand(runtime.run, placeholders), ...request.args],
    stdin: request.stdin,
    env: [...BASE_ENV, ...env],
    limits,
    clientRequestId: request.clientRequestId,
  };
}

/** Returns the error for a runtime id the catalog does not list. */
export function unknownRuntime(id: string, known: Iterable<string>): CordonError {
  return new CordonError(
    status.INVALID_ARGUMENT,
    `runtime: ${quoted(id)} is not a runtime of this executor; use one of ${[...known].join(', ')}`,
    { details: { fieldViolations: [{ field: 'runtime', description: 'unknown runtime' }] } },
  );
}

import { readFileSync } from 'node:fs';

/** Rule by which a runtime picks the program to run among the submitted files. */
export type EntrypointRule = 'file' | 'public-class';

/** One entry of sandbox-images/catalog.json, the single source of runtime facts. */
export interface RuntimeSpec {
  readonly id: string;
  readonly displayName: string;
  readonly language: string;
  /** Exact version, equal to the image's `io.cordon.language-version` label. */
  readonly languageVersion: string;
  /** Image repository, e.g. "cordon-sandbox-python"; the builder tags it `latest` and by recipe hash. */
  readonly image: string;
  readonly extensions: readonly string[];
  readonly entrypoint: EntrypointRule;
  /** Compile argv with placeholders `{files}` (every source file), or null. */
  readonly compile: readonly string[] | null;
  /** Run argv with placeholders `{entry}` (entry file) or `{entryClass}` (Java class). */
  readonly run: readonly string[];
  /**
   * Text the runtime prints on stderr when its own heap limit stops the
   * program, such as Java's OutOfMemoryError. It is null when only the
   * kernel's OOM killer enforces memory.
   */
  readonly outOfMemoryMessage: string | null;
  /** Command that prints the runtime's exact version. */
  readonly versionCommand: readonly string[];
  /** Command a warm sandbox starts its interpreter with ahead of the run, or null to start it with the run. */
  readonly prestart: PrestartSpec | null;
}

/**
 * An interpreter a warm sandbox starts before its run is known: the
 * launcher starts `command` with a named pipe as its last argument, and the
 * interpreter waits there for the run's program arguments and environment.
 */
export interface PrestartSpec {
  readonly command: readonly string[];
  /**
   * Environment variables the interpreter reads only while it starts; a
   * name ending in `*` stands for every name with that prefix. A run that
   * sets one of them starts cold, where they take effect.
   */
  readonly startupEnv: readonly string[];
}

/** Returns the variable of `env` ("NAME=value" entries) that a prestarted interpreter would ignore, if any. */
export function startupVariableIn(
  prestart: PrestartSpec,
  env: readonly string[],
): string | undefined {
  for (const entry of env) {
    const name = entry.slice(0, entry.indexOf('='));
    const matches = prestart.startupEnv.some((pattern) =>
      pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern,
    );
    if (matches) return name;
  }
  return undefined;
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

function parseRuntime(value: unknown, index: number): RuntimeSpec {
  const entry = value as Record<string, unknown>;
  const problem = (field: string): Error =>
    new Error(`runtime catalog entry ${index} has an invalid ${field}`);

  for (const field of ['id', 'displayName', 'language', 'languageVersion', 'image'] as const) {
    if (typeof entry[field] !== 'string' || entry[field] === '') {
      throw problem(field);
    }
  }
  if (!isStringArray(entry['extensions'])) throw problem('extensions');
  if (entry['entrypoint'] !== 'file' && entry['entrypoint'] !== 'public-class') {
    throw problem('entrypoint');
  }
  if (entry['compile'] !== null && !isStringArray(entry['compile'])) throw problem('compile');
  if (!isStringArray(entry['run']) || entry['run'].length === 0) throw problem('run');
  if (!isStringArray(entry['versionCommand'])) throw problem('versionCommand');
  const outOfMemoryMessage = entry['outOfMemoryMessage'] ?? null;
  if (outOfMemoryMessage !== null && typeof outOfMemoryMessage !== 'string') {
    throw problem('outOfMemoryMessage');
  }
  const prestart = parsePrestart(entry['prestart'] ?? null, entry['run']);
  if (prestart === undefined) throw problem('prestart');

  return {
    id: entry['id'] as string,
    displayName: entry['displayName'] as string,
    language: entry['language'] as string,
    languageVersion: entry['languageVersion'] as string,
    image: entry['image'] as string,
    extensions: entry['extensions'],
    entrypoint: entry['entrypoint'],
    compile: entry['compile'],
    run: entry['run'],
    outOfMemoryMessage,
    versionCommand: entry['versionCommand'],
    prestart,
  };
}

/** Returns the prestart spec, null when there is none, or undefined when it is malformed. */
function parsePrestart(value: unknown, run: readonly string[]): PrestartSpec | null | undefined {
  if (value === null) return null;
  const spec = value as Record<string, unknown>;
  const { command, startupEnv } = spec;
  // The interpreter replaces the run command's first word, so both must be the same program.
  if (!isStringArray(command) || command.length === 0 || command[0] !== run[0]) return undefined;
  if (!isStringArray(startupEnv)) return undefined;
  return { command, startupEnv };
}

/** Reads and checks the runtime catalog; a malformed catalog stops the executor at start-up. */
export function loadRuntimeCatalog(path: string): ReadonlyMap<string, RuntimeSpec> {
  const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (!Array.isArray(parsed)) {
    throw new Error(`runtime catalog ${path} is not a JSON array`);
  }
  const runtimes = new Map<string, RuntimeSpec>();
  parsed.forEach((value: unknown, index) => {
    const runtime = parseRuntime(value, index);
    if (runtimes.has(runtime.id)) {
      throw new Error(`runtime catalog ${path} lists ${runtime.id} twice`);
    }
    runtimes.set(runtime.id, runtime);
  });
  return runtimes;
}

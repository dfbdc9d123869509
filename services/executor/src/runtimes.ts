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
  };
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

import { readdirSync, readFileSync, statSync, type Stats } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { UsageError } from './usage-error.js';

export interface SubmittedFile {
  /** Path relative to the folder the files share, with "/" separators. */
  path: string;
  content: Buffer;
}

export interface Submission {
  files: SubmittedFile[];
  /** Request path of the first FILE argument, which the program starts from. */
  entrypoint: string;
  /** Request paths of files found in folders that the folder filter left out. */
  skipped: string[];
}

/** Filter for the files found in a folder; files named on the command line are always taken. */
export interface FolderFilter {
  readonly keep: (path: string) => boolean;
  /** Description of the files the command takes, for the error when a folder has none, e.g. "files ending in .py". */
  readonly takes: string;
}

// Caches and dependency folders that a run never needs and that can be large.
const SKIPPED_FOLDERS = new Set(['__pycache__', 'node_modules', '.git']);

function statOrThrow(path: string): Stats {
  try {
    return statSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(
      code === 'ENOENT'
        ? `${path}: no such file or folder`
        : `${path}: cannot read it (${code ?? 'unknown error'})`,
    );
  }
}

function walk(folder: string, found: string[]): void {
  const entries = readdirSync(folder, { withFileTypes: true }).sort((a, b) =>
    a.name < b.name ? -1 : 1,
  );
  for (const entry of entries) {
    if (entry.name.startsWith('.') || SKIPPED_FOLDERS.has(entry.name)) continue;
    const path = join(folder, entry.name);
    if (entry.isDirectory()) {
      walk(path, found);
    } else if (entry.isFile()) {
      found.push(path);
    }
  }
}

function commonFolder(paths: readonly string[]): string {
  let common = paths[0] ?? '.';
  for (const path of paths) {
    while (common !== dirname(common) && !`${path}${sep}`.startsWith(`${common}${sep}`)) {
      common = dirname(common);
    }
  }
  return common;
}

/**
 * Collects the files of a run. The first argument is the entry file; a
 * folder argument adds every file under it that `filter` keeps, except
 * hidden files and caches. Request paths are relative to the deepest folder that holds
 * every file, so `cordon run app/main.py app/lib` sends main.py and lib/....
 */
export function collectFiles(
  args: readonly string[],
  command: 'run' | 'scan' = 'run',
  filter?: FolderFilter,
): Submission {
  const [entryArgument] = args;
  if (entryArgument === undefined) {
    throw new UsageError(
      `${command}: missing FILE; usage: cordon ${command} FILE... [flags]${command === 'scan' ? ' (a FILE may be a folder)' : ''}`,
    );
  }
  // A run needs an entry file first; a scan takes files and folders in any order.
  if (command === 'run' && !statOrThrow(entryArgument).isFile()) {
    throw new UsageError(
      `run: the first argument ${entryArgument} must be the file to run, not a folder; put folders after it`,
    );
  }

  const absolute: string[] = [];
  const skippedAbsolute: string[] = [];
  for (const argument of args) {
    const path = resolve(argument);
    if (statOrThrow(argument).isDirectory()) {
      const found: string[] = [];
      walk(path, found);
      for (const file of found) {
        (filter === undefined || filter.keep(file) ? absolute : skippedAbsolute).push(file);
      }
    } else {
      absolute.push(path);
    }
  }
  const unique = [...new Set(absolute)];
  if (unique.length === 0) {
    throw new UsageError(`${command}: found no ${filter?.takes ?? 'files'} in ${args.join(', ')}`);
  }
  const base = commonFolder(unique.map((path) => dirname(path)));
  const toRequestPath = (path: string): string => relative(base, path).split(sep).join('/');

  const entryPath = command === 'run' ? resolve(entryArgument) : (unique[0] ?? '');
  const ordered = [entryPath, ...unique.filter((path) => path !== entryPath)];
  return {
    files: ordered.map((path) => ({ path: toRequestPath(path), content: readFileSync(path) })),
    entrypoint: toRequestPath(entryPath),
    skipped: [...new Set(skippedAbsolute)].map(toRequestPath),
  };
}

/** Languages the scanner parses. TypeScript shares the JavaScript rules. */
export const LANGUAGE_IDS = ['python', 'javascript', 'typescript', 'java', 'csharp'] as const;

export type LanguageId = (typeof LANGUAGE_IDS)[number];

/** File extensions that decide a file's language, whatever language the request names. */
const EXTENSION_LANGUAGES: Readonly<Record<string, LanguageId>> = {
  '.py': 'python',
  '.pyw': 'python',
  '.js': 'javascript',
  '.mjs': 'javascript',
  '.cjs': 'javascript',
  '.jsx': 'javascript',
  '.ts': 'typescript',
  '.mts': 'typescript',
  '.cts': 'typescript',
  '.tsx': 'typescript',
  '.java': 'java',
  '.cs': 'csharp',
};

/**
 * Names a ScanRequest may use for its language: the languages themselves and
 * the executor's runtime ids (see sandbox-images/catalog.json) and their
 * usual spellings.
 */
const LANGUAGE_ALIASES: Readonly<Record<string, LanguageId>> = {
  python: 'python',
  python3: 'python',
  javascript: 'javascript',
  node: 'javascript',
  nodejs: 'javascript',
  typescript: 'typescript',
  java: 'java',
  csharp: 'csharp',
  dotnet: 'csharp',
  'c#': 'csharp',
};

export const ACCEPTED_LANGUAGE_NAMES = Object.keys(LANGUAGE_ALIASES);

/** Returns the language a request's `language` names, or undefined when it names none. */
export function languageOfName(name: string): LanguageId | undefined {
  return LANGUAGE_ALIASES[name.toLowerCase()];
}

/** Returns the extension of the last path segment, lower-cased, or '' when it has none. */
export function extensionOf(path: string): string {
  const name = path.slice(path.lastIndexOf('/') + 1);
  const dot = name.lastIndexOf('.');
  return dot <= 0 ? '' : name.slice(dot).toLowerCase();
}

/**
 * Picks the language a file is scanned in: its extension when that is a
 * source extension, else the request's language for a file without any
 * extension (a script such as `main`). Files with other extensions are data
 * (input.txt, config.json) and are not scanned.
 */
export function languageOfFile(
  path: string,
  requested: LanguageId | undefined,
): LanguageId | undefined {
  const extension = extensionOf(path);
  if (extension === '') {
    return requested;
  }
  return EXTENSION_LANGUAGES[extension];
}

/** Returns the language whose rules apply to a language: TypeScript uses JavaScript's rules. */
export function ruleLanguageOf(language: LanguageId): LanguageId {
  return language === 'typescript' ? 'javascript' : language;
}

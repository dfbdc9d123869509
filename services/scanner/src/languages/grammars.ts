import { createRequire } from 'node:module';
import { Language, Parser } from 'web-tree-sitter';
import type { LanguageId } from './language-ids.js';

const require = createRequire(import.meta.url);

/**
 * The WebAssembly grammar of each language, from the grammar packages'
 * npm tarballs: nothing is fetched at run time. A `.tsx` file uses the TSX
 * grammar, since the TypeScript grammar reads `<T>x` as a type assertion.
 */
const GRAMMAR_FILES = {
  python: 'tree-sitter-python/tree-sitter-python.wasm',
  javascript: 'tree-sitter-javascript/tree-sitter-javascript.wasm',
  typescript: 'tree-sitter-typescript/tree-sitter-typescript.wasm',
  tsx: 'tree-sitter-typescript/tree-sitter-tsx.wasm',
  java: 'tree-sitter-java/tree-sitter-java.wasm',
  csharp: 'tree-sitter-c-sharp/tree-sitter-c_sharp.wasm',
} as const;

export type GrammarId = keyof typeof GRAMMAR_FILES;

/** Loaded grammars, one per GrammarId. */
export type Grammars = Readonly<Record<GrammarId, Language>>;

let loading: Promise<Grammars> | undefined;

/** Loads the tree-sitter runtime and every grammar once per process. */
export function loadGrammars(): Promise<Grammars> {
  loading ??= (async () => {
    await Parser.init();
    const entries = await Promise.all(
      Object.entries(GRAMMAR_FILES).map(
        async ([id, file]) => [id, await Language.load(require.resolve(file))] as const,
      ),
    );
    return Object.fromEntries(entries) as Record<GrammarId, Language>;
  })();
  return loading;
}

/** Returns the grammar of a file: TSX for `.tsx` files, else the language's own. */
export function grammarOf(language: LanguageId, path: string): GrammarId {
  return language === 'typescript' && path.toLowerCase().endsWith('.tsx') ? 'tsx' : language;
}

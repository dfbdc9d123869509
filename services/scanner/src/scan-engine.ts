import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Parser, Query, type Node, type QueryMatch, type Tree } from 'web-tree-sitter';
import { type commonV1 } from '@cordon/proto';
import { csharpAdapter } from './languages/csharp.js';
import { grammarOf, loadGrammars, type GrammarId, type Grammars } from './languages/grammars.js';
import { javaAdapter } from './languages/java.js';
import { javascriptAdapter } from './languages/javascript.js';
import type { LanguageId } from './languages/language-ids.js';
import { pythonAdapter } from './languages/python.js';
import type { FileSymbols, LanguageAdapter } from './languages/syntax.js';
import { findingAt, parseErrorFindings, SourceLines } from './findings.js';
import { whereHolds } from './predicates.js';
import { compileGrammarQuery, type GrammarQuery } from './rule-queries.js';
import { DEFAULT_RULES_DIR, loadRules } from './rule-loader.js';
import type { Rule } from './rule-types.js';

const require = createRequire(import.meta.url);

const ADAPTERS: Readonly<Record<LanguageId, LanguageAdapter>> = {
  python: pythonAdapter,
  javascript: javascriptAdapter,
  typescript: javascriptAdapter,
  java: javaAdapter,
  csharp: csharpAdapter,
};

/** A match whose conditions held, before it becomes a finding. */
interface KeptMatch {
  readonly rule: Rule;
  readonly node: Node;
}

/** A file to scan, already checked and decoded. */
export interface SourceFile {
  readonly path: string;
  readonly text: string;
  readonly language: LanguageId;
}

/** Thrown when a scan runs past its deadline; the scan's findings are incomplete. */
export class ScanDeadlineError extends Error {
  constructor(readonly path: string) {
    super(`scanning ${path} did not finish before the scan's deadline`);
    this.name = 'ScanDeadlineError';
  }
}

function versionIn(packageJson: string): string {
  return (JSON.parse(readFileSync(packageJson, 'utf8')) as { version: string }).version;
}

/**
 * Parses files with tree-sitter and runs every rule's queries over them.
 * Scans run one at a time on the calling thread; each file's tree is
 * freed before the next file is parsed.
 */
export class ScanEngine {
  readonly engineVersion: string;
  private readonly parsers = new Map<GrammarId, Parser>();
  private readonly queries = new Map<GrammarId, GrammarQuery>();
  private readonly symbolQueries = new Map<GrammarId, Query>();

  private constructor(
    readonly rules: readonly Rule[],
    readonly rulesVersion: string,
    private readonly grammars: Grammars,
  ) {
    this.engineVersion = `cordon-scanner ${versionIn(fileURLToPath(new URL('../package.json', import.meta.url)))} (web-tree-sitter ${versionIn(join(dirname(require.resolve('web-tree-sitter')), 'package.json'))})`;
  }

  /**
   * Loads the grammars and the rules of `rulesDir`. A grammar's rule
   * queries are compiled when the first file needs them, or all at once
   * by compileAll.
   */
  static async create(rulesDir: string = DEFAULT_RULES_DIR): Promise<ScanEngine> {
    const grammars = await loadGrammars();
    const { rules, version } = loadRules(rulesDir);
    return new ScanEngine(rules, version, grammars);
  }

  /** Compiles every grammar's rule queries, so a rule that does not compile stops start-up. */
  compileAll(): void {
    for (const grammarId of Object.keys(this.grammars) as GrammarId[]) this.queryFor(grammarId);
  }

  /**
   * Finds the nodes an adapter reads its symbols from with a query, which is
   * far cheaper than walking every node from JavaScript.
   */
  private symbolNodes(grammarId: GrammarId, language: LanguageId, root: Node): Node[] {
    let query = this.symbolQueries.get(grammarId);
    if (query === undefined) {
      const types = ADAPTERS[language].symbolNodeTypes.map((type) => `(${type})`).join(' ');
      query = new Query(this.grammars[grammarId], `[${types}] @node`);
      this.symbolQueries.set(grammarId, query);
    }
    return query.captures(root).map((capture) => capture.node);
  }

  private queryFor(grammarId: GrammarId): GrammarQuery {
    let compiled = this.queries.get(grammarId);
    if (compiled === undefined) {
      compiled = compileGrammarQuery(this.rules, grammarId, this.grammars[grammarId]);
      this.queries.set(grammarId, compiled);
    }
    return compiled;
  }

  /**
   * Returns the findings of one file: rule matches and, where the parser
   * had to recover from a syntax error, an INFO finding for each syntax error. Throws
   * ScanDeadlineError once `deadline` (a performance.now() time) passes.
   */
  scanFile(file: SourceFile, deadline: number): commonV1.Finding[] {
    const grammar = grammarOf(file.language, file.path);
    const tree = this.parse(grammar, file, deadline);
    try {
      const lines = new SourceLines(file.text);
      const matches = this.match(grammar, tree.rootNode, file, deadline);
      const findings = this.findingsOf(matches, file, tree.rootNode, lines);
      return [...findings, ...parseErrorFindings(tree.rootNode, file.path, lines)];
    } finally {
      tree.delete();
    }
  }

  private parse(grammar: GrammarId, file: SourceFile, deadline: number): Tree {
    let parser = this.parsers.get(grammar);
    if (parser === undefined) {
      parser = new Parser();
      parser.setLanguage(this.grammars[grammar]);
      this.parsers.set(grammar, parser);
    }
    // The progress callback cancels the parse by returning true; the
    // declaration types its result as void.
    const cancelAtDeadline = (() => performance.now() > deadline) as () => void;
    const tree = parser.parse(file.text, null, { progressCallback: cancelAtDeadline });
    if (tree === null) {
      parser.reset();
      throw new ScanDeadlineError(file.path);
    }
    return tree;
  }

  private match(grammar: GrammarId, root: Node, file: SourceFile, deadline: number): QueryMatch[] {
    const compiled = this.queryFor(grammar);
    const remainingMicros = Math.max(1, Math.floor((deadline - performance.now()) * 1000));
    const matches = compiled.query.matches(root, { timeoutMicros: remainingMicros });
    if (performance.now() > deadline) throw new ScanDeadlineError(file.path);
    return matches;
  }

  /**
   * Keeps the matches whose conditions hold. When rules of one family match
   * overlapping code, only the most severe is reported, so `os.system(cmd)`
   * is one command-injection finding and a key assigned to `secret` is one
   * secrets finding.
   */
  private findingsOf(
    matches: readonly QueryMatch[],
    file: SourceFile,
    root: Node,
    lines: SourceLines,
  ): commonV1.Finding[] {
    const compiled = this.queryFor(grammarOf(file.language, file.path));
    const adapter = ADAPTERS[file.language];
    let symbols: FileSymbols | undefined;
    const kept: KeptMatch[] = [];
    for (const match of matches) {
      const owners = compiled.owners[match.patternIndex] ?? [];
      const captures = new Map(match.captures.map((capture) => [capture.name, capture.node]));
      const node = captures.get('match');
      if (node === undefined) continue;
      symbols ??= adapter.collectSymbols(
        this.symbolNodes(grammarOf(file.language, file.path), file.language, root),
      );
      const context = { captures, adapter, symbols, fileText: file.text };
      for (const { rule, pattern } of owners) {
        if (whereHolds(pattern.where, context)) keepMostSevere(kept, { rule, node });
      }
    }
    return kept
      .sort((a, b) => a.node.startIndex - b.node.startIndex)
      .map(({ rule, node }) => findingAt(rule, node, file.path, lines));
  }
}

/**
 * How many earlier matches of a family a new match is compared with.
 * Matches arrive roughly in document order, so overlapping ones are close
 * together; the bound keeps a file with thousands of findings linear.
 */
const OVERLAP_WINDOW = 8;

/** Adds a match unless a recent match of the same family overlaps it; the more severe of the two stays. */
function keepMostSevere(kept: KeptMatch[], candidate: KeptMatch): void {
  for (let index = kept.length - 1, seen = 0; index >= 0 && seen < OVERLAP_WINDOW; index -= 1) {
    const existing = kept[index];
    if (existing?.rule.family !== candidate.rule.family) continue;
    seen += 1;
    const overlaps =
      existing.node.startIndex < candidate.node.endIndex &&
      candidate.node.startIndex < existing.node.endIndex;
    if (overlaps) {
      if (existing.rule.severity < candidate.rule.severity) kept[index] = candidate;
      return;
    }
  }
  kept.push(candidate);
}

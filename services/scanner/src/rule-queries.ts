import { Query, type Language } from 'web-tree-sitter';
import type { GrammarId } from './languages/grammars.js';
import type { LanguageId } from './languages/language-ids.js';
import type { Rule, RulePattern } from './rule-types.js';
import { RuleFileError } from './rule-loader.js';

/** A rule and one of its patterns, behind a pattern index of a grammar's combined query. */
export interface PatternOwner {
  readonly rule: Rule;
  readonly pattern: RulePattern;
}

/**
 * Every pattern of every rule for one grammar, compiled into one query, so
 * a file's tree is walked once whatever the number of rules.
 */
export interface GrammarQuery {
  readonly query: Query;
  /**
   * Owners of each pattern index of `query`. Rules that share a query text
   * (most share the plain call pattern) share one pattern, so a call is
   * matched once and checked against every rule that watches calls.
   */
  readonly owners: readonly (readonly PatternOwner[])[];
}

/**
 * The rule language whose patterns a grammar runs. TypeScript runs a rule's
 * `typescript` patterns when it has them, else its `javascript` ones: the
 * TypeScript grammar names some nodes differently (public_field_definition
 * for field_definition), so a rule that needs those gives its own.
 */
function ruleLanguageFor(grammarId: GrammarId, rule: Rule): LanguageId {
  if (grammarId === 'typescript' || grammarId === 'tsx') {
    return rule.patterns.has('typescript') ? 'typescript' : 'javascript';
  }
  return grammarId;
}

function compile(language: Language, source: string, what: () => RuleFileError): Query {
  try {
    return new Query(language, source);
  } catch (error) {
    const failure = what();
    failure.message += `: ${(error as Error).message}`;
    throw failure;
  }
}

/**
 * Compiles every rule pattern for one grammar into one query. Each
 * pattern's owner is found from where the pattern starts in the combined
 * text. When the combined text does not compile, the patterns are compiled
 * one by one to name the rule at fault.
 */
export function compileGrammarQuery(
  rules: readonly Rule[],
  grammarId: GrammarId,
  language: Language,
): GrammarQuery {
  const segments: { start: number; end: number; owners: PatternOwner[] }[] = [];
  const byText = new Map<string, PatternOwner[]>();
  let source = '';
  for (const rule of rules) {
    for (const pattern of rule.patterns.get(ruleLanguageFor(grammarId, rule)) ?? []) {
      const text = pattern.query.replace(/\s+/g, ' ').trim();
      const shared = byText.get(text);
      if (shared !== undefined) {
        shared.push({ rule, pattern });
        continue;
      }
      const owners = [{ rule, pattern }];
      byText.set(text, owners);
      const start = source.length;
      source += `${text}\n`;
      segments.push({ start, end: source.length, owners });
    }
  }

  let query: Query;
  try {
    query = new Query(language, source);
  } catch (error) {
    for (const { owners } of segments) {
      for (const { rule, pattern } of owners) {
        compile(
          language,
          pattern.query,
          () =>
            new RuleFileError(
              `${rule.family}.yaml`,
              rule.id,
              `query does not compile for ${grammarId}`,
            ),
        ).delete();
      }
    }
    throw error;
  }

  const owners: PatternOwner[][] = [];
  for (let index = 0; index < query.patternCount(); index += 1) {
    const start = query.startIndexForPattern(index);
    const segment = segments.find((candidate) => start >= candidate.start && start < candidate.end);
    if (segment === undefined)
      throw new Error(`pattern ${index} of the ${grammarId} query has no rule`);
    owners.push(segment.owners);
  }
  return { query, owners };
}

import { type commonV1 } from '@cordon/proto';
import type { LanguageId } from './languages/language-ids.js';

/** Conditions on a pattern's captures that a query cannot express; all must hold. */
export interface Where {
  /** The `@callee` capture resolves, after imports and aliases, to one of these names (`*` globs). */
  readonly callee?: readonly string[];
  /** These captures are not compile-time constants. */
  readonly nonLiteral?: readonly string[];
  /** These captures are compile-time constants. */
  readonly literal?: readonly string[];
  /** These captures read request input, directly or through assigned names. */
  readonly tainted?: readonly string[];
  /** Capture name → pattern its text must match. A leading `(?i)` ignores case. */
  readonly regex?: Readonly<Record<string, string>>;
  /** Capture name → pattern its text must not match. */
  readonly notRegex?: Readonly<Record<string, string>>;
  /** Capture name → pattern that a name near it must match (assigned variable, keyword, key, function). */
  readonly nearName?: Readonly<Record<string, string>>;
  /** Capture name → node types its parent must not have. */
  readonly parentNotTypes?: Readonly<Record<string, readonly string[]>>;
  /** Capture name → pattern its parent's text must not match. */
  readonly parentNotRegex?: Readonly<Record<string, string>>;
  /** Pattern the whole file must not match, such as a hardening call elsewhere in the file. */
  readonly fileNotRegex?: string;
}

/** Compiled form of Where, with its patterns as RegExps. */
export interface CompiledWhere {
  readonly callee?: readonly RegExp[];
  readonly nonLiteral?: readonly string[];
  readonly literal?: readonly string[];
  readonly tainted?: readonly string[];
  readonly regex?: readonly (readonly [string, RegExp])[];
  readonly notRegex?: readonly (readonly [string, RegExp])[];
  readonly nearName?: readonly (readonly [string, RegExp])[];
  readonly parentNotTypes?: readonly (readonly [string, readonly string[]])[];
  readonly parentNotRegex?: readonly (readonly [string, RegExp])[];
  readonly fileNotRegex?: RegExp;
}

/** One tree-sitter query of a rule in one language, with its conditions. */
export interface RulePattern {
  readonly query: string;
  readonly where: CompiledWhere;
}

/** A positive and a negative sample of a rule in one language. */
export interface RuleSamples {
  /** Code the rule must flag at least once. */
  readonly positive: string;
  /** Look-alike code the rule must not flag. */
  readonly negative: string;
}

/** A rule as read from its family's file under rules/. */
export interface Rule {
  readonly id: string;
  /** The file stem, e.g. `command` for rules/command.yaml. */
  readonly family: string;
  readonly title: string;
  /** `CWE-78`; empty for informational rules. */
  readonly cwe: string;
  readonly severity: commonV1.Severity;
  readonly confidence: commonV1.Confidence;
  readonly message: string;
  readonly fixHint: string;
  /** Patterns per rule language; `javascript` patterns also apply to TypeScript. */
  readonly patterns: ReadonlyMap<LanguageId, readonly RulePattern[]>;
  readonly samples: ReadonlyMap<LanguageId, RuleSamples>;
}

/** Returns the languages a rule applies to, with TypeScript added where JavaScript is. */
export function ruleLanguages(rule: Rule): LanguageId[] {
  const languages = [...rule.patterns.keys()];
  if (languages.includes('javascript') && !languages.includes('typescript')) {
    languages.push('typescript');
  }
  return languages;
}

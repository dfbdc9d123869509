import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { commonV1 } from '@cordon/proto';
import { LANGUAGE_IDS, type LanguageId } from './languages/language-ids.js';
import type { CompiledWhere, Rule, RulePattern, RuleSamples, Where } from './rule-types.js';

/** The rules shipped with the scanner: services/scanner/rules. */
export const DEFAULT_RULES_DIR = fileURLToPath(new URL('../rules', import.meta.url));

const RULE_ID_PATTERN = /^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$/;
const CWE_PATTERN = /^CWE-\d+$/;
const SEVERITIES: Readonly<Record<string, commonV1.Severity>> = {
  INFO: commonV1.Severity.SEVERITY_INFO,
  LOW: commonV1.Severity.SEVERITY_LOW,
  MEDIUM: commonV1.Severity.SEVERITY_MEDIUM,
  HIGH: commonV1.Severity.SEVERITY_HIGH,
  CRITICAL: commonV1.Severity.SEVERITY_CRITICAL,
};
const CONFIDENCES: Readonly<Record<string, commonV1.Confidence>> = {
  LOW: commonV1.Confidence.CONFIDENCE_LOW,
  MEDIUM: commonV1.Confidence.CONFIDENCE_MEDIUM,
  HIGH: commonV1.Confidence.CONFIDENCE_HIGH,
};
const WHERE_KEYS = new Set([
  'callee',
  'nonLiteral',
  'literal',
  'tainted',
  'regex',
  'notRegex',
  'nearName',
  'parentNotTypes',
  'parentNotRegex',
  'fileNotRegex',
]);

/** A rule file that does not follow the format in services/scanner/README.md. */
export class RuleFileError extends Error {
  constructor(file: string, ruleId: string | undefined, problem: string) {
    super(`${file}${ruleId === undefined ? '' : ` rule ${ruleId}`}: ${problem}`);
    this.name = 'RuleFileError';
  }
}

/** The rules of a folder and a version that changes whenever any rule file changes. */
export interface LoadedRules {
  readonly rules: readonly Rule[];
  /** `sha256-` and the first 16 hex digits of the hash over every rule file. */
  readonly version: string;
}

type Fail = (problem: string) => never;

function asRecord(value: unknown, what: string, fail: Fail): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail(`${what} must be a mapping`);
  }
  return value as Record<string, unknown>;
}

function asText(value: unknown, what: string, fail: Fail): string {
  if (typeof value !== 'string' || value.trim() === '') fail(`${what} must be a non-empty string`);
  return value;
}

/** Compiles a pattern text; `(?i)` at its start makes it ignore case, as in other rule engines. */
export function compilePattern(text: string, what: string, fail: Fail): RegExp {
  const ignoreCase = text.startsWith('(?i)');
  try {
    return new RegExp(ignoreCase ? text.slice(4) : text, ignoreCase ? 'iu' : 'u');
  } catch (error) {
    return fail(`${what} is not a valid regular expression: ${(error as Error).message}`);
  }
}

/** Turns `subprocess.*` into a RegExp over whole qualified names. */
function calleePattern(glob: string): RegExp {
  const escaped = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`, 'u');
}

function captureList(value: unknown, what: string, fail: Fail): string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
    fail(`${what} must be a list of capture names`);
  }
  return value;
}

function patternMap(value: unknown, what: string, fail: Fail): [string, RegExp][] {
  return Object.entries(asRecord(value, what, fail)).map(([capture, pattern]) => [
    capture,
    compilePattern(asText(pattern, `${what}.${capture}`, fail), `${what}.${capture}`, fail),
  ]);
}

function compileWhere(value: unknown, fail: Fail): CompiledWhere {
  if (value === undefined) return {};
  const where = asRecord(value, 'where', fail) as Where & Record<string, unknown>;
  for (const key of Object.keys(where)) {
    if (!WHERE_KEYS.has(key)) fail(`where.${key} is unknown; use ${[...WHERE_KEYS].join(', ')}`);
  }
  const compiled: Record<string, unknown> = {};
  if (where.callee !== undefined) {
    compiled['callee'] = captureList(where.callee, 'where.callee', fail).map(calleePattern);
  }
  for (const key of ['nonLiteral', 'literal', 'tainted'] as const) {
    if (where[key] !== undefined) compiled[key] = captureList(where[key], `where.${key}`, fail);
  }
  for (const key of ['regex', 'notRegex', 'nearName', 'parentNotRegex'] as const) {
    if (where[key] !== undefined) compiled[key] = patternMap(where[key], `where.${key}`, fail);
  }
  if (where.parentNotTypes !== undefined) {
    compiled['parentNotTypes'] = Object.entries(
      asRecord(where.parentNotTypes, 'where.parentNotTypes', fail),
    ).map(([capture, types]) => [
      capture,
      captureList(types, `where.parentNotTypes.${capture}`, fail),
    ]);
  }
  if (where.fileNotRegex !== undefined) {
    compiled['fileNotRegex'] = compilePattern(
      asText(where.fileNotRegex, 'where.fileNotRegex', fail),
      'where.fileNotRegex',
      fail,
    );
  }
  return compiled;
}

function languageKey(key: string, what: string, fail: Fail): LanguageId {
  const language = LANGUAGE_IDS.find((id) => id === key);
  if (language === undefined)
    fail(`${what} names language "${key}"; use ${LANGUAGE_IDS.join(', ')}`);
  return language;
}

function readPatterns(value: unknown, fail: Fail): Map<LanguageId, RulePattern[]> {
  const patterns = new Map<LanguageId, RulePattern[]>();
  for (const [key, list] of Object.entries(asRecord(value, 'patterns', fail))) {
    const language = languageKey(key, 'patterns', fail);
    if (!Array.isArray(list) || list.length === 0) fail(`patterns.${key} must be a non-empty list`);
    patterns.set(
      language,
      (list as unknown[]).map((item, index) => {
        const entry = asRecord(item, `patterns.${key}[${index}]`, fail);
        const query = asText(entry['query'], `patterns.${key}[${index}].query`, fail);
        if (!query.includes('@match'))
          fail(`patterns.${key}[${index}].query has no @match capture`);
        return { query, where: compileWhere(entry['where'], fail) };
      }),
    );
  }
  return patterns;
}

function readSamples(
  value: unknown,
  languages: readonly LanguageId[],
  fail: Fail,
): Map<LanguageId, RuleSamples> {
  const samples = new Map<LanguageId, RuleSamples>();
  const record = asRecord(value, 'samples', fail);
  for (const [key, entry] of Object.entries(record)) {
    const language = languageKey(key, 'samples', fail);
    const pair = asRecord(entry, `samples.${key}`, fail);
    samples.set(language, {
      positive: asText(pair['positive'], `samples.${key}.positive`, fail),
      negative: asText(pair['negative'], `samples.${key}.negative`, fail),
    });
  }
  for (const language of languages) {
    if (!samples.has(language)) fail(`has patterns for ${language} but no samples for it`);
  }
  return samples;
}

function readRule(raw: unknown, family: string, file: string): Rule {
  const fail0: Fail = (problem) => {
    throw new RuleFileError(file, undefined, problem);
  };
  const entry = asRecord(raw, 'each rule', fail0);
  const id = asText(entry['id'], 'id', fail0);
  const fail: Fail = (problem) => {
    throw new RuleFileError(file, id, problem);
  };
  if (!RULE_ID_PATTERN.test(id) || !id.startsWith(`${family}.`)) {
    fail(`id must be "${family}." followed by lower-case words joined by "-"`);
  }
  const severity = SEVERITIES[asText(entry['severity'], 'severity', fail)];
  if (severity === undefined) fail(`severity must be one of ${Object.keys(SEVERITIES).join(', ')}`);
  const confidence = CONFIDENCES[asText(entry['confidence'], 'confidence', fail)];
  if (confidence === undefined) {
    fail(`confidence must be one of ${Object.keys(CONFIDENCES).join(', ')}`);
  }
  const cwe = typeof entry['cwe'] === 'string' ? entry['cwe'] : '';
  if (cwe === '' ? severity !== commonV1.Severity.SEVERITY_INFO : !CWE_PATTERN.test(cwe)) {
    fail('cwe must be like CWE-78 (only INFO rules may leave it out)');
  }
  const patterns = readPatterns(entry['patterns'], fail);
  return {
    id,
    family,
    title: asText(entry['title'], 'title', fail),
    cwe,
    severity: severity,
    confidence: confidence,
    message: asText(entry['message'], 'message', fail),
    fixHint: asText(entry['fix'], 'fix', fail),
    patterns,
    samples: readSamples(entry['samples'], [...patterns.keys()], fail),
  };
}

/** Reads every `*.yaml` file of a folder; each contains the rules of one family. */
export function loadRules(dir: string = DEFAULT_RULES_DIR): LoadedRules {
  const files = readdirSync(dir)
    .filter((name) => name.endsWith('.yaml'))
    .sort();
  const hash = createHash('sha256');
  const rules: Rule[] = [];
  const ids = new Set<string>();
  for (const name of files) {
    const text = readFileSync(join(dir, name), 'utf8');
    hash.update(`${name}\0${text}\0`);
    const family = name.slice(0, -'.yaml'.length);
    let document: unknown;
    try {
      document = parseYaml(text) as unknown;
    } catch (error) {
      throw new RuleFileError(name, undefined, `is not valid YAML: ${(error as Error).message}`);
    }
    const list = (document as { rules?: unknown } | null)?.rules;
    if (!Array.isArray(list)) throw new RuleFileError(name, undefined, 'must hold a list "rules"');
    for (const raw of list) {
      const rule = readRule(raw, family, name);
      if (ids.has(rule.id)) throw new RuleFileError(name, rule.id, 'id is used by another rule');
      ids.add(rule.id);
      rules.push(rule);
    }
  }
  return { rules, version: `sha256-${hash.digest('hex').slice(0, 16)}` };
}

import type { Node } from 'web-tree-sitter';
import type { FileSymbols, LanguageAdapter } from './languages/syntax.js';
import type { CompiledWhere } from './rule-types.js';

/** How many ancestors `nearName` looks through for a name. */
const NEAR_NAME_ANCESTORS = 10;
/**
 * Nodes that give a value a name, with the field that contains the name: the
 * variable, keyword, key or function that a value is assigned to or
 * returned from.
 */
const NAMING_FIELDS: Readonly<Record<string, string>> = {
  assignment: 'left',
  augmented_assignment: 'left',
  assignment_expression: 'left',
  variable_declarator: 'name',
  keyword_argument: 'name',
  default_parameter: 'name',
  pair: 'key',
  property_declaration: 'name',
  function_definition: 'name',
  function_declaration: 'name',
  method_definition: 'name',
  method_declaration: 'name',
  local_function_statement: 'name',
};
/** Ancestors past which no name concerns the match. */
const OUTER_TYPES = new Set([
  'class_definition',
  'class_declaration',
  'class_body',
  'module',
  'program',
  'compilation_unit',
]);

/** Everything a predicate may look at for one match. */
export interface MatchContext {
  readonly captures: ReadonlyMap<string, Node>;
  readonly adapter: LanguageAdapter;
  readonly symbols: FileSymbols;
  readonly fileText: string;
}

/**
 * The name of what a node's value becomes: the nearest variable, keyword,
 * key or function among its ancestors. Only the nearest counts, so
 * `delay = random.random()` inside `def make_session()` is named `delay`.
 */
function nameNear(node: Node): string | undefined {
  let current = node.parent;
  for (let level = 0; current !== null && level < NEAR_NAME_ANCESTORS; level += 1) {
    if (OUTER_TYPES.has(current.type)) return undefined;
    const field = NAMING_FIELDS[current.type];
    const named = field === undefined ? null : current.childForFieldName(field);
    if (named !== null && !named.equals(node)) return named.text.slice(0, 200);
    current = current.parent;
  }
  return undefined;
}

function eachCapture<T>(
  entries: readonly (readonly [string, T])[] | undefined,
  context: MatchContext,
  test: (node: Node, value: T) => boolean,
): boolean {
  if (entries === undefined) return true;
  return entries.every(([capture, value]) => {
    const node = context.captures.get(capture);
    return node !== undefined && test(node, value);
  });
}

function everyCapture(
  names: readonly string[] | undefined,
  context: MatchContext,
  test: (node: Node) => boolean,
): boolean {
  if (names === undefined) return true;
  return names.every((capture) => {
    const node = context.captures.get(capture);
    return node !== undefined && test(node);
  });
}

function calleeMatches(patterns: readonly RegExp[] | undefined, context: MatchContext): boolean {
  if (patterns === undefined) return true;
  const node = context.captures.get('callee');
  if (node === undefined) return false;
  const cache = context.symbols.calleeNames;
  let name = cache.get(node.id);
  if (!cache.has(node.id)) {
    name = context.adapter.calleeName(node, context.symbols);
    cache.set(node.id, name);
  }
  return name !== undefined && patterns.some((pattern) => pattern.test(name));
}

/** True when every condition of `where` holds for the match. */
export function whereHolds(where: CompiledWhere, context: MatchContext): boolean {
  const { adapter, symbols } = context;
  return (
    calleeMatches(where.callee, context) &&
    everyCapture(where.nonLiteral, context, (node) => !adapter.isLiteral(node, symbols)) &&
    everyCapture(where.literal, context, (node) => adapter.isLiteral(node, symbols)) &&
    everyCapture(where.tainted, context, (node) => adapter.isTainted(node, symbols)) &&
    eachCapture(where.regex, context, (node, pattern) => pattern.test(node.text)) &&
    eachCapture(where.notRegex, context, (node, pattern) => !pattern.test(node.text)) &&
    eachCapture(where.nearName, context, (node, pattern) => {
      const name = nameNear(node);
      return name !== undefined && pattern.test(name);
    }) &&
    eachCapture(
      where.parentNotTypes,
      context,
      (node, types) => !types.includes(node.parent?.type ?? ''),
    ) &&
    eachCapture(
      where.parentNotRegex,
      context,
      (node, pattern) => !pattern.test(node.parent?.text ?? ''),
    ) &&
    (where.fileNotRegex === undefined || !where.fileNotRegex.test(context.fileText))
  );
}

import type { Node } from 'web-tree-sitter';
import {
  FileSymbols,
  MAX_EXPRESSION_DEPTH,
  someNode,
  stringContent,
  type Assignment,
  type LanguageAdapter,
} from './syntax.js';

/** Qualified names whose value comes from the person or program calling the code. */
const INPUT_SOURCES =
  /^((flask\.|django\.http\.)?request\.(args|form|values|files|json|data|cookies|headers|GET|POST|FILES|COOKIES|META|body|get_json|query_params)|sys\.argv|input|builtins\.input)\b/;

/** Node types of Python literals that never hold input. */
const CONSTANT_TYPES = new Set(['integer', 'float', 'true', 'false', 'none']);

function importedName(node: Node | null): string {
  return node?.text.replace(/\s+/g, '') ?? '';
}

/** Binds `import a.b as c`, `import a.b` and `from a import b as c`. */
function collectImport(node: Node, aliases: Map<string, string>): void {
  if (node.type === 'import_statement') {
    for (const name of node.childrenForFieldName('name')) {
      if (name?.type === 'aliased_import') {
        const alias = name.childForFieldName('alias')?.text;
        if (alias !== undefined) aliases.set(alias, importedName(name.childForFieldName('name')));
      } else if (name !== null) {
        const root = importedName(name).split('.')[0] ?? '';
        aliases.set(root, root);
      }
    }
    return;
  }
  const module = importedName(node.childForFieldName('module_name'));
  for (const name of node.childrenForFieldName('name')) {
    if (name?.type === 'aliased_import') {
      const alias = name.childForFieldName('alias')?.text;
      const original = importedName(name.childForFieldName('name'));
      if (alias !== undefined) aliases.set(alias, `${module}.${original}`);
    } else if (name !== null) {
      aliases.set(name.text, `${module}.${importedName(name)}`);
    }
  }
}

function qualifiedName(node: Node, symbols: FileSymbols, depth = 0): string | undefined {
  if (depth > MAX_EXPRESSION_DEPTH) return undefined;
  switch (node.type) {
    case 'identifier':
      return symbols.aliases.get(node.text) ?? node.text;
    case 'attribute': {
      const object = node.childForFieldName('object');
      const attribute = node.childForFieldName('attribute');
      const base = object === null ? undefined : qualifiedName(object, symbols, depth + 1);
      return base === undefined || attribute === null ? undefined : `${base}.${attribute.text}`;
    }
    case 'call': {
      const callee = calleeOf(node, symbols, depth + 1);
      // __import__('os') and importlib.import_module('os') stand for the module they load.
      if (callee === '__import__' || callee === 'importlib.import_module') {
        const first = node.childForFieldName('arguments')?.namedChild(0);
        if (
          first?.type === 'string' &&
          first.namedChildren.every((c) => c?.type !== 'interpolation')
        ) {
          return stringContent(first);
        }
      }
      return callee === undefined ? undefined : `${callee}()`;
    }
    case 'parenthesized_expression': {
      const inner = node.namedChild(0);
      return inner === null ? undefined : qualifiedName(inner, symbols, depth + 1);
    }
    default:
      return undefined;
  }
}

/** True for `b` in `a.b`: an attribute name, not a reference to a variable or import. */
function isAttributeName(node: Node): boolean {
  const parent = node.parent;
  return (
    parent?.type === 'attribute' && parent.childForFieldName('attribute')?.equals(node) === true
  );
}

function calleeOf(node: Node, symbols: FileSymbols, depth = 0): string | undefined {
  if (node.type === 'identifier' && isAttributeName(node)) return undefined;
  if (node.type !== 'call') return qualifiedName(node, symbols, depth);
  const fn = node.childForFieldName('function');
  return fn === null ? undefined : qualifiedName(fn, symbols, depth + 1);
}

function isLiteral(node: Node, constants: ReadonlySet<string>, depth = 0): boolean {
  if (depth > MAX_EXPRESSION_DEPTH) return false;
  switch (node.type) {
    case 'string':
      return !node.namedChildren.some((child) => child?.type === 'interpolation');
    case 'identifier':
      return constants.has(node.text);
    case 'concatenated_string':
    case 'list':
    case 'tuple':
    case 'parenthesized_expression':
      return node.namedChildren.every((c) => c !== null && isLiteral(c, constants, depth + 1));
    case 'binary_operator': {
      const left = node.childForFieldName('left');
      const right = node.childForFieldName('right');
      return (
        left !== null &&
        right !== null &&
        isLiteral(left, constants, depth + 1) &&
        isLiteral(right, constants, depth + 1)
      );
    }
    default:
      return CONSTANT_TYPES.has(node.type);
  }
}

function readsInput(node: Node, symbols: FileSymbols, tainted: ReadonlySet<string>): boolean {
  return someNode(node, (child) => {
    if (child.type === 'identifier' && tainted.has(child.text)) return true;
    if (child.type !== 'attribute' && child.type !== 'call' && child.type !== 'identifier') {
      return false;
    }
    const name = child.type === 'call' ? calleeOf(child, symbols) : qualifiedName(child, symbols);
    return name !== undefined && INPUT_SOURCES.test(name);
  });
}

/** Collects `name = value` and `for name in value`, the forms that carry constants and taint. */
function collectAssignment(node: Node, assignments: Assignment[]): void {
  const left = node.childForFieldName('left');
  const right = node.childForFieldName('right');
  if (left?.type === 'identifier' && right !== null) {
    assignments.push({ name: left.text, value: right });
  }
}

/** Binds `f = os.system`, so a call through `f` resolves like one through `os.system`. */
function collectRebinding(assignment: Assignment, symbols: FileSymbols): void {
  if (assignment.value.type !== 'attribute' && assignment.value.type !== 'identifier') return;
  const name = qualifiedName(assignment.value, symbols);
  if (name !== undefined && name !== assignment.name) symbols.aliases.set(assignment.name, name);
}

export const pythonAdapter: LanguageAdapter = {
  symbolNodeTypes: [
    'import_statement',
    'import_from_statement',
    'function_definition',
    'class_definition',
    'assignment',
    'for_statement',
  ],
  collectSymbols(nodes) {
    const aliases = new Map<string, string>();
    const assignments: Assignment[] = [];
    for (const node of nodes) {
      switch (node.type) {
        case 'import_statement':
        case 'import_from_statement':
          collectImport(node, aliases);
          continue;
        case 'function_definition':
        case 'class_definition': {
          // A local `def eval(...)` is not the builtin.
          const name = node.childForFieldName('name')?.text;
          if (name !== undefined) aliases.set(name, `!local.${name}`);
          continue;
        }
        case 'assignment':
        case 'for_statement':
          collectAssignment(node, assignments);
          continue;
        default:
          continue;
      }
    }
    const symbols: FileSymbols = new FileSymbols(
      aliases,
      assignments,
      (value) => isLiteral(value, new Set()),
      (value, tainted) => readsInput(value, symbols, tainted),
    );
    for (const assignment of assignments) collectRebinding(assignment, symbols);
    return symbols;
  },
  calleeName: (node, symbols) => calleeOf(node, symbols),
  isLiteral: (node, symbols) => isLiteral(node, symbols.constants),
  isTainted: (node, symbols) => readsInput(node, symbols, symbols.tainted),
};

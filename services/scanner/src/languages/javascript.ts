import type { Node } from 'web-tree-sitter';
import {
  FileSymbols,
  MAX_EXPRESSION_DEPTH,
  someNode,
  stringContent,
  walkNamed,
  type Assignment,
  type LanguageAdapter,
} from './syntax.js';

/** Expressions whose value comes from the caller: Express/Koa requests and the command line. */
const INPUT_SOURCES =
  /^((req|request|ctx\.request|ctx)\.(query|params|body|headers|cookies|files|url|path)|process\.argv)\b/;

/** Prefixes that name the global object; `globalThis.eval` is `eval`. */
const GLOBAL_PREFIX = /^(globalThis|window|global|self)\./;

const CONSTANT_TYPES = new Set(['number', 'true', 'false', 'null', 'undefined']);

/** `node:fs` and `fs` are the same module. */
function moduleName(source: Node | null): string | undefined {
  return source?.type === 'string' ? stringContent(source).replace(/^node:/, '') : undefined;
}

/** Returns the module a `require('m')` or `import('m')` call loads, else undefined. */
function loadedModule(node: Node): string | undefined {
  if (node.type !== 'call_expression') return undefined;
  const fn = node.childForFieldName('function');
  if (fn?.type !== 'identifier' && fn?.type !== 'import') return undefined;
  if (fn.type === 'identifier' && fn.text !== 'require') return undefined;
  const args = node.childForFieldName('arguments');
  return moduleName(args?.namedChild(0) ?? null);
}

function qualifiedName(node: Node, symbols: FileSymbols, depth = 0): string | undefined {
  if (depth > MAX_EXPRESSION_DEPTH) return undefined;
  switch (node.type) {
    case 'identifier':
      return symbols.aliases.get(node.text) ?? node.text;
    case 'this':
      return 'this';
    case 'member_expression': {
      const object = node.childForFieldName('object');
      const property = node.childForFieldName('property');
      const base = object === null ? undefined : qualifiedName(object, symbols, depth + 1);
      return base === undefined || property === null
        ? undefined
        : `${base}.${property.text}`.replace(GLOBAL_PREFIX, '');
    }
    case 'subscript_expression': {
      // cp['exec'] is cp.exec.
      const object = node.childForFieldName('object');
      const index = node.childForFieldName('index');
      if (object === null || index?.type !== 'string') return undefined;
      const base = qualifiedName(object, symbols, depth + 1);
      return base === undefined ? undefined : `${base}.${stringContent(index)}`;
    }
    case 'call_expression': {
      const loaded = loadedModule(node);
      if (loaded !== undefined) return loaded;
      const callee = calleeOf(node, symbols, depth + 1);
      return callee === undefined ? undefined : `${callee}()`;
    }
    case 'parenthesized_expression':
    case 'await_expression':
    case 'non_null_expression':
    case 'as_expression': {
      const inner = node.namedChild(0);
      return inner === null ? undefined : qualifiedName(inner, symbols, depth + 1);
    }
    default:
      return undefined;
  }
}

function calleeOf(node: Node, symbols: FileSymbols, depth = 0): string | undefined {
  if (node.type === 'new_expression') {
    const constructor = node.childForFieldName('constructor');
    const name = constructor === null ? undefined : qualifiedName(constructor, symbols, depth + 1);
    return name === undefined ? undefined : `${name}.new`;
  }
  if (node.type !== 'call_expression') return qualifiedName(node, symbols, depth);
  const fn = node.childForFieldName('function');
  return fn === null ? undefined : qualifiedName(fn, symbols, depth + 1);
}

function isLiteral(node: Node, constants: ReadonlySet<string>, depth = 0): boolean {
  if (depth > MAX_EXPRESSION_DEPTH) return false;
  switch (node.type) {
    case 'string':
      return true;
    case 'template_string':
      return !node.namedChildren.some((child) => child?.type === 'template_substitution');
    case 'identifier':
      return constants.has(node.text);
    case 'array':
    case 'arguments':
    case 'parenthesized_expression':
      return node.namedChildren.every((c) => c !== null && isLiteral(c, constants, depth + 1));
    case 'binary_expression': {
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
    if (child.type !== 'member_expression') return false;
    const name = qualifiedName(child, symbols);
    return name !== undefined && INPUT_SOURCES.test(name);
  });
}

/** Binds names that a declaration takes from a module: `const cp = require('child_process')`, `const {exec: run} = ...`. */
function bindDeclarator(name: Node, value: Node, symbols: FileSymbols): void {
  const source = qualifiedName(value, symbols);
  // A call's result is a value, not a module or function that rules name.
  if (source === undefined || source.endsWith('()')) return;
  if (name.type === 'identifier') {
    if (name.text !== source) symbols.aliases.set(name.text, source);
    return;
  }
  if (name.type !== 'object_pattern') return;
  for (const entry of name.namedChildren) {
    if (entry?.type === 'shorthand_property_identifier_pattern') {
      symbols.aliases.set(entry.text, `${source}.${entry.text}`);
    } else if (entry?.type === 'pair_pattern') {
      const key = entry.childForFieldName('key')?.text;
      const local = entry.childForFieldName('value');
      if (key !== undefined && local?.type === 'identifier') {
        symbols.aliases.set(local.text, `${source}.${key}`);
      }
    }
  }
}

/** Binds `import cp, {exec as run} from 'child_process'`, `import * as cp` and TypeScript's `import cp = require(...)`. */
function bindImport(node: Node, aliases: Map<string, string>): void {
  const module = moduleName(node.childForFieldName('source'));
  walkNamed(node, (child) => {
    if (child.type === 'import_require_clause') {
      const local = child.namedChild(0);
      const required = moduleName(child.childForFieldName('source'));
      if (local?.type === 'identifier' && required !== undefined) aliases.set(local.text, required);
      return false;
    }
    if (module === undefined) return true;
    if (child.type === 'import_clause') {
      const defaultImport = child.namedChildren.find((c) => c?.type === 'identifier');
      if (defaultImport != null) aliases.set(defaultImport.text, module);
    } else if (child.type === 'namespace_import') {
      const local = child.namedChild(0);
      if (local !== null) aliases.set(local.text, module);
    } else if (child.type === 'import_specifier') {
      const original = child.childForFieldName('name')?.text;
      const local = child.childForFieldName('alias')?.text ?? original;
      if (original !== undefined && local !== undefined)
        aliases.set(local, `${module}.${original}`);
    }
    return true;
  });
}

export const javascriptAdapter: LanguageAdapter = {
  symbolNodeTypes: [
    'import_statement',
    'function_declaration',
    'variable_declarator',
    'assignment_expression',
  ],
  collectSymbols(nodes) {
    const aliases = new Map<string, string>();
    const assignments: Assignment[] = [];
    const declarators: Node[] = [];
    for (const node of nodes) {
      if (node.type === 'import_statement') {
        bindImport(node, aliases);
        continue;
      }
      if (node.type === 'function_declaration') {
        const name = node.childForFieldName('name')?.text;
        if (name !== undefined) aliases.set(name, `!local.${name}`);
      }
      const isDeclarator = node.type === 'variable_declarator';
      const isAssignment = node.type === 'assignment_expression';
      if (isDeclarator) declarators.push(node);
      if (isDeclarator || isAssignment) {
        const name = node.childForFieldName(isDeclarator ? 'name' : 'left');
        const value = node.childForFieldName(isDeclarator ? 'value' : 'right');
        if (name?.type === 'identifier' && value !== null) {
          assignments.push({ name: name.text, value });
        }
      }
      continue;
    }
    const symbols: FileSymbols = new FileSymbols(
      aliases,
      assignments,
      (value) => isLiteral(value, new Set()),
      (value, tainted) => readsInput(value, symbols, tainted),
    );
    for (const declarator of declarators) {
      const name = declarator.childForFieldName('name');
      const value = declarator.childForFieldName('value');
      if (name !== null && value !== null) bindDeclarator(name, value, symbols);
    }
    return symbols;
  },
  calleeName: (node, symbols) => calleeOf(node, symbols),
  isLiteral: (node, symbols) => isLiteral(node, symbols.constants),
  isTainted: (node, symbols) => readsInput(node, symbols, symbols.tainted),
};

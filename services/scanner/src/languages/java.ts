import type { Node } from 'web-tree-sitter';
import {
  FileSymbols,
  MAX_EXPRESSION_DEPTH,
  someNode,
  stripPackage,
  type Assignment,
  type LanguageAdapter,
} from './syntax.js';

/** Servlet calls that return what the client sent. */
const INPUT_SOURCES =
  /\.(getParameter|getParameterValues|getParameterMap|getHeader|getHeaders|getQueryString|getPathInfo|getCookies|getRequestURI)$/;

/** Packages of the platform, whose classes rules name without their package. */
const PLATFORM_PACKAGES = /^(java|javax|jakarta|jdk|sun|org\.w3c|org\.xml)\./;

const CONSTANT_TYPES = new Set([
  'string_literal',
  'character_literal',
  'decimal_integer_literal',
  'hex_integer_literal',
  'decimal_floating_point_literal',
  'true',
  'false',
  'null_literal',
]);

const isPackageSegment = (segment: string): boolean => /^[a-z][a-z0-9_]*$/.test(segment);

/** Binds `import java.io.ObjectInputStream;` and `import static java.lang.Runtime.getRuntime;`. */
function bindImport(node: Node, aliases: Map<string, string>): void {
  if (node.namedChildren.some((child) => child?.type === 'asterisk')) return;
  const path = node.namedChildren.find((c) => c?.type === 'scoped_identifier')?.text;
  if (path === undefined) return;
  const simple = path.slice(path.lastIndexOf('.') + 1);
  aliases.set(
    simple,
    PLATFORM_PACKAGES.test(path) ? stripPackage(path, isPackageSegment) : `!${path}`,
  );
}

function qualifiedName(node: Node, symbols: FileSymbols, depth = 0): string | undefined {
  if (depth > MAX_EXPRESSION_DEPTH) return undefined;
  switch (node.type) {
    case 'identifier':
    case 'type_identifier':
      return symbols.aliases.get(node.text) ?? node.text;
    case 'this':
      return 'this';
    case 'field_access':
    case 'scoped_identifier':
    case 'scoped_type_identifier': {
      const parts = node.namedChildren.filter((c) => c !== null);
      const object =
        node.childForFieldName('object') ?? node.childForFieldName('scope') ?? parts[0];
      const field = node.childForFieldName('field') ?? node.childForFieldName('name') ?? parts[1];
      if (object == null || field == null) return undefined;
      const base = qualifiedName(object, symbols, depth + 1);
      return base === undefined ? undefined : `${base}.${field.text}`;
    }
    case 'generic_type': {
      const base = node.namedChild(0);
      return base === null ? undefined : qualifiedName(base, symbols, depth + 1);
    }
    case 'method_invocation':
    case 'object_creation_expression': {
      const callee = calleeOf(node, symbols, depth + 1);
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

function calleeOf(node: Node, symbols: FileSymbols, depth = 0): string | undefined {
  let name: string | undefined;
  if (node.type === 'object_creation_expression') {
    const type = node.childForFieldName('type');
    const typeName = type === null ? undefined : qualifiedName(type, symbols, depth + 1);
    name = typeName === undefined ? undefined : `${typeName}.new`;
  } else if (node.type === 'method_invocation') {
    const object = node.childForFieldName('object');
    const method = node.childForFieldName('name')?.text;
    const base = object === null ? undefined : qualifiedName(object, symbols, depth + 1);
    if (method === undefined) return undefined;
    name = object === null ? (symbols.aliases.get(method) ?? method) : base && `${base}.${method}`;
  } else {
    name = qualifiedName(node, symbols, depth);
  }
  return name === undefined ? undefined : stripPackage(name, isPackageSegment);
}

function isLiteral(node: Node, constants: ReadonlySet<string>, depth = 0): boolean {
  if (depth > MAX_EXPRESSION_DEPTH) return false;
  switch (node.type) {
    case 'identifier':
      return constants.has(node.text);
    case 'array_creation_expression': {
      const initializer = node.childForFieldName('value');
      return initializer !== null && isLiteral(initializer, constants, depth + 1);
    }
    case 'array_initializer':
    case 'argument_list':
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
    if (child.type !== 'method_invocation') return false;
    const name = calleeOf(child, symbols);
    return name !== undefined && INPUT_SOURCES.test(name);
  });
}

export const javaAdapter: LanguageAdapter = {
  symbolNodeTypes: ['import_declaration', 'variable_declarator', 'assignment_expression'],
  collectSymbols(nodes) {
    const aliases = new Map<string, string>();
    const assignments: Assignment[] = [];
    for (const node of nodes) {
      if (node.type === 'import_declaration') {
        bindImport(node, aliases);
        continue;
      }
      const isDeclarator = node.type === 'variable_declarator';
      if (isDeclarator || node.type === 'assignment_expression') {
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
    return symbols;
  },
  calleeName: (node, symbols) => calleeOf(node, symbols),
  isLiteral: (node, symbols) => isLiteral(node, symbols.constants),
  isTainted: (node, symbols) => readsInput(node, symbols, symbols.tainted),
};

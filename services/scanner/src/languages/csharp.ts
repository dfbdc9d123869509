import type { Node } from 'web-tree-sitter';
import {
  FileSymbols,
  MAX_EXPRESSION_DEPTH,
  someNode,
  stripPackage,
  type Assignment,
  type LanguageAdapter,
} from './syntax.js';

/** ASP.NET request members and the console: what the caller sends. */
const INPUT_SOURCES =
  /^((this\.)?(HttpContext\.)?Request\.(Query|QueryString|Form|Headers|Cookies|Params|RouteValues|Body|Path)|Console\.ReadLine)\b/;

/**
 * Namespace segments of .NET's own libraries. C# code names a type with or
 * without its namespace; rules name it without.
 */
const NAMESPACE_SEGMENTS = new Set([
  'System',
  'Microsoft',
  'Diagnostics',
  'Security',
  'Cryptography',
  'Runtime',
  'Serialization',
  'Formatters',
  'Binary',
  'IO',
  'Net',
  'Http',
  'Sockets',
  'Xml',
  'Data',
  'SqlClient',
  'Sqlite',
  'Reflection',
  'Text',
  'Web',
  'Script',
  'Collections',
  'Generic',
]);

const isPackageSegment = (segment: string): boolean => NAMESPACE_SEGMENTS.has(segment);

const CONSTANT_TYPES = new Set([
  'string_literal',
  'verbatim_string_literal',
  'raw_string_literal',
  'character_literal',
  'integer_literal',
  'real_literal',
  'boolean_literal',
  'null_literal',
]);

/** Binds `using P = System.Diagnostics.Process;`. */
function bindUsing(node: Node, aliases: Map<string, string>): void {
  const aliasNode = node.childForFieldName('name');
  const target = node.namedChildren.find(
    (child) =>
      (child?.type === 'qualified_name' || child?.type === 'identifier') &&
      aliasNode !== null &&
      !child.equals(aliasNode),
  );
  const alias = aliasNode?.text;
  if (alias === undefined || target == null) return;
  aliases.set(alias, target.text.replace(/\s+/g, ''));
}

function qualifiedName(node: Node, symbols: FileSymbols, depth = 0): string | undefined {
  if (depth > MAX_EXPRESSION_DEPTH) return undefined;
  switch (node.type) {
    case 'identifier':
      return symbols.aliases.get(node.text) ?? node.text;
    case 'this_expression':
    case 'this':
      return 'this';
    case 'predefined_type':
      return node.text;
    case 'generic_name': {
      const name = node.namedChild(0);
      return name === null ? undefined : qualifiedName(name, symbols, depth + 1);
    }
    case 'qualified_name':
    case 'member_access_expression': {
      const object = node.childForFieldName('qualifier') ?? node.childForFieldName('expression');
      const member = node.childForFieldName('name');
      const base = object === null ? undefined : qualifiedName(object, symbols, depth + 1);
      const memberName =
        member?.type === 'generic_name' ? member.namedChild(0)?.text : member?.text;
      return base === undefined || memberName === undefined ? undefined : `${base}.${memberName}`;
    }
    case 'invocation_expression':
    case 'object_creation_expression': {
      const callee = calleeOf(node, symbols, depth + 1);
      return callee === undefined ? undefined : `${callee}()`;
    }
    case 'parenthesized_expression':
    case 'argument': {
      const inner = node.namedChildren.at(-1);
      return inner == null ? undefined : qualifiedName(inner, symbols, depth + 1);
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
  } else if (node.type === 'invocation_expression') {
    const fn = node.childForFieldName('function');
    name = fn === null ? undefined : qualifiedName(fn, symbols, depth + 1);
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
    case 'interpolated_string_expression':
      return !node.namedChildren.some((child) => child?.type === 'interpolation');
    case 'argument':
    case 'argument_list':
    case 'parenthesized_expression':
    case 'initializer_expression':
    case 'array_creation_expression':
    case 'implicit_array_creation_expression':
      return node.namedChildren.every(
        (c) => c !== null && (c.type.endsWith('type') || isLiteral(c, constants, depth + 1)),
      );
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
    if (child.type !== 'member_access_expression') return false;
    const name = qualifiedName(child, symbols);
    return name !== undefined && INPUT_SOURCES.test(stripPackage(name, isPackageSegment));
  });
}

export const csharpAdapter: LanguageAdapter = {
  symbolNodeTypes: ['using_directive', 'variable_declarator', 'assignment_expression'],
  collectSymbols(nodes) {
    const aliases = new Map<string, string>();
    const assignments: Assignment[] = [];
    for (const node of nodes) {
      if (node.type === 'using_directive') {
        bindUsing(node, aliases);
        continue;
      }
      if (node.type === 'variable_declarator') {
        const name = node.childForFieldName('name');
        const value = node.namedChildren.at(-1);
        if (name?.type === 'identifier' && value != null && !value.equals(name)) {
          assignments.push({ name: name.text, value });
        }
      } else if (node.type === 'assignment_expression') {
        const left = node.childForFieldName('left');
        const right = node.childForFieldName('right');
        if (left?.type === 'identifier' && right !== null) {
          assignments.push({ name: left.text, value: right });
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

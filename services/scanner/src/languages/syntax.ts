import type { Node } from 'web-tree-sitter';

/**
 * How deep the name and literal helpers follow an expression. Submitted code
 * can nest expressions thousands of levels deep; past this depth a helper
 * returns "unknown" instead of recursing further.
 */
export const MAX_EXPRESSION_DEPTH = 64;

/** Most nodes one subtree search visits before it gives up. */
export const MAX_SUBTREE_NODES = 20_000;

/**
 * Visits every named node under `root` in document order without
 * recursion, so a deeply nested tree cannot overflow the stack. The visitor
 * returns false to skip a node's children.
 */
export function walkNamed(root: Node, visit: (node: Node) => boolean | undefined): void {
  const cursor = root.walk();
  try {
    for (;;) {
      const node = cursor.currentNode;
      const descend = !node.isNamed || visit(node) !== false;
      if (descend && cursor.gotoFirstChild()) continue;
      while (!cursor.gotoNextSibling()) {
        if (!cursor.gotoParent() || cursor.currentNode.equals(root)) return;
      }
    }
  } finally {
    cursor.delete();
  }
}

/** Returns true when some named node under `root` (itself included) satisfies `test`. */
export function someNode(root: Node, test: (node: Node) => boolean): boolean {
  let found = false;
  let visited = 0;
  walkNamed(root, (node) => {
    visited += 1;
    if (found || visited > MAX_SUBTREE_NODES) return false;
    if (test(node)) found = true;
    return !found;
  });
  return found;
}

/** Returns the text of a string literal node without its quotes and prefixes, for literals without interpolation. */
export function stringContent(node: Node): string {
  return node.namedChildren
    .filter(
      (child) =>
        child !== null &&
        /(string_content|string_fragment|string_literal_content|escape_sequence)$/.test(child.type),
    )
    .map((child) => child?.text ?? '')
    .join('');
}

/**
 * Per-file facts the rules' predicates read. Aliases are read while the
 * file is walked; constants and tainted names are worked out on first use,
 * since most files never need them.
 */
export class FileSymbols {
  private constantSet: Set<string> | undefined;
  private taintedSet: Set<string> | undefined;
  /** Callee names already resolved in this file, by node id; rules share them. */
  readonly calleeNames = new Map<number, string | undefined>();

  constructor(
    /** Local name → the qualified name it stands for: `sp` → `subprocess`, `run` → `child_process.exec`. */
    readonly aliases: Map<string, string>,
    private readonly assignments: readonly Assignment[],
    private readonly isLiteralValue: (node: Node) => boolean,
    private readonly readsInput: (node: Node, tainted: ReadonlySet<string>) => boolean,
  ) {}

  /** Names assigned exactly once in the file, from a literal constant. */
  get constants(): ReadonlySet<string> {
    this.constantSet ??= constantNames(this.assignments, this.isLiteralValue);
    return this.constantSet;
  }

  /** Names assigned, directly or through other names, from request input. */
  get tainted(): ReadonlySet<string> {
    this.taintedSet ??= taintedNames(this.assignments, this.readsInput);
    return this.taintedSet;
  }
}

/** A `name = value` the adapters collect for constant and taint propagation. */
export interface Assignment {
  readonly name: string;
  readonly value: Node;
}

/** Language-specific syntax knowledge that the engine needs. */
export interface LanguageAdapter {
  /** Node types that collectSymbols reads: imports, definitions, assignments. */
  readonly symbolNodeTypes: readonly string[];
  /** Reads imports, aliases and assignments from the file's nodes of symbolNodeTypes, in document order. */
  collectSymbols(nodes: readonly Node[]): FileSymbols;
  /**
   * The qualified name a call's callee stands for, after aliases: `sp.call`
   * → `subprocess.call`, `new ObjectInputStream(x)` → `ObjectInputStream.new`.
   * Undefined when the callee is not a plain name chain.
   */
  calleeName(node: Node, symbols: FileSymbols): string | undefined;
  /** True when the expression is a compile-time constant, so no input can reach it. */
  isLiteral(node: Node, symbols: FileSymbols): boolean;
  /** True when the expression reads request input or contains a tainted name. */
  isTainted(node: Node, symbols: FileSymbols): boolean;
}

/** Counts assignments per name and keeps the names whose only assignment is a literal. */
export function constantNames(
  assignments: readonly Assignment[],
  isLiteral: (node: Node) => boolean,
): Set<string> {
  const counts = new Map<string, number>();
  for (const { name } of assignments) counts.set(name, (counts.get(name) ?? 0) + 1);
  return new Set(
    assignments
      .filter(({ name, value }) => counts.get(name) === 1 && isLiteral(value))
      .map(({ name }) => name),
  );
}

/** Most propagation rounds: each round carries taint one assignment further. */
const MAX_TAINT_ROUNDS = 8;

/** Marks every name assigned from an expression that reads input or a tainted name. */
export function taintedNames(
  assignments: readonly Assignment[],
  readsInput: (node: Node, tainted: ReadonlySet<string>) => boolean,
): Set<string> {
  const tainted = new Set<string>();
  for (let round = 0; round < MAX_TAINT_ROUNDS; round += 1) {
    const before = tainted.size;
    for (const { name, value } of assignments) {
      if (!tainted.has(name) && readsInput(value, tainted)) tainted.add(name);
    }
    if (tainted.size === before) break;
  }
  return tainted;
}

/**
 * Java and C# code names types with or without their package: strips the
 * package or namespace part before the first type name, so rules can name
 * `ObjectInputStream` whether the code wrote `java.io.ObjectInputStream` or
 * imported it. A name that an import bound to a package outside the
 * platform starts with `!` and is left as it is, so it matches no rule.
 */
export function stripPackage(name: string, isPackageSegment: (segment: string) => boolean): string {
  if (name.startsWith('!')) return name;
  const segments = name.split('.');
  const firstType = segments.findIndex((segment) => !isPackageSegment(segment));
  if (firstType <= 0 || !/^[A-Z]/.test(segments[firstType] ?? '')) return name;
  return segments.slice(firstType).join('.');
}

import type { Node, Point } from 'web-tree-sitter';
import { commonV1 } from '@cordon/proto';
import type { Rule } from './rule-types.js';

/** Maximum snippet length of a finding, as the proto's Finding.snippet documents. */
const MAX_SNIPPET_CHARS = 400;
/** Maximum parse error findings per file. Past it, the last finding's message gives how many were left out. */
const MAX_PARSE_ERRORS_PER_FILE = 10;
/** Id of the INFO findings that mark code the parser had to recover from. */
export const PARSE_ERROR_RULE_ID = 'parse.syntax-error';

/** A file's lines, split once, for snippets and end positions. */
export class SourceLines {
  private lines: string[] | undefined;

  constructor(private readonly text: string) {}

  line(row: number): string {
    this.lines ??= this.text.split('\n');
    return this.lines[row] ?? '';
  }

  snippet(startRow: number, endRow: number): string {
    const parts: string[] = [];
    let length = 0;
    for (let row = startRow; row <= endRow && length < MAX_SNIPPET_CHARS; row += 1) {
      const line = this.line(row).replace(/\r$/, '');
      parts.push(line);
      length += line.length + 1;
    }
    return parts.join('\n').slice(0, MAX_SNIPPET_CHARS);
  }
}

interface Span {
  startLine: number;
  startColumn: number;
  endLine: number;
  endColumn: number;
}

/**
 * Converts tree-sitter's 0-based, end-exclusive positions (columns in
 * UTF-16 code units, as web-tree-sitter counts them) to the proto's
 * 1-based, end-inclusive ones.
 */
function spanOf(start: Point, end: Point, lines: SourceLines): Span {
  let endLine = end.row + 1;
  let endColumn = end.column;
  if (endColumn === 0 && end.row > start.row) {
    endLine = end.row;
    endColumn = Math.max(1, lines.line(end.row - 1).length);
  }
  return {
    startLine: start.row + 1,
    startColumn: start.column + 1,
    endLine,
    endColumn: Math.max(endColumn, endLine === start.row + 1 ? start.column + 1 : 1),
  };
}

export function findingAt(
  rule: Rule,
  node: Node,
  path: string,
  lines: SourceLines,
): commonV1.Finding {
  const span = spanOf(node.startPosition, node.endPosition, lines);
  return commonV1.Finding.fromPartial({
    ruleId: rule.id,
    title: rule.title,
    cwe: rule.cwe,
    severity: rule.severity,
    confidence: rule.confidence,
    file: path,
    ...span,
    snippet: lines.snippet(node.startPosition.row, span.endLine - 1),
    message: rule.message,
    fixHint: rule.fixHint,
  });
}

function parseErrorFinding(
  node: Node,
  path: string,
  lines: SourceLines,
  message: string,
): commonV1.Finding {
  const span = spanOf(node.startPosition, node.endPosition, lines);
  return commonV1.Finding.fromPartial({
    ruleId: PARSE_ERROR_RULE_ID,
    title: 'Code that does not parse',
    severity: commonV1.Severity.SEVERITY_INFO,
    confidence: commonV1.Confidence.CONFIDENCE_HIGH,
    file: path,
    ...span,
    snippet: lines.snippet(
      node.startPosition.row,
      Math.min(span.endLine - 1, node.startPosition.row + 4),
    ),
    message,
    fixHint:
      'Fix the syntax error; rules did not see this part of the code as the language defines it.',
  });
}

/**
 * Returns one INFO finding per place where the parser skipped text (an
 * ERROR node) or assumed a missing token. Only subtrees that contain an error are
 * walked, without recursion.
 */
export function parseErrorFindings(
  root: Node,
  path: string,
  lines: SourceLines,
): commonV1.Finding[] {
  if (!root.hasError) return [];
  const findings: commonV1.Finding[] = [];
  let more = 0;
  const cursor = root.walk();
  try {
    for (;;) {
      const node = cursor.currentNode;
      let descend = node.hasError;
      if (node.isError || node.isMissing) {
        descend = false;
        if (findings.length < MAX_PARSE_ERRORS_PER_FILE) {
          const message = node.isMissing
            ? `The parser expected ${JSON.stringify(node.type)} here and went on as if it were present; findings near this point may be missing.`
            : 'The parser could not read this code and skipped it; findings in it may be missing.';
          findings.push(parseErrorFinding(node, path, lines, message));
        } else {
          more += 1;
        }
      }
      if (descend && cursor.gotoFirstChild()) continue;
      let moved = cursor.gotoNextSibling();
      while (!moved) {
        if (!cursor.gotoParent()) return withSummary(findings, more);
        moved = cursor.gotoNextSibling();
      }
    }
  } finally {
    cursor.delete();
  }
}

function withSummary(findings: commonV1.Finding[], more: number): commonV1.Finding[] {
  const last = findings.at(-1);
  if (more > 0 && last !== undefined) {
    last.message += ` ${more} more syntax errors in this file are not listed.`;
  }
  return findings;
}

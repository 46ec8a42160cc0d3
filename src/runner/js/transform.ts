/**
 * Rewrites a JavaScript cell so that it behaves in a persistent realm the way a notebook user expects:
 *
 * - Top-level `let`, `const` and `class` become `var` declarations (global properties), so that running a
 *   cell again does not fail with "Identifier 'x' has already been declared" (V8 keeps top-level lexical
 *   bindings of every script in one scope). `const` loses its constness, as in the Node.js REPL.
 * - A cell with top-level `await` is wrapped in an async function whose promise the executor awaits; its
 *   declarations are hoisted to `var`s outside the wrapper so they survive the cell, and its last
 *   expression statement is returned as the cell's value.
 *
 * Line numbers are kept (every rewrite keeps the newlines of what it replaces), so stack traces point at
 * the user's lines. Pure functions over acorn's AST: no evaluation here.
 */
import { parse, type Node, type Program } from 'acorn';

export interface TransformedCell {
  code: string;
  /** True when the code evaluates to a promise of the cell's value (top-level await). */
  async: boolean;
}

type AnyNode = Node & Record<string, unknown>;

const PARSE_OPTIONS = {
  ecmaVersion: 'latest',
  sourceType: 'script',
  allowAwaitOutsideFunction: true,
  allowReturnOutsideFunction: false,
  allowHashBang: true,
} as const;

export function parseCell(source: string): Program {
  return parse(source, PARSE_OPTIONS);
}

function isNode(value: unknown): value is AnyNode {
  return typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string';
}

const FUNCTION_TYPES = new Set(['FunctionDeclaration', 'FunctionExpression', 'ArrowFunctionExpression']);

/** Whether `await` (or `for await`) occurs outside every function of the tree. */
export function hasTopLevelAwait(node: AnyNode): boolean {
  if (node.type === 'AwaitExpression') return true;
  if (node.type === 'ForOfStatement' && node.await === true) return true;
  if (FUNCTION_TYPES.has(node.type)) return false;
  for (const value of Object.values(node)) {
    if (Array.isArray(value)) {
      for (const item of value) if (isNode(item) && hasTopLevelAwait(item)) return true;
    } else if (isNode(value) && hasTopLevelAwait(value)) {
      return true;
    }
  }
  return false;
}

/** Names bound by a declaration pattern (`a`, `{b, c: d}`, `[e, ...f]`, `g = 1`). */
export function boundNames(pattern: AnyNode): string[] {
  switch (pattern.type) {
    case 'Identifier':
      return [pattern.name as string];
    case 'ObjectPattern':
      return (pattern.properties as AnyNode[]).flatMap((property) =>
        boundNames((property.type === 'RestElement' ? property.argument : property.value) as AnyNode),
      );
    case 'ArrayPattern':
      return (pattern.elements as (AnyNode | null)[]).flatMap((element) => (element ? boundNames(element) : []));
    case 'RestElement':
      return boundNames(pattern.argument as AnyNode);
    case 'AssignmentPattern':
      return boundNames(pattern.left as AnyNode);
    default:
      return [];
  }
}

interface Edit {
  start: number;
  end: number;
  text: string;
}

/** Applies non-overlapping edits, padding each replacement with the newlines it removed. */
function applyEdits(source: string, edits: Edit[]): string {
  let out = '';
  let at = 0;
  for (const edit of [...edits].sort((a, b) => a.start - b.start)) {
    const removed = source.slice(edit.start, edit.end);
    const missing = (removed.match(/\n/g)?.length ?? 0) - (edit.text.match(/\n/g)?.length ?? 0);
    out += source.slice(at, edit.start) + edit.text + '\n'.repeat(Math.max(0, missing));
    at = edit.end;
  }
  return out + source.slice(at);
}

export function transformCell(source: string): TransformedCell {
  const program = parseCell(source) as unknown as AnyNode;
  const body = program.body as AnyNode[];
  return hasTopLevelAwait(program) ? wrapAsync(source, body) : { code: applyEdits(source, globalDeclarations(source, body)), async: false };
}

/** Without await: `let`/`const` -> `var`, `class C {}` -> `var C = class C {};`. */
function globalDeclarations(source: string, body: AnyNode[]): Edit[] {
  const edits: Edit[] = [];
  for (const statement of body) {
    if (statement.type === 'VariableDeclaration' && statement.kind !== 'var') {
      const keyword = statement.kind as string;
      edits.push({ start: statement.start, end: statement.start + keyword.length, text: 'var'.padEnd(keyword.length) });
    } else if (statement.type === 'ClassDeclaration') {
      const name = (statement.id as AnyNode).name as string;
      edits.push({ start: statement.start, end: statement.end, text: `var ${name} = ${source.slice(statement.start, statement.end)};` });
    }
  }
  return edits;
}

/**
 * With await: `var <names>; (async () => { <body> })()`, declarations turned into assignments, function
 * declarations published on the global object, the last expression statement returned.
 */
function wrapAsync(source: string, body: AnyNode[]): TransformedCell {
  const hoisted = new Set<string>();
  const functions: string[] = [];
  const edits: Edit[] = [];
  body.forEach((statement, index) => {
    const text = (node: AnyNode) => source.slice(node.start, node.end);
    if (statement.type === 'VariableDeclaration') {
      const assignments: string[] = [];
      for (const declarator of statement.declarations as AnyNode[]) {
        const id = declarator.id as AnyNode;
        for (const name of boundNames(id)) hoisted.add(name);
        const init = declarator.init as AnyNode | null;
        if (init) assignments.push(`(${text(id)} = ${text(init)});`);
        else if (statement.kind !== 'var') assignments.push(`(${text(id)} = undefined);`);
      }
      edits.push({ start: statement.start, end: statement.end, text: assignments.join(' ') });
    } else if (statement.type === 'ClassDeclaration') {
      const name = (statement.id as AnyNode).name as string;
      hoisted.add(name);
      edits.push({ start: statement.start, end: statement.end, text: `${name} = ${text(statement)};` });
    } else if (statement.type === 'FunctionDeclaration') {
      const name = (statement.id as AnyNode).name as string;
      hoisted.add(name);
      functions.push(name);
    } else if (index === body.length - 1 && statement.type === 'ExpressionStatement') {
      edits.push({ start: statement.start, end: statement.end, text: `return (${text(statement.expression as AnyNode)});` });
    }
  });
  const declare = hoisted.size ? `var ${[...hoisted].join(', ')}; ` : '';
  // Function declarations are hoisted inside the wrapper; publishing them first keeps them callable later.
  const publish = functions.map((name) => `globalThis.${name} = ${name}; `).join('');
  const code = `${declare}(async () => { ${publish}${applyEdits(source, edits)}\n})()`;
  return { code, async: true };
}

export type Completeness = 'complete' | 'incomplete' | 'invalid';

/** is_complete for JavaScript: an error at the very end of the code means more code is expected. */
export function jsCompleteness(source: string): Completeness {
  try {
    parseCell(source);
    return 'complete';
  } catch (error) {
    const { pos, message } = error as { pos?: number; message: string };
    // An open template literal or comment runs to the end of the code; an open 'string' is an error.
    if (/^Unterminated (template|comment)/.test(message)) return 'incomplete';
    return typeof pos === 'number' && pos >= source.trimEnd().length ? 'incomplete' : 'invalid';
  }
}

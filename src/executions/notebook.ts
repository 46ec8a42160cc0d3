/**
 * The nbformat v4 notebook as the execution runner needs it: parsed and checked at the edge (a file that
 * is not a notebook is a 400 that says why), parameters injected papermill-style, and serialised the way
 * nbformat writes (indent 1, sorted keys). Pure: no I/O.
 * Schema: https://github.com/jupyter/nbformat/blob/main/nbformat/v4/nbformat.v4.schema.json
 */
import { randomUUID } from 'node:crypto';
import { invalidInput } from '../errors.js';

export type MultilineString = string | string[];
export type JsonMap = Record<string, unknown>;

export type Output =
  | { output_type: 'stream'; name: 'stdout' | 'stderr'; text: string }
  | { output_type: 'display_data'; data: JsonMap; metadata: JsonMap }
  | { output_type: 'execute_result'; data: JsonMap; metadata: JsonMap; execution_count: number | null }
  | { output_type: 'error'; ename: string; evalue: string; traceback: string[] };

export interface CodeCell {
  id?: string;
  cell_type: 'code';
  source: string;
  metadata: JsonMap;
  outputs: Output[];
  execution_count: number | null;
}

export interface OtherCell {
  id?: string;
  cell_type: 'markdown' | 'raw';
  source: MultilineString;
  metadata: JsonMap;
  [extra: string]: unknown;
}

export type Cell = CodeCell | OtherCell;

export interface Notebook {
  nbformat: 4;
  nbformat_minor: number;
  metadata: JsonMap & { kernelspec?: { name?: string; display_name?: string; language?: string } };
  cells: Cell[];
}

/** The tags papermill uses; kept so that notebooks written for papermill run here unchanged. */
export const PARAMETERS_TAG = 'parameters';
export const INJECTED_TAG = 'injected-parameters';

const isObject = (value: unknown): value is JsonMap =>
  value !== null && typeof value === 'object' && !Array.isArray(value);
const isMultiline = (value: unknown): value is MultilineString =>
  typeof value === 'string' || (Array.isArray(value) && value.every((line) => typeof line === 'string'));
export const joinSource = (source: MultilineString): string => (Array.isArray(source) ? source.join('') : source);

function notANotebook(why: string): Error {
  return invalidInput(`not a valid notebook: ${why}`);
}

/**
 * Parses a notebook file's text. Only nbformat 4 is accepted (what Jupyter has written since 2015).
 * Code cell sources are joined into strings and their outputs cleared: the output notebook shows this run.
 * Cells of nbformat >= 4.5 get an id when they lack one, as nbformat's own validator repairs them.
 */
export function parseNotebook(text: string): Notebook {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw notANotebook(`the file is not JSON (${(error as Error).message})`);
  }
  if (!isObject(raw)) throw notANotebook('the top level is not a JSON object');
  if (raw.nbformat !== 4) {
    throw notANotebook(
      raw.nbformat === undefined ? 'it has no "nbformat" field' : `nbformat ${JSON.stringify(raw.nbformat)} is not supported (only nbformat 4)`,
    );
  }
  const minor = raw.nbformat_minor;
  if (typeof minor !== 'number' || !Number.isInteger(minor) || minor < 0) throw notANotebook('"nbformat_minor" must be a whole number');
  if (!isObject(raw.metadata)) throw notANotebook('"metadata" must be an object');
  if (!Array.isArray(raw.cells)) throw notANotebook('"cells" must be a list');
  const cells = raw.cells.map((cell, index) => parseCell(cell, index, minor));
  return { ...raw, nbformat: 4, nbformat_minor: minor, metadata: raw.metadata, cells } as Notebook;
}

function parseCell(cell: unknown, index: number, minor: number): Cell {
  const where = `cell ${index + 1}`;
  if (!isObject(cell)) throw notANotebook(`${where} is not an object`);
  if (!isMultiline(cell.source)) throw notANotebook(`${where} has no "source" string`);
  if (cell.metadata !== undefined && !isObject(cell.metadata)) throw notANotebook(`${where}: "metadata" must be an object`);
  const metadata = (cell.metadata as JsonMap | undefined) ?? {};
  const id = minor >= 5 ? (typeof cell.id === 'string' && cell.id ? cell.id : newCellId()) : undefined;
  switch (cell.cell_type) {
    case 'code':
      return {
        ...(id !== undefined ? { id } : {}),
        cell_type: 'code',
        source: joinSource(cell.source),
        metadata,
        outputs: [],
        execution_count: null,
      };
    case 'markdown':
    case 'raw':
      return { ...cell, ...(id !== undefined ? { id } : {}), cell_type: cell.cell_type, source: cell.source, metadata };
    default:
      throw notANotebook(`${where} has an unknown cell_type ${JSON.stringify(cell.cell_type)?.slice(0, 40)}`);
  }
}

export function newCellId(): string {
  return randomUUID().replace(/-/g, '').slice(0, 16);
}

export function codeCells(notebook: Notebook): CodeCell[] {
  return notebook.cells.filter((cell): cell is CodeCell => cell.cell_type === 'code');
}

function tagsOf(cell: Cell): string[] {
  const tags = cell.metadata.tags;
  return Array.isArray(tags) ? tags.filter((tag): tag is string => typeof tag === 'string') : [];
}

const PYTHON_KEYWORDS = new Set(
  ('False None True and as assert async await break class continue def del elif else except finally for from ' +
    'global if import in is lambda nonlocal not or pass raise return try while with yield').split(' '),
);

interface ParameterSyntax {
  comment: string;
  isName(name: string): boolean;
  assign(name: string, literal: string): string;
}

// A JSON string literal is also a valid string literal in each of these languages: the same escapes
// (\" \\ \n \t \uXXXX …) mean the same characters.
const SYNTAX: Record<string, ParameterSyntax> = {
  python: {
    comment: '#',
    isName: (name) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && !PYTHON_KEYWORDS.has(name),
    assign: (name, literal) => `${name} = ${literal}`,
  },
  r: {
    comment: '#',
    isName: (name) => /^(?:[A-Za-z]|\.[A-Za-z_])[A-Za-z0-9._]*$/.test(name),
    assign: (name, literal) => `${name} <- ${literal}`,
  },
  javascript: {
    comment: '//',
    isName: (name) => /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name),
    assign: (name, literal) => `var ${name} = ${literal};`,
  },
};
SYNTAX.typescript = SYNTAX.javascript!;

/** The parameter names a language accepts, checked before anything runs (a bad name is a 400). */
export function checkParameters(params: Record<string, string>, language: string): void {
  const names = Object.keys(params);
  if (names.length === 0) return;
  const syntax = SYNTAX[language.toLowerCase()];
  if (!syntax) throw invalidInput(`notebook parameters are not supported for ${language} kernels (only Python, R and JavaScript)`);
  const bad = names.filter((name) => !syntax.isName(name));
  if (bad.length > 0) {
    throw invalidInput(`parameter name ${bad.map((n) => JSON.stringify(n.slice(0, 40))).join(', ')} is not a valid ${language} variable name`);
  }
  for (const [name, value] of Object.entries(params)) {
    // R strings cannot hold NUL; no notebook needs one.
    if (value.includes('\0')) throw invalidInput(`parameter "${name}" contains a NUL character`);
  }
}

/** The source of the injected cell: one assignment per parameter, values as string literals. */
export function parametersSource(params: Record<string, string>, language: string): string {
  checkParameters(params, language);
  const syntax = SYNTAX[language.toLowerCase()]!;
  const lines = Object.entries(params).map(([name, value]) => syntax.assign(name, JSON.stringify(value)));
  return [`${syntax.comment} Parameters`, ...lines].join('\n');
}

/**
 * Inserts a code cell tagged `injected-parameters` right after the cell tagged `parameters`, or at the
 * top when there is none. A cell injected by an earlier run (an executed notebook run again) is
 * replaced, as papermill does. Nothing is injected without parameters.
 */
export function injectParameters(notebook: Notebook, params: Record<string, string>, language: string): Notebook {
  if (Object.keys(params).length === 0) return notebook;
  const cells = notebook.cells.filter((cell) => !tagsOf(cell).includes(INJECTED_TAG));
  const injected: CodeCell = {
    ...(notebook.nbformat_minor >= 5 ? { id: newCellId() } : {}),
    cell_type: 'code',
    source: parametersSource(params, language),
    metadata: { tags: [INJECTED_TAG] },
    outputs: [],
    execution_count: null,
  };
  const after = cells.findIndex((cell) => tagsOf(cell).includes(PARAMETERS_TAG));
  cells.splice(after + 1, 0, injected);
  return { ...notebook, cells };
}

function sortKeys(_key: string, value: unknown): unknown {
  if (!isObject(value)) return value;
  return Object.fromEntries(Object.keys(value).sort().map((key) => [key, value[key]]));
}

/** As nbformat.write does: indent 1, keys sorted, a final newline. */
export function serializeNotebook(notebook: Notebook): string {
  return `${JSON.stringify(notebook, sortKeys, 1)}\n`;
}

/**
 * Notebook parsing, parameter injection and serialisation (issue #5): what makes a file "not a valid
 * notebook", where the injected-parameters cell goes, and how values become string literals.
 */
import test from 'ava';
import { DomainError } from '../../src/errors.js';
import {
  injectParameters,
  parametersSource,
  parseNotebook,
  serializeNotebook,
  type CodeCell,
  type Notebook,
} from '../../src/executions/notebook.js';

const nb = (cells: unknown[], minor = 5): string => JSON.stringify({ nbformat: 4, nbformat_minor: minor, metadata: {}, cells });
const code = (source: string | string[], tags?: string[]) => ({
  cell_type: 'code',
  id: `c${Math.random().toString(16).slice(2, 8)}`,
  source,
  metadata: tags ? { tags } : {},
  outputs: [{ output_type: 'stream', name: 'stdout', text: 'old' }],
  execution_count: 7,
});

function rejects(t: any, text: string, pattern: RegExp): void {
  const error = t.throws(() => parseNotebook(text)) as DomainError;
  t.true(error instanceof DomainError);
  t.is(error.code, 'invalid_input');
  t.regex(error.message, pattern);
}

test('a file that is not a notebook is refused with the reason', (t) => {
  rejects(t, '{"cells": [', /not a valid notebook: the file is not JSON/);
  rejects(t, '[1]', /top level is not a JSON object/);
  rejects(t, '{"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []}', /nbformat 3 is not supported/);
  rejects(t, '{"metadata": {}, "cells": []}', /no "nbformat" field/);
  rejects(t, JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells: {} }), /"cells" must be a list/);
  rejects(t, nb([{ cell_type: 'code', metadata: {} }]), /cell 1 has no "source"/);
  rejects(t, nb([{ cell_type: 'heading', source: '', metadata: {} }]), /cell 1 has an unknown cell_type "heading"/);
});

test('code cells are joined and cleared; cells of nbformat 4.5 get missing ids, 4.4 cells get none', (t) => {
  const parsed = parseNotebook(nb([{ ...code(['a = 1\n', 'b = 2']), id: undefined }]));
  const cell = parsed.cells[0] as CodeCell;
  t.is(cell.source, 'a = 1\nb = 2');
  t.deepEqual(cell.outputs, []);
  t.is(cell.execution_count, null);
  t.regex(cell.id!, /^[0-9a-f]{16}$/);
  const old = parseNotebook(nb([{ ...code('x'), id: undefined }], 4));
  t.false('id' in old.cells[0]!);
});

test('parameters are injected right after the cell tagged "parameters", tagged "injected-parameters"', (t) => {
  const parsed = parseNotebook(nb([code('import os'), code('name = "x"', ['parameters']), code('print(name)')]));
  const out = injectParameters(parsed, { name: 'Ada', n: '3' }, 'python');
  t.deepEqual(out.cells.map((c) => c.source), ['import os', 'name = "x"', '# Parameters\nname = "Ada"\nn = "3"', 'print(name)']);
  t.deepEqual(out.cells[2]!.metadata, { tags: ['injected-parameters'] });
  t.truthy(out.cells[2]!.id);
});

test('without a parameters cell they go at the top; a cell injected by an earlier run is replaced', (t) => {
  const top = injectParameters(parseNotebook(nb([code('print(1)')])), { a: '1' }, 'python');
  t.is(top.cells[0]!.source, '# Parameters\na = "1"');
  const again = injectParameters(top, { a: '2' }, 'python');
  t.deepEqual(again.cells.map((c) => c.source), ['# Parameters\na = "2"', 'print(1)']);
  const none = parseNotebook(nb([code('print(1)')]));
  t.is(injectParameters(none, {}, 'python'), none);
});

test('values are string literals, whatever they contain', (t) => {
  t.is(parametersSource({ s: 'say "hi"\\n\nnext ✓' }, 'python'), '# Parameters\ns = "say \\"hi\\"\\\\n\\nnext ✓"');
  t.is(parametersSource({ s: 'x' }, 'R'), '# Parameters\ns <- "x"');
  t.is(parametersSource({ s: 'x' }, 'javascript'), '// Parameters\nvar s = "x";');
});

test('a parameter name that is not a variable of the kernel language is refused', (t) => {
  for (const name of ['1x', 'a-b', 'class', 'x y', '__import__("os").system("id")#']) {
    t.throws(() => parametersSource({ [name]: 'v' }, 'python'), { message: /is not a valid python variable name/ });
  }
  t.throws(() => parametersSource({ a: 'v' }, 'bash'), { message: /not supported for bash kernels/ });
  t.throws(() => parametersSource({ a: 'v\0' }, 'python'), { message: /NUL/ });
});

test('serialised as nbformat writes: keys sorted, indent 1, final newline', (t) => {
  const notebook: Notebook = { nbformat: 4, nbformat_minor: 5, metadata: { z: 1, a: 2 }, cells: [] };
  t.is(serializeNotebook(notebook), '{\n "cells": [],\n "metadata": {\n  "a": 2,\n  "z": 1\n },\n "nbformat": 4,\n "nbformat_minor": 5\n}\n');
});

/**
 * The JavaScript cell rewrite (src/runner/js/transform.ts), checked by running the rewritten cells in a
 * fresh vm context the way the realm runs them: declarations persist and can be declared again, top-level
 * await works and keeps its declarations, the last expression is the value, line numbers are kept.
 */
import test from 'ava';
import vm from 'node:vm';
import { boundNames, jsCompleteness, parseCell, transformCell } from '../../src/runner/js/transform.js';

function realm() {
  const context = vm.createContext({});
  return async (source: string): Promise<unknown> => {
    const { code, async } = transformCell(source);
    const value = new vm.Script(code, { filename: 'cell' }).runInContext(context);
    return async ? await value : value;
  };
}

test('let, const and class survive the cell and may be declared again', async (t) => {
  const run = realm();
  t.is(await run('let x = 1; const y = 2; class A { v() { return 3 } }; x + y'), 3);
  t.is(await run('x + y + new A().v()'), 6);
  t.is(await run('const x = 10; let y = 20; class A { v() { return 30 } }; x + y + new A().v()'), 60);
});

test('top-level await: the value is the last expression and declarations are kept', async (t) => {
  const run = realm();
  t.is(await run('const a = await Promise.resolve(40);\nlet { b } = { b: 2 };\na + b'), 42);
  t.is(await run('a + b'), 42);
  t.is(await run('function twice(n) { return 2 * n }\nawait null\ntwice(a)'), 80);
  t.is(await run('twice(1)'), 2);
  t.is(await run('for await (const v of [Promise.resolve(1)]) {}\nclass K {}\nawait 0; typeof K'), 'function');
  t.is(await run('K.name'), 'K');
});

test('await inside a function does not make the cell async', (t) => {
  t.false(transformCell('async function f() { await 1 }').async);
  t.false(transformCell('const f = async () => { for await (const x of []) {} }').async);
  t.true(transformCell('await f()').async);
});

test('line numbers are kept, so stack traces point at the user\'s lines', (t) => {
  for (const source of ['let a = 1\nconst b = {\n  c: 2,\n}\nclass C {\n}\nthrow new Error("x")', 'const a = await 1\nconst b = {\n  c: 2,\n}\nthrow new Error("x")']) {
    const { code } = transformCell(source);
    const lines = code.split('\n');
    t.is(lines.length, source.split('\n').length + (transformCell(source).async ? 1 : 0));
    t.true(lines[source.split('\n').length - 1]!.includes('throw new Error("x")'), code);
  }
});

test('bound names of destructuring patterns', (t) => {
  const program = parseCell('const { a, b: [c, ...d], e = 1, ...f } = x') as any;
  t.deepEqual(boundNames(program.body[0].declarations[0].id), ['a', 'c', 'd', 'e', 'f']);
});

test('is_complete: an error at the end means more is expected', (t) => {
  t.is(jsCompleteness('const a = 1'), 'complete');
  t.is(jsCompleteness('function f() {'), 'incomplete');
  t.is(jsCompleteness('const s = `abc'), 'incomplete');
  t.is(jsCompleteness('const = 1;\nfoo()'), 'invalid');
});

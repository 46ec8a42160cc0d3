/**
 * The frames of the v1 streaming socket as pure logic: text frames decoded (binary, non-UTF-8 and
 * non-JSON refused), the HTTP execute call's shape checked with the socket's modes, and the runId an
 * error frame echoes.
 */
import test from 'ava';
import { DomainError } from '../../src/errors.js';
import { decodeStreamFrame, parseStreamRequest, runIdOf } from '../../src/api/v1/stream-frames.js';

const MAX_BODY = 1024;
const parse = (value: unknown) => parseStreamRequest(value, MAX_BODY);
const text = (value: string) => decodeStreamFrame(Buffer.from(value), false);

function refused(t: import('ava').ExecutionContext, run: () => unknown, detail: RegExp): void {
  const error = t.throws(run) as DomainError;
  t.true(error instanceof DomainError);
  t.is(error.code, 'invalid_input');
  t.regex(error.message, detail);
}

test('query, batch and input frames as the HTTP execute call has them', (t) => {
  t.deepEqual(parse({ mode: 'query', code: 'print(1)', runId: 'r-1' }), { mode: 'query', code: 'print(1)', runId: 'r-1' });
  // Query mode ignores its options, as the HTTP call and Backend.AI (whose client sends {}) do.
  t.deepEqual(parse({ mode: 'query', code: '', options: { anything: true } }), { mode: 'query', code: '', runId: undefined });
  t.deepEqual(parse({ mode: 'batch', options: { exec: 'echo hi', files: [{ name: 'a/b.txt', content: 'x' }] } }), {
    mode: 'batch',
    options: { exec: 'echo hi', files: [{ name: 'a/b.txt', content: 'x' }] },
    runId: undefined,
  });
  t.deepEqual(parse({ mode: 'batch' }), { mode: 'batch', options: { files: [] }, runId: undefined });
  t.deepEqual(parse({ mode: 'input', code: 'Ada' }), { mode: 'input', code: 'Ada', runId: undefined });
  // null fields count as absent, as in HTTP bodies.
  t.deepEqual(parse({ mode: 'query', code: 'x', runId: null, options: null }), { mode: 'query', code: 'x', runId: undefined });
});

test('frames that are not JSON text are refused with the shape to send', (t) => {
  refused(t, () => decodeStreamFrame(Buffer.from('{"mode":"query"}'), true), /binary frames are not understood: send a JSON object/);
  refused(t, () => decodeStreamFrame(Buffer.from([0x7b, 0xff, 0x7d]), false), /not UTF-8 text/);
  refused(t, () => text('print(1)'), /the frame is not JSON/);
  refused(t, () => text(''), /the frame is not JSON/);
  t.deepEqual(text('{"mode":"query","code":"é"}'), { mode: 'query', code: 'é' });
});

test('wrong modes, types and fields name what to fix', (t) => {
  refused(t, () => parse([]), /frame must be a JSON object, got an array/);
  refused(t, () => parse(null), /frame must be a JSON object, got null/);
  refused(t, () => parse(42), /frame must be a JSON object/);
  refused(t, () => parse({}), /frame\.mode is required/);
  refused(t, () => parse({ mode: 'exec', code: 'x' }), /frame\.mode must be one of "query", "batch", "input", got "exec"/);
  refused(t, () => parse({ mode: 'continue', runId: 'r' }), /mode "continue" is not used on the streaming socket/);
  refused(t, () => parse({ mode: 7 }), /frame\.mode must be a string/);
  refused(t, () => parse({ mode: 'query' }), /frame\.code is required in mode "query"/);
  refused(t, () => parse({ mode: 'input' }), /frame\.code is required in mode "input"/);
  refused(t, () => parse({ mode: 'query', code: ['x'] }), /frame\.code must be a string, got an array/);
  refused(t, () => parse({ mode: 'query', code: 'x', runId: '' }), /frame\.runId must have at least 1/);
  refused(t, () => parse({ mode: 'query', code: 'x', runId: 'a'.repeat(65) }), /frame\.runId is too long/);
  refused(t, () => parse({ mode: 'query', code: 'x', runId: 'a b' }), /frame\.runId has an invalid format/);
  refused(t, () => parse({ mode: 'query', code: 'x', other: 1 }), /unknown field "other" in frame/);
  refused(t, () => parse({ mode: 'query', code: 'x', __proto__: { polluted: true }, constructor: 1 }), /unknown field "constructor" in frame/);
  refused(t, () => parse({ mode: 'batch', options: { exec: 5 } }), /options\.exec must be a string/);
  refused(t, () => parse({ mode: 'batch', options: { buildLog: true } }), /unknown field "buildLog" in options/);
  refused(t, () => parse({ mode: 'batch', options: { files: [{ name: '/etc/x', content: '' }] } }), /is absolute/);
  refused(t, () => parse({ mode: 'batch', options: { files: [{ name: 'big', content: 'x'.repeat(MAX_BODY + 1) }] } }), /at most 1024/);
});

test('an error frame echoes the runId a frame names, when it is well formed', (t) => {
  t.is(runIdOf({ mode: 'query', runId: 'run-7' }), 'run-7');
  t.is(runIdOf({ runId: 'a b' }), undefined);
  t.is(runIdOf({ runId: 5 }), undefined);
  t.is(runIdOf({ runId: 'x'.repeat(65) }), undefined);
  t.is(runIdOf(['run-7']), undefined);
  t.is(runIdOf(undefined), undefined);
  t.is(runIdOf('run-7'), undefined);
});

/**
 * v1 query mode as pure logic: how display bundles become console items, ANSI stripping, and how a
 * QueryRun turns the kernel's messages into the console (merging runs of a stream, cutting output past the
 * limit with a marker, boundaries finished / continued / waiting-input / exec-timeout). The kernel is a
 * fake with the surface QueryRun uses (message, send, submit), fed messages by hand.
 */
import test from 'ava';
import { DomainError } from '../../src/errors.js';
import { consoleItemsOf, QueryRun, stripAnsi, type QueryOptions } from '../../src/runs/query.js';
import { IDLE_AFTER_REPLY_MS } from '../../src/kernels/request-future.js';
import type { Channel, JsonObject, JupyterMessage } from '../../src/protocol/messages.js';
import { FakeKernel } from '../helpers/fake-kernel.js';

/** The kernel a query run sees, answering its one request by hand. */
class QueryKernel extends FakeKernel {
  /** Delivers a kernel message whose parent is `parent` (the run's request unless said otherwise; null for none). */
  override emit(channel: Channel, msgType: string, content: JsonObject, parent: JupyterMessage | null = this.sent[0]?.msg ?? null): void {
    super.emit(channel, msgType, content, parent);
  }

  stream(text: string, name: 'stdout' | 'stderr' = 'stdout'): void {
    this.emit('iopub', 'stream', { name, text });
  }

  finish(status: 'ok' | 'error' | 'aborted' = 'ok'): void {
    this.emit('shell', 'execute_reply', { status, execution_count: 1 });
    this.emit('iopub', 'status', { execution_state: 'idle' });
  }
}

interface Started {
  kernel: QueryKernel;
  run: QueryRun;
  timeouts: { count: number };
}

async function startRun(options: Partial<QueryOptions> = {}, code = 'print(1)'): Promise<Started> {
  const kernel = new QueryKernel();
  const timeouts = { count: 0 };
  const run = new QueryRun(kernel, code, undefined, {
    timeoutMs: 60_000,
    maxOutputBytes: 1024,
    onTimeout: () => timeouts.count++,
    ...options,
  });
  await run.start();
  return { kernel, run, timeouts };
}

// --- consoleItemsOf ---------------------------------------------------------------------------------

const PNG_B64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==';

test('a PNG bundle becomes a media item with a base64 data URI (line breaks of the payload removed)', (t) => {
  const wrapped = `${PNG_B64.slice(0, 40)}\n${PNG_B64.slice(40)}\n`;
  t.deepEqual(consoleItemsOf({ 'image/png': wrapped, 'text/plain': '<Figure>' }), [['media', ['image/png', `data:image/png;base64,${PNG_B64}`]]]);
});

test('JPEG and GIF bundles become media items of their own type', (t) => {
  t.deepEqual(consoleItemsOf({ 'image/jpeg': '/9j/4AAQ' }), [['media', ['image/jpeg', 'data:image/jpeg;base64,/9j/4AAQ']]]);
  t.deepEqual(consoleItemsOf({ 'image/gif': 'R0lGOD' }), [['media', ['image/gif', 'data:image/gif;base64,R0lGOD']]]);
});

test('an SVG bundle (text) becomes a media item whose data URI decodes back to the same SVG, unicode included', (t) => {
  const svg = '<svg xmlns="http://www.w3.org/2000/svg"><text>\u00e9\u2713</text></svg>';
  const items = consoleItemsOf({ 'image/svg+xml': svg, 'text/html': '<b>no</b>' });
  t.is(items.length, 1);
  const [kind, [mime, uri]] = items[0] as ['media', [string, string]];
  t.is(kind, 'media');
  t.is(mime, 'image/svg+xml');
  t.true(uri.startsWith('data:image/svg+xml;base64,'));
  t.is(Buffer.from(uri.slice('data:image/svg+xml;base64,'.length), 'base64').toString('utf8'), svg);
});

test('HTML is preferred over plain text; plain text alone becomes stdout with a newline', (t) => {
  t.deepEqual(consoleItemsOf({ 'text/html': '<table></table>', 'text/plain': 'table' }), [['html', '<table></table>']]);
  t.deepEqual(consoleItemsOf({ 'text/plain': '42' }), [['stdout', '42\n']]);
});

test('a bundle with nothing a v1 client can show gives no items', (t) => {
  t.deepEqual(consoleItemsOf({}), []);
  t.deepEqual(consoleItemsOf({ 'application/json': { a: 1 } }), []);
  t.deepEqual(consoleItemsOf({ 'image/png': { not: 'a string' } }), []);
});

// --- stripAnsi --------------------------------------------------------------------------------------

test('stripAnsi removes colour and cursor escape sequences and keeps the text', (t) => {
  const traceback = '\x1b[0;31mZeroDivisionError\x1b[0m: division by zero\x1b[1;32m\x1b[?25l ok\x1b[39;49m';
  t.is(stripAnsi(traceback), 'ZeroDivisionError: division by zero ok');
  t.is(stripAnsi('plain [brackets] stay'), 'plain [brackets] stay');
  t.is(stripAnsi('\x1b[38;5;208morange\x1b[0m and \x1b[1mbold\x1b[22m'), 'orange and bold');
});

// --- QueryRun ---------------------------------------------------------------------------------------

test('start sends one execute_request with the code on shell, allowing stdin', async (t) => {
  const { kernel, run } = await startRun({}, 'print(6*7)');
  t.is(kernel.sent.length, 1);
  t.is(kernel.sent[0]!.channel, 'shell');
  t.is(kernel.sent[0]!.msg.header.msg_type, 'execute_request');
  t.like(kernel.sent[0]!.msg.content, { code: 'print(6*7)', allow_stdin: true, silent: false });
  run.dispose();
});

test('consecutive output of one stream merges into one item; a change of stream or a display starts a new one', async (t) => {
  const { kernel, run } = await startRun();
  kernel.stream('a');
  kernel.stream('b\n');
  kernel.stream('oops\n', 'stderr');
  kernel.stream('warn\n', 'stderr');
  kernel.stream('c');
  kernel.emit('iopub', 'display_data', { data: { 'image/png': PNG_B64 }, metadata: {} });
  kernel.stream('d');
  kernel.emit('iopub', 'execute_result', { data: { 'text/plain': '3' }, metadata: {}, execution_count: 1 });
  kernel.finish();
  const result = await run.next(1000);
  t.is(result.status, 'finished');
  t.is(result.exitCode, 0);
  t.deepEqual(result.console, [
    ['stdout', 'ab\n'],
    ['stderr', 'oops\nwarn\n'],
    ['stdout', 'c'],
    ['media', ['image/png', `data:image/png;base64,${PNG_B64}`]],
    ['stdout', 'd3\n'],
  ]);
  t.is(kernel.listening, 0, 'a finished run stops listening');
});

test('messages of another request are ignored', async (t) => {
  const { kernel, run } = await startRun();
  const other = kernel.message('execute_request', { code: 'other' });
  kernel.emit('iopub', 'stream', { name: 'stdout', text: 'not mine' }, other);
  kernel.emit('shell', 'execute_reply', { status: 'ok' }, other);
  kernel.emit('iopub', 'status', { execution_state: 'idle' }, other);
  kernel.emit('iopub', 'stream', { name: 'stdout', text: 'no parent' }, null);
  t.false(run.done);
  kernel.stream('mine');
  kernel.finish();
  t.deepEqual((await run.next(1000)).console, [['stdout', 'mine']]);
});

test('the run is finished only once it has both the execute_reply and the idle status, in either order', async (t) => {
  const first = await startRun();
  first.kernel.emit('shell', 'execute_reply', { status: 'ok' });
  t.false(first.run.done);
  first.kernel.emit('iopub', 'status', { execution_state: 'idle' });
  t.true(first.run.done);
  t.is((await first.run.next(1000)).status, 'finished');

  const second = await startRun();
  second.kernel.emit('iopub', 'status', { execution_state: 'busy' });
  second.kernel.emit('iopub', 'status', { execution_state: 'idle' });
  t.false(second.run.done);
  second.kernel.emit('shell', 'execute_reply', { status: 'ok' });
  t.true(second.run.done);
  t.is((await second.run.next(1000)).exitCode, 0);
});

test('an error becomes stderr with the ANSI-free traceback, and the run exits with 1', async (t) => {
  const { kernel, run } = await startRun();
  kernel.emit('iopub', 'error', {
    ename: 'ZeroDivisionError',
    evalue: 'division by zero',
    traceback: ['\x1b[0;31m---------\x1b[0m', '\x1b[0;31mZeroDivisionError\x1b[0m: division by zero'],
  });
  kernel.finish('error');
  const result = await run.next(1000);
  t.deepEqual(result.console, [['stderr', '---------\nZeroDivisionError: division by zero\n']]);
  t.is(result.status, 'finished');
  t.is(result.exitCode, 1);
});

test('an error without a traceback is rendered as "ename: evalue"; an aborted reply also exits with 1 and says it was not run', async (t) => {
  const { kernel, run } = await startRun();
  kernel.emit('iopub', 'error', { ename: 'KeyboardInterrupt', evalue: '', traceback: [] });
  kernel.finish('aborted');
  const result = await run.next(1000);
  t.is(result.console[0]![1], 'KeyboardInterrupt: \n');
  t.regex(String(result.console[1]?.[1]), /^\[not run: the kernel aborted this request because the one before it failed or was interrupted; send it again\]\n$/);
  t.is(result.exitCode, 1);
});

test('a run whose kernel is interrupted ends with exit code 130 and an [interrupted] line after the kernel\'s own error', async (t) => {
  const { kernel, run } = await startRun({}, 'while True: pass');
  kernel.emit('iopub', 'status', { execution_state: 'busy' });
  run.interrupted();
  t.is((await run.next(10)).status, 'continued', 'the interrupt alone does not end the run: the kernel does');
  kernel.emit('iopub', 'error', { ename: 'KeyboardInterrupt', evalue: '', traceback: [] });
  kernel.finish('error');
  const result = await run.next(1000);
  t.is(result.status, 'finished');
  t.is(result.exitCode, 130);
  t.deepEqual(result.console, [['stderr', 'KeyboardInterrupt: \n'], ['stderr', '\n[interrupted]\n']]);
});

test('a run that ended while nobody fetched its result no longer has a time limit: its kernel is not destroyed for it', async (t) => {
  const { kernel, run, timeouts } = await startRun({ timeoutMs: 50 }, 'while True: pass');
  t.is((await run.next(10)).status, 'continued');
  // Interrupted (or simply done) after the client's last call; the client starts something else instead.
  kernel.finish('error');
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.is(timeouts.count, 0);
  const result = await run.next(1000);
  t.is(result.status, 'finished');
  t.is(result.exitCode, 1);
});

test('an interrupt after a run ended does not relabel it', async (t) => {
  const { kernel, run } = await startRun();
  kernel.stream('1\n');
  kernel.finish('ok');
  run.interrupted();
  const result = await run.next(1000);
  t.is(result.exitCode, 0);
  t.deepEqual(result.console, [['stdout', '1\n']]);
});

test('after the flush window a call returns "continued" with the output so far; the next one only what came since', async (t) => {
  const { kernel, run } = await startRun();
  kernel.stream('first\n');
  const partial = await run.next(20);
  t.is(partial.status, 'continued');
  t.is(partial.exitCode, null);
  t.deepEqual(partial.console, [['stdout', 'first\n']]);
  kernel.stream('second\n');
  kernel.finish();
  const rest = await run.next(1000);
  t.is(rest.status, 'finished');
  t.deepEqual(rest.console, [['stdout', 'second\n']]);
  t.is(rest.runId, partial.runId);
});

test('a pending call returns as soon as the run finishes, without waiting for the flush window', async (t) => {
  const { kernel, run } = await startRun();
  const started = Date.now();
  const pending = run.next(30_000);
  kernel.stream('x');
  setTimeout(() => kernel.finish(), 10);
  const result = await pending;
  t.is(result.status, 'finished');
  t.true(Date.now() - started < 5000);
});

test('output past maxOutputBytes is cut: what fits is kept, then one truncation marker, then nothing more', async (t) => {
  const { kernel, run } = await startRun({ maxOutputBytes: 10 });
  kernel.stream('hello');
  kernel.stream('world!');
  kernel.stream('more', 'stderr');
  kernel.emit('iopub', 'display_data', { data: { 'text/plain': 'x' }, metadata: {} });
  kernel.finish();
  const result = await run.next(1000);
  t.deepEqual(result.console, [
    ['stdout', 'helloworld'],
    ['stderr', '\n[output truncated: more than 10 bytes]\n'],
  ]);
  t.is(result.status, 'finished');
  t.is(result.exitCode, 0);
});

test('one chunk bigger than the limit keeps its first maxOutputBytes, not nothing', async (t) => {
  const { kernel, run } = await startRun({ maxOutputBytes: 8 });
  kernel.stream('0123456789abcdef');
  kernel.finish();
  t.deepEqual((await run.next(1000)).console, [
    ['stdout', '01234567'],
    ['stderr', '\n[output truncated: more than 8 bytes]\n'],
  ]);
});

test('the output limit counts UTF-8 bytes and never splits a character', async (t) => {
  const { kernel, run } = await startRun({ maxOutputBytes: 5 });
  kernel.stream('\u00e9\u00e9\u00e9'); // 6 bytes: only two characters (4 bytes) fit
  kernel.finish();
  t.deepEqual((await run.next(1000)).console, [
    ['stdout', '\u00e9\u00e9'],
    ['stderr', '\n[output truncated: more than 5 bytes]\n'],
  ]);
});

test('output exactly at the limit is kept whole, without a marker', async (t) => {
  const { kernel, run } = await startRun({ maxOutputBytes: 10 });
  kernel.stream('0123456789');
  kernel.finish();
  t.deepEqual((await run.next(1000)).console, [['stdout', '0123456789']]);
});

test('the output limit counts the whole run, across calls', async (t) => {
  const { kernel, run } = await startRun({ maxOutputBytes: 6 });
  kernel.stream('abcd');
  t.deepEqual((await run.next(10)).console, [['stdout', 'abcd']]);
  kernel.stream('efgh', 'stderr');
  kernel.stream('ignored');
  kernel.finish();
  t.deepEqual((await run.next(1000)).console, [['stderr', 'ef'], ['stderr', '\n[output truncated: more than 6 bytes]\n']]);
});

test('an input request returns "waiting-input" with the prompt; the answer goes to stdin as input_reply', async (t) => {
  const { kernel, run } = await startRun({}, 'input("name? ")');
  await t.throwsAsync(run.sendInput('too early'), { instanceOf: DomainError, message: /not waiting for input/ });
  kernel.stream('before ');
  kernel.emit('stdin', 'input_request', { prompt: 'name? ', password: false });
  const waiting = await run.next(30_000);
  t.is(waiting.status, 'waiting-input');
  t.is(waiting.exitCode, null);
  t.deepEqual(waiting.console, [['stdout', 'before name? ']]);
  await run.sendInput('Ada');
  const reply = kernel.sent.at(-1)!;
  t.is(reply.channel, 'stdin');
  t.is(reply.msg.header.msg_type, 'input_reply');
  t.deepEqual(reply.msg.content, { value: 'Ada' });
  t.is(reply.msg.parent_header.msg_type, 'input_request');
  kernel.stream('hi Ada\n');
  kernel.finish();
  const done = await run.next(1000);
  t.is(done.status, 'finished');
  t.deepEqual(done.console, [['stdout', 'hi Ada\n']]);
});

test('past its timeout the run reports "exec-timeout" once and calls onTimeout once', async (t) => {
  const { kernel, run, timeouts } = await startRun({ timeoutMs: 20 });
  kernel.stream('slow');
  const result = await run.next(30_000);
  t.is(result.status, 'exec-timeout');
  t.is(result.exitCode, null);
  t.deepEqual(result.console, [['stdout', 'slow']]);
  t.is(timeouts.count, 1);
  t.is(kernel.listening, 0);
});

test('a kernel that dies under the run finishes it with exit code 137 and says why', async (t) => {
  const { kernel, run } = await startRun();
  kernel.stream('partial');
  run.abort('out of memory');
  const result = await run.next(30_000);
  t.is(result.status, 'finished');
  t.is(result.exitCode, 137);
  t.deepEqual(result.console, [['stdout', 'partial'], ['stderr', '\n[kernel died: out of memory]\n']]);
});

test('when iopub loses the idle status, the run finishes IDLE_AFTER_REPLY_MS after its reply and says output may be missing', async (t) => {
  const { kernel, run } = await startRun();
  kernel.stream('kept');
  kernel.emit('shell', 'execute_reply', { status: 'ok', execution_count: 1 });
  const started = Date.now();
  const result = await run.next(30_000);
  t.true(Date.now() - started >= IDLE_AFTER_REPLY_MS - 50);
  t.is(result.status, 'finished');
  t.is(result.exitCode, 0);
  t.deepEqual(result.console, [['stdout', 'kept'], ['stderr', "\n[output may be incomplete: the kernel's output channel dropped messages]\n"]]);
  t.is(kernel.listening, 0);
});

test('an eager call (the streaming socket) returns at the first output; a reported input request does not end the next one', async (t) => {
  const { kernel, run } = await startRun({}, 'print(1); input("? ")');
  const first = run.next(30_000, { eager: true });
  kernel.stream('one\n');
  t.deepEqual(await first, { runId: run.runId, status: 'continued', exitCode: null, console: [['stdout', 'one\n']], options: {} });
  kernel.emit('stdin', 'input_request', { prompt: '? ', password: false });
  t.is((await run.next(30_000, { eager: true })).status, 'waiting-input');
  // Still waiting for input: the next eager call waits for something new, here the flush window.
  const started = Date.now();
  const again = await run.next(200, { eager: true });
  t.true(Date.now() - started >= 150, 'it waited');
  t.deepEqual([again.status, again.console], ['waiting-input', []]);
  // A call that is not eager answers the pending input request at once, as before.
  t.is((await run.next(30_000)).status, 'waiting-input');
  const pending = run.next(30_000, { eager: true });
  await run.sendInput('x');
  kernel.finish();
  t.deepEqual([(await pending).status, (await pending).exitCode], ['finished', 0]);
});

test('a run still queued (its request not begun: no busy status) when the kernel is interrupted is no interrupted run', async (t) => {
  const { kernel, run } = await startRun({}, 'print(1)');
  run.interrupted();
  kernel.emit('iopub', 'status', { execution_state: 'busy' });
  kernel.stream('1\n');
  kernel.finish('ok');
  const result = await run.next(1000);
  t.deepEqual([result.status, result.exitCode, result.console], ['finished', 0, [['stdout', '1\n']]]);
});

/**
 * v1 complete as pure logic: the body Backend.AI documents checked at the edge, the kernel's
 * complete_reply turned into matches and the span they replace, and the bound on completions waiting
 * for one kernel. The kernel is a fake that answers (or never answers) by hand.
 */
import test from 'ava';
import { DomainError } from '../../src/errors.js';
import { parseCompleteBody } from '../../src/api/v1/complete-body.js';
import { Completions, completionOf, MAX_COMPLETE_CODE_CHARS, MAX_MATCHES, MAX_PENDING_COMPLETIONS, type CompletionKernel } from '../../src/runs/completion.js';
import { newMessage, type JsonObject, type JupyterMessage } from '../../src/protocol/messages.js';

const reply = (content: JsonObject) => newMessage('complete_reply', content, { session: 's' });

function rejects400(t: import('ava').ExecutionContext, body: unknown, detail: RegExp): void {
  const error = t.throws(() => parseCompleteBody(body)) as DomainError;
  t.is(error.code, 'invalid_input', JSON.stringify(body).slice(0, 60));
  t.regex(error.message, detail);
}

test('a body as Backend.AI documents it is the code before and after the cursor', (t) => {
  t.deepEqual(parseCompleteBody({ code: 'pri', options: { post: '\nprint("world")\n', line: 'pri', row: 0, col: 3 } }), { code: 'pri', post: '\nprint("world")\n' });
  t.deepEqual(parseCompleteBody({ code: 'import o' }), { code: 'import o', post: '' });
  t.deepEqual(parseCompleteBody({ code: '', options: {} }), { code: '', post: '' });
});

test('bad bodies are invalid input that names the field', (t) => {
  rejects400(t, null, /body must be a JSON object/);
  rejects400(t, 'import o', /body must be a JSON object/);
  rejects400(t, {}, /^code is required/);
  rejects400(t, { code: ['x'] }, /code must be a string/);
  rejects400(t, { code: 'x', options: 'post' }, /options must be a JSON object/);
  rejects400(t, { code: 'x', options: { post: 1 } }, /options\.post must be a string/);
  rejects400(t, { code: 'x', options: { row: 1.5 } }, /options\.row must be a whole number/);
  rejects400(t, { code: 'x', options: { col: -2 } }, /options\.col must be at least 0/);
  rejects400(t, { code: 'x', options: { cursor_pos: 1 } }, /unknown field "cursor_pos" in options/);
  rejects400(t, { code: 'x', mode: 'complete' }, /unknown field "mode"/);
});

test('the code around the cursor is bounded, alone and with post', (t) => {
  t.notThrows(() => parseCompleteBody({ code: 'x'.repeat(MAX_COMPLETE_CODE_CHARS) }));
  rejects400(t, { code: 'x'.repeat(MAX_COMPLETE_CODE_CHARS + 1) }, /code is too long/);
  rejects400(t, { code: 'x', options: { post: 'y'.repeat(MAX_COMPLETE_CODE_CHARS) } }, /code and options\.post together are too long/);
});

test('a complete_reply becomes its matches and the span they replace', (t) => {
  t.deepEqual(completionOf(reply({ status: 'ok', matches: ['os', 'operator'], cursor_start: 7, cursor_end: 8, metadata: {} }), 8, 8), { matches: ['os', 'operator'], cursorStart: 7, cursorEnd: 8 });
});

test('a failed or odd complete_reply is no matches, its span kept within the cell', (t) => {
  t.deepEqual(completionOf(reply({ status: 'error', ename: 'X', evalue: '', traceback: [] }), 3, 5), { matches: [], cursorStart: 3, cursorEnd: 3 });
  t.deepEqual(completionOf(reply({ status: 'ok', matches: 'os' }), 3, 5), { matches: [], cursorStart: 3, cursorEnd: 3 });
  // Positions outside the cell, not integers or reversed fall back to the cursor.
  t.deepEqual(completionOf(reply({ status: 'ok', matches: ['a'], cursor_start: -1, cursor_end: 99 }), 3, 5), { matches: ['a'], cursorStart: 3, cursorEnd: 3 });
  t.deepEqual(completionOf(reply({ status: 'ok', matches: ['a'], cursor_start: 4, cursor_end: 2 }), 3, 5), { matches: ['a'], cursorStart: 2, cursorEnd: 2 });
  t.deepEqual(completionOf(reply({ status: 'ok', matches: ['a', 7, null, 'x'.repeat(5000), 'b'], cursor_start: 1.5, cursor_end: 3 }), 3, 5).matches, ['a', 'b']);
});

test('a kernel answering with very many matches is cut to the bound', (t) => {
  const many = Array.from({ length: MAX_MATCHES * 3 }, (_, i) => `m${i}`);
  t.is(completionOf(reply({ status: 'ok', matches: many, cursor_start: 0, cursor_end: 0 }), 0, 0).matches.length, MAX_MATCHES);
});

/** A kernel whose completion requests are answered by hand, or never. */
class CompletingKernel implements CompletionKernel {
  readonly id = 'k1';
  readonly requests: { msg: JupyterMessage; resolve: (reply: JupyterMessage) => void; reject: (error: Error) => void }[] = [];
  message(msgType: string, content: JsonObject): JupyterMessage {
    return newMessage(msgType, content, { session: 's' });
  }
  request(_channel: 'shell' | 'control', msg: JupyterMessage, timeoutMs: number): Promise<JupyterMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply within ${timeoutMs} ms`)), timeoutMs);
      this.requests.push({ msg, resolve: (r) => (clearTimeout(timer), resolve(r)), reject });
    });
  }
}

test('the request is the whole cell with the cursor in code points after the code', async (t) => {
  const kernel = new CompletingKernel();
  const completions = new Completions(1000);
  const answer = completions.complete(kernel, { code: '"😀".up', post: '()\n' });
  t.deepEqual(kernel.requests[0]!.msg.content, { code: '"😀".up()\n', cursor_pos: 6 });
  t.is(kernel.requests[0]!.msg.header.msg_type, 'complete_request');
  kernel.requests[0]!.resolve(reply({ status: 'ok', matches: ['upper'], cursor_start: 4, cursor_end: 6 }));
  t.deepEqual(await answer, { matches: ['upper'], cursorStart: 4, cursorEnd: 6 });
  t.is(completions.size, 0);
});

test('a kernel that never answers is a 503 after the timeout; past a few waiting, a 429; nothing is kept afterwards', async (t) => {
  const kernel = new CompletingKernel();
  const completions = new Completions(200);
  const waiting = Array.from({ length: MAX_PENDING_COMPLETIONS }, () => completions.complete(kernel, { code: 'x', post: '' }));
  const refused = await t.throwsAsync(completions.complete(kernel, { code: 'x', post: '' })) as DomainError;
  t.is(refused.code, 'rate_limited');
  t.regex(refused.message, new RegExp(`${MAX_PENDING_COMPLETIONS} completions already wait for kernel k1`));
  for (const answer of waiting) {
    const error = await t.throwsAsync(answer) as DomainError;
    t.is(error.code, 'unavailable');
    t.regex(error.message, /kernel k1 did not answer the completion within 200 ms/);
  }
  t.is(completions.size, 0);
  // And the kernel is served again once they are gone.
  const again = completions.complete(kernel, { code: 'x', post: '' });
  kernel.requests.at(-1)!.resolve(reply({ status: 'ok', matches: [], cursor_start: 1, cursor_end: 1 }));
  t.deepEqual(await again, { matches: [], cursorStart: 1, cursorEnd: 1 });
});

/**
 * v1 complete and interrupt against a real Docker engine and store, with two tenants: python3's
 * completions with the span they replace, a runner language's (empty) answer, unknown and deleted
 * kernels, bad bodies, a kernel too busy to answer, an endless loop interrupted (the kernel keeps its
 * variables), an idle kernel interrupted, and a tenant reaching for another's kernel.
 */
import test from 'ava';
import { startTestService, type TestService } from '../helpers/service.js';
import { auth, KeysFile } from '../helpers/tenant-keys.js';
import { jsonCall } from '../helpers/http-client.js';
import { createKernel, runToEnd, whenBusy } from '../helpers/v1-client.js';
import { sleep } from '../helpers/wait.js';
import { MAX_COMPLETE_CODE_CHARS, MAX_PENDING_COMPLETIONS } from '../../src/runs/completion.js';

const A = auth('key-of-tenant-a-0123456789');
const B = auth('key-of-tenant-b-0123456789');
const UNKNOWN = '00000000-0000-4000-8000-000000000000';
const COMPLETE_TIMEOUT_MS = 3000;

let svc: TestService;
let keys: KeysFile;
/** The v1 client of each tenant. */
let callA: ReturnType<typeof jsonCall>;
let callB: ReturnType<typeof jsonCall>;

test.before(async () => {
  keys = await KeysFile.create([
    { id: 'tenant-a', key: 'key-of-tenant-a-0123456789', maxKernels: 6 },
    { id: 'tenant-b', key: 'key-of-tenant-b-0123456789', maxKernels: 6 },
  ]);
  // A short flush window: the interrupted loop is seen ending through "continue".
  svc = await startTestService({ authToken: 'complete-admin-token', apiKeysFile: keys.file, flushWindowMs: 1000, completeTimeoutMs: COMPLETE_TIMEOUT_MS } as any);
  callA = jsonCall(svc.url, A);
  callB = jsonCall(svc.url, B);
});

test.after.always(async () => {
  await svc?.stop();
  await keys?.remove();
});

const create = (lang: string, who = A) => createKernel((method, route, body) => svc.call(method, route, body, who), { lang });

const complete = (id: string, body: unknown, who = A) => svc.call('POST', `/v1/kernel/${id}/complete`, body, who);
const interrupt = (id: string, who = A) => svc.call('POST', `/v1/kernel/${id}/interrupt`, undefined, who);
const remove = (id: string, who = A) => svc.call('DELETE', `/v1/kernel/${id}`, undefined, who);

test.serial('python3 completes "import o" and "os.pa" with the span the matches replace', async (t) => {
  t.timeout(120_000);
  const id = await create('python3');
  try {
    const imports = await complete(id, { code: 'import o', options: { row: 0, col: 8, line: 'import o', post: '' } });
    t.is(imports.status, 200, JSON.stringify(imports.body));
    t.true(imports.body.result.includes('os'), JSON.stringify(imports.body.result).slice(0, 300));
    t.true(imports.body.result.every((m: string) => m.startsWith('o')), 'every module offered starts with "o"');
    t.is(imports.body.cursorStart, 7);
    t.is(imports.body.cursorEnd, 8);

    // Code after the cursor (post) is part of the cell and does not move the cursor.
    const attrs = await complete(id, { code: 'import os\nos.pa', options: { row: 1, col: 5, line: 'os.pa', post: '\nprint(1)\n' } });
    t.is(attrs.status, 200, JSON.stringify(attrs.body));
    t.true(attrs.body.result.includes('os.path') || attrs.body.result.includes('path'), JSON.stringify(attrs.body.result));
    t.true(attrs.body.result.includes('os.pardir') || attrs.body.result.includes('pardir'), JSON.stringify(attrs.body.result));
    // ipykernel replaces the whole dotted name ("os.pa", from offset 10) or the attribute alone (from 13).
    const replaced = 'import os\nos.pa'.slice(attrs.body.cursorStart, attrs.body.cursorEnd);
    t.true(replaced === 'os.pa' || replaced === 'pa', replaced);
    t.is(attrs.body.cursorEnd, 15);

    // Cursor offsets count code points, as Jupyter does: an emoji before the cursor is one.
    const unicode = await complete(id, { code: 's = "😀"; import o' });
    t.is(unicode.status, 200);
    t.is(unicode.body.cursorEnd, [...'s = "😀"; import o'].length);

    // Nothing to complete is an empty list, not an error.
    const none = await complete(id, { code: 'zzz_no_such_name_q' });
    t.is(none.status, 200);
    t.deepEqual(none.body.result, []);
  } finally {
    await remove(id);
  }
});

test.serial('a runner language answers with an empty list at the cursor', async (t) => {
  t.timeout(120_000);
  const id = await create('javascript');
  try {
    const answer = await complete(id, { code: 'console.lo', options: { post: '' } });
    t.is(answer.status, 200, JSON.stringify(answer.body));
    t.deepEqual(answer.body, { result: [], cursorStart: 10, cursorEnd: 10 });
  } finally {
    await remove(id);
  }
});

test.serial('complete and interrupt on an unknown or deleted kernel are the unknown-kernel 404', async (t) => {
  t.timeout(120_000);
  const unknown = await complete(UNKNOWN, { code: 'x' });
  t.is(unknown.status, 404);
  t.regex(unknown.body.detail, /no kernel with id/);
  t.is((await interrupt(UNKNOWN)).status, 404);
  const id = await create('python3');
  t.is((await remove(id)).status, 204);
  const dead = await complete(id, { code: 'import o' });
  t.is(dead.status, 404, JSON.stringify(dead.body));
  t.regex(dead.body.detail, /kernel .* is gone \(deleted\)|no kernel with id/);
  t.is((await interrupt(id)).status, 404);
  const badId = await complete('not-a-kernel', { code: 'x' });
  t.is(badId.status, 400);
});

test.serial('bad complete bodies are 400s that say what to fix', async (t) => {
  t.timeout(120_000);
  const id = await create('python3');
  try {
    const cases: [unknown, RegExp][] = [
      [{}, /code is required/],
      [{ code: 5 }, /code must be a string/],
      [{ code: 'x', options: { row: -1 } }, /options\.row must be at least 0/],
      [{ code: 'x', options: { col: 'a' } }, /options\.col must be a whole number/],
      [{ code: 'x', options: { cursor: 1 } }, /unknown field "cursor" in options/],
      [{ code: 'x', extra: true }, /unknown field "extra"/],
      [{ code: 'x'.repeat(MAX_COMPLETE_CODE_CHARS + 1) }, /code is too long/],
      [{ code: 'x'.repeat(200_000), options: { post: 'y'.repeat(100_000) } }, /together are too long/],
      [[], /body must be a JSON object/],
    ];
    for (const [body, detail] of cases) {
      const answer = await complete(id, body);
      t.is(answer.status, 400, JSON.stringify(body).slice(0, 80));
      t.regex(answer.body.detail, detail);
    }
    // The kernel is fine afterwards.
    t.is((await complete(id, { code: 'import o' })).status, 200);
  } finally {
    await remove(id);
  }
});

test.serial('an endless loop is interrupted: the query ends as interrupted, the kernel keeps its variables and answers the next query', async (t) => {
  t.timeout(180_000);
  const id = await create('python3');
  try {
    t.is((await runToEnd(callA, id, { mode: 'query', code: 'kept = 41' })).status, 'finished');
    const looping = runToEnd(callA, id, { mode: 'query', code: 'while True: pass' });
    await whenBusy(callA, id);
    // Past one flush window: the client is continuing when the interrupt comes.
    await sleep(1500);
    const interrupted = await interrupt(id);
    t.is(interrupted.status, 204);
    t.is(interrupted.body, undefined);
    const outcome = await looping;
    t.is(outcome.status, 'finished', outcome.text);
    t.is(outcome.exitCode, 130);
    t.regex(outcome.text, /KeyboardInterrupt/);
    t.regex(outcome.text, /\[interrupted\]\n$/);
    t.true(outcome.results.length > 1, 'the client saw "continued" before the end');

    const next = await runToEnd(callA, id, { mode: 'query', code: 'print(kept + 1)' });
    t.is(next.status, 'finished');
    t.is(next.exitCode, 0, JSON.stringify(next.results));
    t.is(next.text, '42\n');
  } finally {
    await remove(id);
  }
});

test.serial('an interrupted run nobody continues does not take its kernel along at its time limit', async (t) => {
  t.timeout(120_000);
  const created = await svc.call('POST', '/v1/kernel/create', { lang: 'python3', resourceLimits: { timeout: 3000 } }, A);
  t.is(created.status, 201);
  const id = created.body.kernelId as string;
  try {
    // Several times: a query sent right after the 204 must run, never be aborted as one that reached
    // ipykernel while it was still stopping the interrupted code (stop_on_error).
    for (let round = 1; round <= 3; round++) {
      const runId = round === 1 ? 'left-behind' : `loop-${round}`;
      const first = await svc.call('POST', `/v1/kernel/${id}`, { mode: 'query', code: `kept = ${round}\nwhile True: pass`, runId }, A);
      t.is(first.body.result.status, 'continued');
      t.is((await interrupt(id)).status, 204);
      // The client starts something else instead of continuing the interrupted run.
      const next = await runToEnd(callA, id, { mode: 'query', code: 'print(kept)' });
      t.is(next.text, `${round}\n`, JSON.stringify(next.results));
    }
    await sleep(4500);
    const info = await svc.call('GET', `/v1/kernel/${id}`, undefined, A);
    t.is(info.status, 200, JSON.stringify(info.body));
    const late = await svc.call('POST', `/v1/kernel/${id}`, { mode: 'continue', runId: 'left-behind' }, A);
    t.is(late.body.result.status, 'finished');
    t.is(late.body.result.exitCode, 130);
  } finally {
    await remove(id);
  }
});

test.serial('a completion on a kernel busy running code times out with a 503, and only a few wait at once', async (t) => {
  t.timeout(180_000);
  const id = await create('python3');
  try {
    const looping = runToEnd(callA, id, { mode: 'query', code: 'while True: pass' });
    await whenBusy(callA, id);
    // ipykernel answers shell requests one at a time: the completion waits behind the loop, up to the
    // timeout; more than a few at once are refused instead of queued.
    const completions = await Promise.all(Array.from({ length: MAX_PENDING_COMPLETIONS + 2 }, () => complete(id, { code: 'import o' })));
    const statuses = completions.map((c) => c.status);
    t.is(statuses.filter((s) => s === 503).length, MAX_PENDING_COMPLETIONS, statuses.join(' '));
    t.is(statuses.filter((s) => s === 429).length, 2, statuses.join(' '));
    t.regex(completions.find((c) => c.status === 503)!.body.detail, new RegExp(`did not answer the completion within ${COMPLETE_TIMEOUT_MS} ms`));
    t.regex(completions.find((c) => c.status === 429)!.body.detail, /wait for one before sending another/);
    t.is((await interrupt(id)).status, 204);
    t.is((await looping).exitCode, 130);
    // Once the loop is gone, the kernel completes again; nothing was left waiting in the service.
    await sleep(500);
    const again = await complete(id, { code: 'import o' });
    t.is(again.status, 200, JSON.stringify(again.body));
    t.true(again.body.result.includes('os'));
  } finally {
    await remove(id);
  }
});

test.serial('an interrupt of an idle kernel is 204 and harmless', async (t) => {
  t.timeout(120_000);
  const id = await create('python3');
  try {
    t.is((await runToEnd(callA, id, { mode: 'query', code: 'kept = "still here"' })).status, 'finished');
    t.is((await interrupt(id)).status, 204);
    t.is((await interrupt(id)).status, 204);
    const next = await runToEnd(callA, id, { mode: 'query', code: 'print(kept)' });
    t.is(next.status, 'finished');
    t.is(next.exitCode, 0, next.text);
    t.is(next.text, 'still here\n');
    t.is((await svc.call('GET', `/v1/kernel/${id}`, undefined, A)).body.state, 'idle');
  } finally {
    await remove(id);
  }
});

test.serial('a tenant cannot complete or interrupt another tenant\'s kernel: the 404 of an unknown id, the kernel untouched', async (t) => {
  t.timeout(120_000);
  const id = await create('python3', B);
  try {
    const looping = runToEnd(callB, id, { mode: 'query', code: 'import time\nfor i in range(6): time.sleep(0.5)\nprint("done")' });
    await whenBusy(callB, id);
    const unknown = await complete(UNKNOWN, { code: 'x' });
    const foreign = await complete(id, { code: 'import o' }, A);
    t.is(foreign.status, 404);
    t.is(foreign.body.detail, unknown.body.detail.replace(UNKNOWN, id));
    const foreignInterrupt = await interrupt(id, A);
    t.is(foreignInterrupt.status, 404);
    t.is(foreignInterrupt.body.detail, (await interrupt(UNKNOWN)).body.detail.replace(UNKNOWN, id));
    const outcome = await looping;
    t.is(outcome.status, 'finished');
    t.is(outcome.exitCode, 0, 'B\'s run was not interrupted');
    t.is(outcome.text, 'done\n');
    t.is((await complete(id, { code: 'import o' }, B)).status, 200, 'its owner completes');
    // No token at all is refused before anything else.
    t.is((await svc.call('POST', `/v1/kernel/${id}/complete`, { code: 'x' })).status, 401);
    t.is((await svc.call('POST', `/v1/kernel/${id}/interrupt`)).status, 401);
  } finally {
    await remove(id, B);
  }
});

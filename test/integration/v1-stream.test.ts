/**
 * v1 streaming execution (`GET /v1/stream/kernel/:id/execute`) against a real Docker engine and store,
 * with two tenants: output pushed while the run is still going (query and batch), input() answered on the
 * socket, runs one after the other on one socket and a second one refused while the first runs, a client
 * that goes away mid-run interrupting it (the kernel keeps its variables, the loop stops), every kind of
 * malformed frame answered with an error frame (an oversized one with close 1009) and the socket and
 * kernel usable after it, the handshake's token, tenant and Origin checks, and a revoked key losing its socket.
 */
import test from 'ava';
import { startTestService, type TestService } from '../helpers/service.js';
import { auth, KeysFile } from '../helpers/tenant-keys.js';
import { jsonCall } from '../helpers/http-client.js';
import { createKernel, runToEnd } from '../helpers/v1-client.js';
import { StreamClient, streamUrl, textOf } from '../helpers/v1-stream.js';
import { eventually, sleep } from '../helpers/wait.js';

const KEY_A = 'stream-key-of-tenant-a-0123456789';
const KEY_B = 'stream-key-of-tenant-b-0123456789';
const KEY_C = 'stream-key-of-tenant-c-0123456789';
const KEY_D = 'stream-key-of-tenant-d-0123456789';
const KEYS = [
  { id: 'tenant-a', key: KEY_A, maxKernels: 6 },
  { id: 'tenant-b', key: KEY_B, maxKernels: 6 },
  { id: 'tenant-c', key: KEY_C, maxKernels: 2 },
  // Requests per window: its create, a handshake and two runs.
  { id: 'tenant-d', key: KEY_D, maxKernels: 1, rateLimit: 4 },
];
const A = auth(KEY_A);
const B = auth(KEY_B);
const MAX_BODY = 256 * 1024;

let svc: TestService;
let keys: KeysFile;
let callA: ReturnType<typeof jsonCall>;
let kernel: string;

test.before(async () => {
  keys = await KeysFile.create(KEYS);
  svc = await startTestService({ authToken: 'stream-admin-token', apiKeysFile: keys.file, apiKeysReloadMs: 200, flushWindowMs: 1000, maxBodyBytes: MAX_BODY } as any);
  callA = jsonCall(svc.url, A);
  kernel = await create('python3');
});

test.after.always(async () => {
  await svc?.stop();
  await keys?.remove();
});

const create = (lang: string, who = A) => createKernel((method, route, body) => svc.call(method, route, body, who), { lang });

const open = (kernelId = kernel, headers: Record<string, string> = A) => StreamClient.open(streamUrl(svc.url, kernelId), headers);

/** The handshake's refusal: its status and v1 problem document. */
async function refused(url: string, headers: Record<string, string>): Promise<{ status?: number; body: any }> {
  const error = (await StreamClient.open(url, headers).then(
    (client) => {
      client.close();
      return undefined;
    },
    (e: Error & { status?: number; body?: string }) => e,
  )) as (Error & { status?: number; body?: string }) | undefined;
  return { status: error?.status, body: JSON.parse(error?.body || '{}') };
}

test.serial('output is pushed as it comes: the first print arrives while the run is still going', async (t) => {
  t.timeout(120_000);
  const client = await open();
  try {
    const frames = await client.run({ mode: 'query', code: 'import time\nprint("first", flush=True)\ntime.sleep(4)\nprint("second")', runId: 'stream-1' });
    const first = frames.find((f) => textOf([f]).includes('first'))!;
    const last = frames[frames.length - 1]!;
    t.truthy(first, JSON.stringify(frames));
    t.is(first.status, 'continued', 'the first output comes with the run still going');
    t.is(first.runId, 'stream-1');
    t.false(textOf([first]).includes('second'));
    t.is(last.status, 'finished');
    t.is(last.exitCode, 0);
    t.true(last.at - first.at >= 2500, `first output ${last.at - first.at} ms before the end (the code sleeps 4 s between the prints)`);
    t.is(textOf(frames), 'first\nsecond\n');
    t.deepEqual(Object.keys(last).sort(), ['at', 'console', 'exitCode', 'options', 'runId', 'status']);
  } finally {
    client.close();
  }
});

test.serial('input() is asked for and answered on the socket', async (t) => {
  t.timeout(120_000);
  const client = await open();
  try {
    client.send({ mode: 'query', code: 'name = input("who? ")\nprint("hello", name)' });
    const asking = await client.next((f) => f.status === 'waiting-input', 30_000, 'waiting-input');
    t.deepEqual(asking.console, [['stdout', 'who? ']]);
    t.truthy(asking.runId);
    const from = client.frames.length;
    client.send({ mode: 'input', code: 'Ada', runId: asking.runId });
    const end = await client.next((f) => f.status === 'finished', 30_000, 'finished', from);
    t.is(end.exitCode, 0);
    t.is(textOf(client.frames.slice(from)), 'hello Ada\n');
    t.is(end.runId, asking.runId);
    // Input when nothing asks for it is refused with a reason, and nothing else happens.
    const stray = await client.error({ mode: 'input', code: 'late' });
    t.regex(stray.msg!, /no run is in progress/);
    t.is(stray.error?.status, 400);
  } finally {
    client.close();
  }
});

test.serial('runs follow one another on one socket; a second run while one runs is refused and nothing is lost', async (t) => {
  t.timeout(120_000);
  const client = await open();
  try {
    const set = await client.run({ mode: 'query', code: 'x = 20' });
    t.is(set[set.length - 1]!.status, 'finished');
    const from = client.frames.length;
    client.send({ mode: 'query', code: 'import time\ntime.sleep(2)\nprint(x + 22)', runId: 'long-one' });
    await sleep(300);
    const refusedRun = await client.error({ mode: 'query', code: 'print("never")', runId: 'second' });
    t.is(refusedRun.error?.status, 409);
    t.is(refusedRun.runId, 'second');
    t.regex(refusedRun.msg!, /run long-one is still running on this socket/);
    const end = await client.next((f) => f.runId === 'long-one' && f.status === 'finished', 30_000, 'the first run\'s end', from);
    t.is(end.exitCode, 0);
    t.is(textOf(client.frames.slice(from).filter((f) => f.runId === 'long-one')), '42\n');
    t.false(textOf(client.frames).includes('never'));
    // The same socket takes the next run, and a raised error is exit code 1.
    const third = await client.run({ mode: 'query', code: '1/0' });
    t.is(third[third.length - 1]!.exitCode, 1);
    t.regex(textOf(third), /ZeroDivisionError/);
  } finally {
    client.close();
  }
});

test.serial('batch mode streams its steps: build-finished, then exec output while it runs', async (t) => {
  t.timeout(120_000);
  const client = await open();
  try {
    const frames = await client.run({
      mode: 'batch',
      options: { files: [{ name: 'main.sh', content: 'echo one\nsleep 3\necho two\n' }], build: 'echo building', exec: 'sh main.sh' },
    });
    const statuses = frames.map((f) => f.status);
    t.true(statuses.includes('build-finished'), statuses.join());
    const one = frames.find((f) => textOf([f]).includes('one'))!;
    const last = frames[frames.length - 1]!;
    t.is(last.status, 'finished');
    t.is(last.exitCode, 0);
    t.not(one, last, 'the exec step\'s first line comes before its end');
    t.true(last.at - one.at >= 1500, `${last.at - one.at} ms`);
    t.is(textOf(frames), 'building\none\ntwo\n');
  } finally {
    client.close();
  }
});

test.serial('a client that goes away mid-run interrupts it: the loop stops, the kernel keeps its variables', async (t) => {
  t.timeout(120_000);
  const client = await open();
  const set = await client.run({ mode: 'query', code: 'kept = 41\nticks = 0' });
  t.is(set[set.length - 1]!.status, 'finished');
  client.send({ mode: 'query', code: 'import time\nwhile True:\n    ticks += 1\n    print("tick", flush=True)\n    time.sleep(0.05)' });
  await client.next((f) => textOf([f]).includes('tick'), 30_000, 'the loop running');
  client.ws.terminate();
  // The loop stopped: the next query, sent at once, runs behind it, and the ticks no longer grow.
  const after = await runToEnd(callA, kernel, { mode: 'query', code: 'a = ticks\nimport time\ntime.sleep(0.5)\nprint(kept + 1, ticks == a, a > 0)' });
  t.is(after.status, 'finished', after.text);
  t.is(after.text, '42 True True\n');
  t.is((await svc.call('GET', `/v1/kernel/${kernel}`, undefined, A)).body.state, 'idle');
});

test.serial('a streaming client gone during a batch step interrupts the step', async (t) => {
  t.timeout(120_000);
  const client = await open();
  client.send({ mode: 'batch', options: { exec: 'echo started; sleep 60; echo never' } });
  await client.next((f) => textOf([f]).includes('started'), 30_000, 'the step running');
  client.ws.terminate();
  // No sleep of the step is left in the container.
  const gone = await eventually(async () => {
    const ps = await runToEnd(callA, kernel, { mode: 'batch', options: { exec: 'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\000" " "' } });
    return ps.status === 'finished' && !ps.text.includes('sleep 60');
  }, 15_000, 500);
  t.true(gone, 'the step\'s sleep was stopped');
});

test.serial('malformed frames get an error frame each; the socket and the kernel stay usable', async (t) => {
  t.timeout(120_000);
  const client = await open();
  try {
    const cases: [unknown, RegExp][] = [
      ['not json', /the frame is not JSON/],
      ['{"mode": "query", "code": ', /the frame is not JSON/],
      ['[1, 2]', /frame must be a JSON object, got an array/],
      ['"text"', /frame must be a JSON object/],
      ['null', /frame must be a JSON object, got null/],
      [{ code: 'print(1)' }, /frame\.mode is required/],
      [{ mode: 'shell', code: 'x' }, /frame\.mode must be one of "query", "batch", "input"/],
      [{ mode: 'continue', runId: 'x' }, /mode "continue" is not used on the streaming socket/],
      [{ mode: 'query' }, /frame\.code is required in mode "query"/],
      [{ mode: 'query', code: 5 }, /frame\.code must be a string, got number/],
      [{ mode: 'query', code: 'x', runId: 'bad id!' }, /frame\.runId has an invalid format/],
      [{ mode: 'query', code: 'x', runId: 7 }, /frame\.runId must be a string/],
      [{ mode: 'query', code: 'x', extra: 1 }, /unknown field "extra" in frame/],
      [{ mode: 'query', code: 'x', options: [] }, /frame\.options must be a JSON object/],
      [{ mode: 'batch', options: { exec: 5 } }, /options\.exec must be a string/],
      [{ mode: 'batch', options: { files: [{ name: '../x', content: '' }] } }, /has a "\.\." segment/],
      [{ mode: 'input' }, /frame\.code is required in mode "input"/],
      [Buffer.from([0x01, 0x02, 0x03]), /binary frames are not understood/],
    ];
    for (const [frame, message] of cases) {
      const error = await client.error(frame);
      t.regex(error.msg!, message, String(frame));
      t.is(error.error?.status, 400, String(frame));
      t.is(error.error?.type, 'urn:polykernel:error:invalid_input');
    }
    // A text frame whose bytes are not UTF-8 (ws sends a Buffer as binary unless told otherwise).
    const from = client.frames.length;
    client.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    t.regex((await client.next((f) => f.status === 'error', 10_000, 'the UTF-8 error', from)).msg!, /not UTF-8/);
    // A runId is echoed when the frame names a well-formed one.
    t.is((await client.error({ mode: 'query', runId: 'named-run' })).runId, 'named-run');
    t.is(client.closed, undefined, 'the socket is still open');
    const frames = await client.run({ mode: 'query', code: 'print(6 * 7)' });
    t.is(textOf(frames), '42\n');

    // A frame over POLYKERNEL_MAX_BODY_BYTES closes the socket with 1009 and a reason; the kernel is fine.
    client.send({ mode: 'query', code: 'x'.repeat(MAX_BODY + 10) });
    const closed = await client.whenClosed();
    t.is(closed.code, 1009);
    t.regex(closed.reason, new RegExp(`frame larger than ${MAX_BODY} bytes`));
    const again = await open();
    try {
      t.is(textOf(await again.run({ mode: 'query', code: 'print(7 * 6)' })), '42\n');
    } finally {
      again.close();
    }
  } finally {
    client.close();
  }
});

test.serial('a flood of frames is read at a bounded rate and every one is answered in order', async (t) => {
  t.timeout(120_000);
  const client = await open();
  try {
    const count = 300;
    const started = Date.now();
    // All at once: they arrive in a few reads, and are handled within the budget all the same.
    for (let i = 0; i < count; i++) client.send({ mode: 'input', code: `${i}`, runId: `flood-${i}` });
    const ok = await eventually(() => client.frames.length >= count, 60_000, 50);
    t.true(ok, `${client.frames.length} answers`);
    t.true(client.frames.every((f) => f.status === 'error'));
    // Answered in the order sent, none dropped.
    t.deepEqual(client.frames.map((f) => f.runId), Array.from({ length: count }, (_, i) => `flood-${i}`));
    // 100 at once, then 100 a second: 300 take about 2 s however fast they are sent.
    t.true(Date.now() - started >= 1500, `${Date.now() - started} ms for ${count} frames`);
    t.is(textOf(await client.run({ mode: 'query', code: 'print("still here")' })), 'still here\n');
  } finally {
    client.close();
  }
});

test.serial('the handshake checks the token, the tenant, the kernel id and the Origin as every route does', async (t) => {
  t.timeout(120_000);
  const url = streamUrl(svc.url, kernel);
  const noToken = await refused(url, {});
  t.is(noToken.status, 401);
  t.regex(noToken.body.detail, /authentication required/);
  t.is(noToken.body.type, 'urn:polykernel:error:unauthorized');
  t.is((await refused(url, auth('wrong-token-0123456789'))).status, 401);
  t.is((await refused(`${url}?token=wrong-token-0123456789`, {})).status, 401);
  // Another tenant's kernel answers as an unknown one.
  const foreign = await refused(url, B);
  t.is(foreign.status, 404);
  t.regex(foreign.body.detail, /no kernel with id/);
  t.is((await refused(streamUrl(svc.url, '00000000-0000-4000-8000-000000000000'), A)).status, 404);
  t.is((await refused(streamUrl(svc.url, 'not-a-kernel'), A)).status, 400);
  const origin = await refused(url, { ...A, origin: 'https://evil.example' });
  t.is(origin.status, 403);
  t.regex(origin.body.detail, /cross-origin request refused/);
  // The token in the query string works as on the channels socket; the admin token sees every kernel.
  const byQuery = await StreamClient.open(`${url}?token=${KEY_A}`);
  t.is(textOf(await byQuery.run({ mode: 'query', code: 'print("by query")' })), 'by query\n');
  byQuery.close();
  const admin = await StreamClient.open(url, auth('stream-admin-token'));
  t.is(textOf(await admin.run({ mode: 'query', code: 'print("admin")' })), 'admin\n');
  admin.close();
  // The same origin as the service is a page of its own.
  const host = new URL(svc.url).host;
  const sameOrigin = await StreamClient.open(url, { ...A, origin: `http://${host}` });
  t.is(textOf(await sameOrigin.run({ mode: 'query', code: 'print("same origin")' })), 'same origin\n');
  sameOrigin.close();
});

test.serial('a kernel deleted under the socket closes it with the reason; an exec-timeout run says so first', async (t) => {
  t.timeout(120_000);
  const short = (await svc.call('POST', '/v1/kernel/create', { lang: 'python3', resourceLimits: { timeout: 2000 } }, A)).body.kernelId as string;
  const client = await open(short);
  const frames = await client.run({ mode: 'query', code: 'while True: pass' }, 60_000);
  t.is(frames[frames.length - 1]!.status, 'exec-timeout');
  const closed = await client.whenClosed(15_000);
  t.is(closed.code, 1000);
  t.regex(closed.reason, /kernel removed/);

  const other = await create('python3');
  const idle = await open(other);
  t.is((await svc.call('DELETE', `/v1/kernel/${other}`, undefined, A)).status, 204);
  t.regex((await idle.whenClosed()).reason, /kernel removed: deleted/);
});

test.serial('a key revoked while its socket is open loses the socket (1008) and its next handshake', async (t) => {
  t.timeout(120_000);
  const own = await create('python3', auth(KEY_C));
  const client = await open(own, auth(KEY_C));
  t.is(textOf(await client.run({ mode: 'query', code: 'print("before")' })), 'before\n');
  await keys.write(KEYS.filter((key) => key.id !== 'tenant-c'));
  const closed = await client.whenClosed(10_000);
  t.is(closed.code, 1008);
  t.regex(closed.reason, /API key revoked/);
  t.is((await refused(streamUrl(svc.url, own), auth(KEY_C))).status, 401);
  await keys.write(KEYS);
});

test.serial('each run counts against the key\'s rate limit, as an execute call over HTTP does', async (t) => {
  t.timeout(120_000);
  const own = await create('python3', auth(KEY_D));
  const client = await open(own, auth(KEY_D));
  try {
    t.is(textOf(await client.run({ mode: 'query', code: 'print(1)' })), '1\n');
    t.is(textOf(await client.run({ mode: 'query', code: 'print(2)' })), '2\n');
    const limited = await client.error({ mode: 'query', code: 'print(3)', runId: 'over' });
    t.is(limited.error?.status, 429);
    t.is(limited.runId, 'over');
    t.regex(limited.msg!, /rate limit of key "tenant-d" reached \(4 requests per \d+ s\)/);
    t.false(textOf(client.frames).includes('3'));
    t.is(client.closed, undefined, 'the socket stays open');
  } finally {
    client.close();
  }
});

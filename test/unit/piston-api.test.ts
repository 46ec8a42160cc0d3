/**
 * Piston's HTTP and WebSocket API over a scripted engine: what piston-client (unchanged) sends and reads,
 * Piston's error bodies and status codes, the token on these routes, an abandoned request aborting its
 * run, and the /connect protocol with Piston's messages and close codes. The real engine's behaviour is
 * proven in test/integration/piston-*.test.ts.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import test from 'ava';
import piston from 'piston-client';
import { createApp } from '../../src/app.js';
import { PistonConnect } from '../../src/api/piston/connect.js';
import { loadConfig, type Config } from '../../src/config/index.js';
import { unavailable } from '../../src/errors.js';
import { createLogger } from '../../src/logger.js';
import { FakeJudge, measured } from '../helpers/piston-fake-judge.js';
import { openPiston } from '../helpers/piston-ws.js';
import { KeysFile } from '../helpers/tenant-keys.js';

interface Served {
  url: string;
  judge: FakeJudge;
  /** Lines the service logged at error level. */
  errors: string[];
  close(): Promise<void>;
}

async function serve(judge = new FakeJudge(), overrides: Partial<Config> = {}): Promise<Served> {
  const config = loadConfig({}, { port: 0, ip: '127.0.0.1', logLevel: 'silent', ...overrides });
  const errors: string[] = [];
  const log = createLogger('error', (line) => errors.push(line));
  // The Piston routes touch neither kernels nor the store; the other surfaces are mounted but unused.
  const none = {} as never;
  const app = createApp({ config, log, kernels: none, queries: none, store: none, judge });
  const connect = new PistonConnect(judge, none, config, log);
  const server = http.createServer(app.callback());
  server.on('upgrade', (req, socket, head) => (PistonConnect.handles(req) ? connect.handleUpgrade(req, socket, head) : socket.destroy()));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    judge,
    errors,
    close: async () => {
      connect.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const post = (url: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
  fetch(`${url}/api/v2/execute`, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) }).then(async (r) => ({ status: r.status, body: await r.json() as any }));

test('piston-client lists the runtimes and executes through them, unchanged', async (t) => {
  const s = await serve();
  t.teardown(s.close);
  const client = piston({ server: s.url });
  const runtimes = await client.runtimes();
  t.deepEqual(runtimes, [
    { language: 'python', version: '3.11.2', aliases: ['py', 'py3', 'python3'] },
    { language: 'c', version: '12.2.0', aliases: ['gcc'] },
  ]);
  const result = await client.execute('python', 'print("ok")');
  t.deepEqual(result, {
    run: { stdout: 'ok\n', stderr: '', output: 'ok\n', code: 0, signal: null, message: null, status: null, cpu_time: 5, wall_time: 7, memory: 2048 * 1024 },
    language: 'python',
    version: '3.11.2',
  });
  // piston-client posts JSON labelled text/plain, with its default args, and picks the listed version.
  const { submission } = s.judge.submissions[0]!;
  t.is(submission.lang, 'python3');
  t.deepEqual(submission.args, ['1', '2', '3']);
  t.deepEqual(submission.files, [{ name: '', content: Buffer.from('print("ok")') }]);
  t.deepEqual(submission.tests, [{ stdin: Buffer.from('\n') }]);
  t.is(submission.limits.wallTimeMs, 3000);
  t.is(submission.compileLimits.wallTimeMs, 10000);
});

test('a compile error answers the compile stage, and as Piston the same stage as run', async (t) => {
  const s = await serve();
  t.teardown(s.close);
  s.judge.answer = async () => ({
    compile: { ok: false, ...measured({ exitCode: 1, stderr: Buffer.from("main.c:1:1: error: unknown type name 'x'\n") }) },
    tests: [],
    verdict: 'compilation_error',
    compilations: 1,
  });
  const { status, body } = await post(s.url, { language: 'c', version: '*', files: [{ name: 'main.c', content: 'x' }] });
  t.is(status, 200);
  t.is(body.compile.code, 1);
  t.is(body.compile.status, 'RE');
  t.regex(body.compile.stderr, /unknown type name/);
  t.deepEqual(body.run, body.compile);
});

test('bad requests are 400s with Piston\'s {message}; unknown routes 404 {message}; a huge body 413', async (t) => {
  const s = await serve(new FakeJudge(), { maxBodyBytes: 4096 });
  t.teardown(s.close);
  t.deepEqual(await post(s.url, { language: 'html', version: '5.0.0', files: [] }), { status: 400, body: { message: 'html-5.0.0 runtime is unknown' } });
  t.deepEqual(await post(s.url, {}), { status: 400, body: { message: 'language is required as a string' } });
  t.deepEqual(await post(s.url, '{"language": '), { status: 400, body: { message: 'request body is not valid JSON: ' + (() => { try { JSON.parse('{"language": '); } catch (e) { return (e as Error).message; } })() } });
  const huge = await post(s.url, { language: 'python', version: '*', files: [{ content: 'x'.repeat(10_000) }] });
  t.is(huge.status, 413);
  t.deepEqual(Object.keys(huge.body), ['message']);
  const missing = await fetch(`${s.url}/api/v2/nothing`);
  t.is(missing.status, 404);
  t.deepEqual(Object.keys((await missing.json()) as object), ['message']);
  const wrongMethod = await fetch(`${s.url}/api/v2/execute`);
  t.is(wrongMethod.status, 405);
  t.deepEqual(Object.keys((await wrongMethod.json()) as object), ['message']);
  t.is(s.judge.submissions.length, 0);
});

test('an engine that is full answers 503 {message}', async (t) => {
  const s = await serve();
  t.teardown(s.close);
  s.judge.answer = async () => {
    throw unavailable('the judge queue is full; retry later');
  };
  t.deepEqual(await post(s.url, { language: 'python', version: '*', files: [{ content: 'x' }] }), { status: 503, body: { message: 'the judge queue is full; retry later' } });
});

test('with a token, Piston\'s routes need it (401 {message}); piston-client sends it as the password of its server URL', async (t) => {
  const s = await serve(new FakeJudge(), { authToken: 's3cret' });
  t.teardown(s.close);
  const refused = await fetch(`${s.url}/api/v2/runtimes`);
  t.is(refused.status, 401);
  t.regex(((await refused.json()) as any).message, /authentication required/);
  t.is((await fetch(`${s.url}/api/v2/runtimes`, { headers: { authorization: 'token s3cret' } })).status, 200);
  const wrong = piston({ server: s.url.replace('http://', 'http://piston:wrong@') });
  t.regex(((await wrong.runtimes()) as any).message, /authentication required/);
  const client = piston({ server: s.url.replace('http://', 'http://piston:s3cret@') });
  t.is((await client.runtimes()).length, 2);
  t.is((await client.execute('python', 'print(1)')).run.stdout, 'ok\n');
  // The WebSocket handshake is checked the same way.
  const noToken = await openPiston(s.url).then(() => 'open', (error: Error) => error.message);
  t.regex(noToken, /401/);
  const socket = await openPiston(s.url, { authorization: 'token s3cret' });
  socket.ws.close();
});

test('a client that leaves before its answer aborts the run', async (t) => {
  const s = await serve();
  t.teardown(s.close);
  let aborted!: () => void;
  const wasAborted = new Promise<void>((resolve) => (aborted = resolve));
  s.judge.answer = (_submission, signal) =>
    new Promise((_resolve, reject) => {
      signal?.addEventListener('abort', () => {
        aborted();
        reject(new Error('aborted'));
      });
    });
  const request = http.request(`${s.url}/api/v2/execute`, { method: 'POST', headers: { 'content-type': 'application/json' } });
  request.on('error', () => undefined);
  request.end(JSON.stringify({ language: 'python', version: '*', files: [{ content: 'while True: pass' }] }));
  while (s.judge.submissions.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
  request.destroy();
  await wasAborted;
  // Not a fault of the service: nothing is logged as one.
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.deepEqual(s.errors, []);
});

test('/connect: init, runtime, stage, stdin echoed, a signal ends the run, exit, 4999', async (t) => {
  const s = await serve();
  t.teardown(s.close);
  const socket = await openPiston(s.url);
  socket.send({ type: 'init', language: 'python', version: '*', files: [{ content: 'while True: print(input().upper())' }] });
  t.deepEqual(await socket.next('runtime'), { type: 'runtime', language: 'python', version: '3.11.2' });
  t.deepEqual(await socket.next('stage'), { type: 'stage', stage: 'run' });
  socket.send({ type: 'data', stream: 'stdin', data: 'hello\n' });
  await socket.next((m) => m.type === 'data' && m.data === 'HELLO\n');
  socket.send({ type: 'data', stream: 'stdin', data: 'wor' });
  socket.send({ type: 'data', stream: 'stdin', data: 'ld\n' });
  await socket.next((m) => m.type === 'data' && m.data === 'WORLD\n');
  socket.send({ type: 'signal', signal: 'SIGTERM' });
  t.deepEqual(await socket.next('exit'), { type: 'exit', stage: 'run', code: null, signal: 'SIGTERM', status: 'SG', message: 'Caught fatal signal 15' });
  t.deepEqual(await socket.closed, { code: 4999, reason: 'Job Completed' });
  t.deepEqual(s.judge.interactives[0]!.run!.signals, ['SIGTERM']);
  t.true(s.judge.interactives[0]!.closed);
});

test('/connect: a compiled language announces its compile stage; a failed compile ends after its exit', async (t) => {
  const s = await serve();
  t.teardown(s.close);
  s.judge.compile = { ok: false, ...measured({ exitCode: 1, stderr: Buffer.from('error: x\n') }) };
  const socket = await openPiston(s.url);
  socket.send({ type: 'init', language: 'c', version: '*', files: [{ content: 'x' }] });
  await socket.next('runtime');
  t.deepEqual(await socket.next('stage'), { type: 'stage', stage: 'compile' });
  t.deepEqual(await socket.next('exit'), { type: 'exit', stage: 'compile', code: 1, signal: null, status: 'RE', message: 'Exited with error status 1' });
  t.is((await socket.closed).code, 4999);
  t.deepEqual(socket.messages.filter((m) => m.type === 'data'), [{ type: 'data', stream: 'stderr', data: 'error: x\n' }]);
  t.false(socket.messages.some((m) => m.type === 'stage' && m.stage === 'run'));
});

test('/connect: stdin and a signal sent while the program compiles reach the run', async (t) => {
  const s = await serve();
  t.teardown(s.close);
  s.judge.compile = { ok: true, ...measured() };
  s.judge.compileDelayMs = 200;
  const socket = await openPiston(s.url);
  socket.send({ type: 'init', language: 'c', version: '*', files: [{ content: 'int main(){}' }] });
  socket.send({ type: 'data', stream: 'stdin', data: 'early\n' });
  await socket.next((m) => m.type === 'data' && m.data === 'EARLY\n');
  t.deepEqual(socket.messages.filter((m) => m.type === 'stage').map((m) => m.stage), ['compile', 'run']);
  t.deepEqual(socket.messages.find((m) => m.type === 'exit'), { type: 'exit', stage: 'compile', code: 0, signal: null, status: null, message: null });
  socket.send({ type: 'signal', signal: 'SIGKILL' });
  t.is((await socket.next((m) => m.type === 'exit' && m.stage === 'run')).signal, 'SIGKILL');
});

test('/connect: Piston\'s close codes for out-of-order and bad messages', async (t) => {
  const s = await serve();
  t.teardown(s.close);
  const init = { type: 'init', language: 'python', version: '*', files: [{ content: 'x' }] };

  const quiet = await openPiston(s.url);
  t.deepEqual(await quiet.closed, { code: 4001, reason: 'Initialization Timeout' });

  const early = await openPiston(s.url);
  early.send({ type: 'data', stream: 'stdin', data: 'x' });
  t.deepEqual(await early.closed, { code: 4003, reason: 'Not yet initialized' });

  const earlySignal = await openPiston(s.url);
  earlySignal.send({ type: 'signal', signal: 'SIGKILL' });
  t.is((await earlySignal.closed).code, 4003);

  const twice = await openPiston(s.url);
  twice.send(init);
  await twice.next('stage');
  twice.send(init);
  t.deepEqual(await twice.closed, { code: 4000, reason: 'Already Initialized' });

  const stdout = await openPiston(s.url);
  stdout.send(init);
  stdout.send({ type: 'data', stream: 'stdout', data: 'x' });
  t.deepEqual(await stdout.closed, { code: 4004, reason: 'Can only write to stdin' });

  const badSignal = await openPiston(s.url);
  badSignal.send(init);
  badSignal.send({ type: 'signal', signal: 'SIGNOPE' });
  t.deepEqual(await badSignal.closed, { code: 4005, reason: 'Invalid signal' });

  for (const frame of ['not json', '[1,2]', 'null', JSON.stringify({ ...init, language: 'html' }), JSON.stringify({ ...init, files: 'x' })]) {
    const bad = await openPiston(s.url);
    bad.send(frame);
    const error = await bad.next('error');
    t.is(typeof error.message, 'string', frame);
    t.deepEqual(await bad.closed, { code: 4002, reason: 'Notified Error' }, frame);
  }
  const unknownRuntime = await openPiston(s.url);
  unknownRuntime.send({ ...init, language: 'html', version: '5.0.0' });
  t.deepEqual(await unknownRuntime.next('error'), { type: 'error', message: 'html-5.0.0 runtime is unknown' });

  const nonString = await openPiston(s.url);
  nonString.send(init);
  nonString.send({ type: 'data', stream: 'stdin', data: 5 });
  t.deepEqual(await nonString.next('error'), { type: 'error', message: 'data must be a string' });
  t.is((await nonString.closed).code, 4002);

  // Other message types are ignored, as Piston does.
  const other = await openPiston(s.url);
  other.send({ type: 'hello' });
  other.send(init);
  await other.next('stage');
  other.send({ type: 'signal', signal: 'SIGINT' });
  t.is((await other.closed).code, 4999);
});

test('/connect: a client that disconnects mid-run ends the run and closes its sandbox', async (t) => {
  const s = await serve();
  t.teardown(s.close);
  const socket = await openPiston(s.url);
  socket.send({ type: 'init', language: 'python', version: '*', files: [{ content: 'x' }] });
  await socket.next('stage');
  socket.ws.terminate();
  const deadline = Date.now() + 5000;
  while (!s.judge.interactives[0]?.closed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  t.true(s.judge.interactives[0]!.closed);
  t.true(s.judge.interactives[0]!.run!.ended);
  // A run ended because its client left is no fault of the service.
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.deepEqual(s.errors, []);
});

test('/connect: a client that leaves while its program compiles has the sandbox closed once the compile ends', async (t) => {
  const s = await serve();
  t.teardown(s.close);
  s.judge.compile = { ok: true, ...measured() };
  s.judge.compileDelayMs = 300;
  const socket = await openPiston(s.url);
  socket.send({ type: 'init', language: 'c', version: '*', files: [{ content: 'x' }] });
  await socket.next('stage');
  socket.ws.terminate();
  const deadline = Date.now() + 5000;
  while (!s.judge.interactives[0]?.closed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  t.true(s.judge.interactives[0]!.closed);
});

test('/connect: a client that does not read a flood is closed (1008) and its run ended, not buffered without bound', async (t) => {
  const s = await serve(new FakeJudge(), { wsMaxBufferedBytes: 1024 * 1024 });
  t.teardown(s.close);
  const chunk = Buffer.alloc(64 * 1024, 'y');
  let flooding = true;
  s.judge.onRun = (run) => {
    const pump = () => {
      if (!flooding || run.ended) return;
      for (let i = 0; i < 16; i++) run.emit('stdout', chunk);
      setImmediate(pump);
    };
    pump();
  };
  t.teardown(() => void (flooding = false));
  const socket = await openPiston(s.url);
  socket.send({ type: 'init', language: 'python', version: '*', files: [{ content: 'x' }] });
  await socket.next('stage');
  // Never read again: TCP pushes back and the service's queue for this client grows.
  (socket.ws as unknown as { _socket: Socket })._socket.pause();
  const deadline = Date.now() + 20_000;
  while (!s.judge.interactives[0]?.closed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  t.true(s.judge.interactives[0]!.closed, 'the run is ended');
  (socket.ws as unknown as { _socket: Socket })._socket.resume();
  const closed = await socket.closed;
  t.true(closed.code === 1008 || closed.code === 1006, `closed with ${closed.code}`);
});

test('/connect: stdin queued while the program compiles is bounded (an error and 4002 past it)', async (t) => {
  const s = await serve();
  t.teardown(s.close);
  s.judge.compile = { ok: true, ...measured() };
  s.judge.compileDelayMs = 2000;
  const socket = await openPiston(s.url);
  socket.send({ type: 'init', language: 'c', version: '*', files: [{ content: 'x' }] });
  const chunk = 'z'.repeat(256 * 1024);
  for (let i = 0; i < 5; i++) socket.send({ type: 'data', stream: 'stdin', data: chunk });
  t.regex((await socket.next('error')).message, /bytes of stdin may be sent before the program runs/);
  t.is((await socket.closed).code, 4002);
  // The compile it was waiting for ends in a closed sandbox.
  const deadline = Date.now() + 5000;
  while (!s.judge.interactives[0]?.closed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  t.true(s.judge.interactives[0]!.closed);
});

test('/connect: stdin the sandbox refuses (its program does not read it) is an error and 4002, not a crash', async (t) => {
  const s = await serve();
  t.teardown(s.close);
  s.judge.onRun = (run) => (run.stdinBound = 1000);
  const socket = await openPiston(s.url);
  socket.send({ type: 'init', language: 'python', version: '*', files: [{ content: 'x' }] });
  await socket.next('stage');
  await new Promise((resolve) => setTimeout(resolve, 50));
  socket.send({ type: 'data', stream: 'stdin', data: 'q'.repeat(2000) });
  t.regex((await socket.next('error')).message, /has not read yet/);
  t.is((await socket.closed).code, 4002);
  const deadline = Date.now() + 5000;
  while (!s.judge.interactives[0]?.closed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  t.true(s.judge.interactives[0]!.closed);
});

test('the public API\'s paths (/api/v2/piston/...) answer the same', async (t) => {
  const s = await serve();
  t.teardown(s.close);
  const runtimes = await fetch(`${s.url}/api/v2/piston/runtimes`);
  t.is(runtimes.status, 200);
  t.is(((await runtimes.json()) as unknown[]).length, 2);
  const executed = await fetch(`${s.url}/api/v2/piston/execute`, { method: 'POST', body: JSON.stringify({ language: 'python', version: '*', files: [{ content: 'x' }] }) });
  t.is(((await executed.json()) as any).run.stdout, 'ok\n');
});

test('/connect: a session opened with an API key that is revoked is closed (1008) and its run ended', async (t) => {
  const keys = await KeysFile.create([{ id: 'a', key: 'piston-key-a-0123456789' }, { id: 'b', key: 'piston-key-b-0123456789' }]);
  t.teardown(() => keys.remove());
  const s = await serve(new FakeJudge(), { apiKeysFile: keys.file, apiKeysReloadMs: 100 });
  t.teardown(s.close);
  const init = { type: 'init', language: 'python', version: '*', files: [{ content: 'x' }] };
  const revoked = await openPiston(s.url, { authorization: 'token piston-key-a-0123456789' });
  const kept = await openPiston(s.url, { authorization: 'token piston-key-b-0123456789' });
  revoked.send(init);
  kept.send(init);
  await revoked.next('stage');
  await kept.next('stage');
  await keys.write([{ id: 'b', key: 'piston-key-b-0123456789' }]);
  t.deepEqual(await revoked.closed, { code: 1008, reason: 'API key revoked' });
  const revokedRun = s.judge.interactives.find((entry) => entry.closed);
  t.truthy(revokedRun, 'the revoked key\'s run is closed');
  // The other key's session goes on.
  kept.send({ type: 'data', stream: 'stdin', data: 'still here\n' });
  await kept.next((m) => m.type === 'data' && m.data === 'STILL HERE\n');
  t.is(s.judge.interactives.filter((entry) => entry.closed).length, 1);
  kept.ws.close();
});

/**
 * Piston's /api/v2/connect WebSocket on the real judge engine: an interactive program echoing stdin lines,
 * a signal sent to it, a compiled program's compile stage, a client that disconnects mid-run (its sandbox
 * is gone afterwards), and malformed frames answered with Piston's error and close, the service unharmed.
 */
import test from 'ava';
import { containersOfInstance } from '../helpers/docker.js';
import { openPiston } from '../helpers/piston-ws.js';
import { startTestService, type TestService } from '../helpers/service.js';
import { eventually } from '../helpers/wait.js';

let svc: TestService;

test.before(async () => {
  svc = await startTestService();
});

test.after.always(async () => {
  await svc?.stop();
});

const ECHO = 'import sys\nfor line in sys.stdin:\n    print(line.strip().upper(), flush=True)\n';

test('an interactive Python program echoes each stdin line; SIGTERM ends it; exit then 4999', async (t) => {
  const socket = await openPiston(svc.url);
  socket.send({ type: 'init', language: 'python', version: '*', files: [{ content: ECHO }], run_timeout: 15000 });
  const runtime = await socket.next('runtime');
  t.is(runtime.language, 'python');
  t.regex(runtime.version, /^3\./);
  t.deepEqual(await socket.next('stage'), { type: 'stage', stage: 'run' });
  socket.send({ type: 'data', stream: 'stdin', data: 'hello\n' });
  await socket.next((m) => m.type === 'data' && m.stream === 'stdout' && socket.stdout().includes('HELLO\n'));
  socket.send({ type: 'data', stream: 'stdin', data: 'second line\n' });
  await socket.next(() => socket.stdout() === 'HELLO\nSECOND LINE\n');
  socket.send({ type: 'signal', signal: 'SIGTERM' });
  const exit = await socket.next('exit');
  t.is(exit.stage, 'run');
  t.is(exit.signal, 'SIGTERM', JSON.stringify(exit));
  t.is(exit.code, null);
  t.deepEqual(await socket.closed, { code: 4999, reason: 'Job Completed' });
});

test('a Python program that never flushes still answers each line at once (judged Python runs unbuffered)', async (t) => {
  const socket = await openPiston(svc.url);
  socket.send({ type: 'init', language: 'python', version: '*', files: [{ content: 'while True:\n    print("echo:", input())\n' }] });
  await socket.next('stage');
  socket.send({ type: 'data', stream: 'stdin', data: 'one\n' });
  await socket.next(() => socket.stdout() === 'echo: one\n', 10_000);
  socket.send({ type: 'data', stream: 'stdin', data: 'two\n' });
  await socket.next(() => socket.stdout() === 'echo: one\necho: two\n', 10_000);
  socket.send({ type: 'signal', signal: 'SIGKILL' });
  t.is((await socket.closed).code, 4999);
});

test('a C program: compile stage with its exit, then the run reading stdin', async (t) => {
  const socket = await openPiston(svc.url);
  socket.send({
    type: 'init',
    language: 'c',
    version: '*',
    files: [{ content: '#include <stdio.h>\nint main(void) { char s[64]; while (fgets(s, sizeof s, stdin)) { printf("got %s", s); fflush(stdout); } return 7; }\n' }],
  });
  await socket.next((m) => m.type === 'stage' && m.stage === 'run');
  const compileExit = socket.messages.find((m) => m.type === 'exit' && m.stage === 'compile');
  t.is(compileExit?.code, 0, JSON.stringify(socket.messages));
  t.deepEqual(socket.messages.filter((m) => m.type === 'stage').map((m) => m.stage), ['compile', 'run']);
  socket.send({ type: 'data', stream: 'stdin', data: 'x\n' });
  await socket.next(() => socket.stdout() === 'got x\n');
  socket.send({ type: 'signal', signal: 'SIGKILL' });
  t.is((await socket.next((m) => m.type === 'exit' && m.stage === 'run')).signal, 'SIGKILL');
  t.is((await socket.closed).code, 4999);
});

test('a compile error: the compile stage exits non-zero and no run stage follows', async (t) => {
  const socket = await openPiston(svc.url);
  socket.send({ type: 'init', language: 'c', version: '*', files: [{ content: 'int main(void) { return nope; }\n' }] });
  const exit = await socket.next('exit');
  t.is(exit.stage, 'compile');
  t.not(exit.code, 0);
  t.is((await socket.closed).code, 4999);
  t.regex(socket.messages.filter((m) => m.type === 'data' && m.stream === 'stderr').map((m) => m.data).join(''), /nope/);
  t.false(socket.messages.some((m) => m.type === 'stage' && m.stage === 'run'));
});

test('a client that disconnects mid-run ends the run: its sandbox is gone afterwards', async (t) => {
  const before = new Set(containersOfInstance(svc.config.instance));
  const socket = await openPiston(svc.url);
  socket.send({ type: 'init', language: 'python', version: '*', files: [{ content: 'import time\nprint("up", flush=True)\ntime.sleep(120)\n' }], run_timeout: 20000 });
  await socket.next(() => socket.stdout() === 'up\n');
  const during = containersOfInstance(svc.config.instance).filter((id) => !before.has(id));
  t.true(during.length >= 1, 'the run has a sandbox of its own');
  socket.ws.terminate();
  // Well before the run's own 20 s limit.
  t.true(await eventually(() => during.every((id) => !containersOfInstance(svc.config.instance).includes(id)), 10_000), 'the sandbox is removed');
});

test('malformed frames get Piston\'s error message and close 4002; the service goes on serving', async (t) => {
  for (const frame of ['{not json', '[]', '"init"', JSON.stringify({ type: 'init', language: 'python', version: '*', files: [{ content: 'x', encoding: 'base64' }] })]) {
    const socket = await openPiston(svc.url);
    socket.send(frame);
    const error = await socket.next('error');
    t.is(typeof error.message, 'string');
    t.deepEqual(await socket.closed, { code: 4002, reason: 'Notified Error' }, frame);
  }
  const binary = await openPiston(svc.url);
  binary.ws.send(Buffer.from([0xff, 0xfe, 0x00]));
  t.is((await binary.closed).code, 4002);
  const oversized = await openPiston(svc.url);
  oversized.ws.send('x'.repeat(svc.config.maxBodyBytes + 1));
  t.is((await oversized.closed).code, 1009);
  const early = await openPiston(svc.url);
  early.send({ type: 'data', stream: 'stdin', data: 'x' });
  t.is((await early.closed).code, 4003);
  // Still serving.
  const socket = await openPiston(svc.url);
  socket.send({ type: 'init', language: 'python', version: '*', files: [{ content: 'print("fine")' }] });
  await socket.next('exit');
  t.is(socket.stdout(), 'fine\n');
  t.is((await socket.closed).code, 4999);
});

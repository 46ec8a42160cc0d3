/**
 * The starting phase (src/main.ts, src/api/starting.ts): a service process whose Redis does not answer
 * listens and answers 503 while it waits. Attacked as a stranger would: odd requests meanwhile (a huge
 * declared body, a WebSocket handshake, a request line of garbage) get their 503 or 400 and crash nothing;
 * and an operator's SIGTERM while it waits stops it at once and cleanly (exit code 0). A process with no
 * SIGTERM handler is killed by the signal on a host, but as PID 1 in a container (the service image runs
 * node without an init) it ignores it, and `docker stop` waits its 10 s and SIGKILLs.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { freePort } from '../helpers/free-port.js';
import { sleep } from '../helpers/wait.js';

const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));

function rawRequest(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
    socket.on('error', () => resolve(answer));
    socket.on('close', () => resolve(answer));
    socket.write(text);
    setTimeout(() => socket.destroy(), 3000);
  });
}

test('while it waits for Redis: odd requests are answered and crash nothing; SIGTERM stops it at once with exit code 0', async (t) => {
  t.timeout(60_000);
  const port = await freePort();
  const deadRedis = await freePort();
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'pk-starting-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const child = spawn(process.execPath, [MAIN], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {
      ...process.env,
      KG_PORT: String(port),
      KG_IP: '127.0.0.1',
      REDIS_URL: `redis://127.0.0.1:${deadRedis}`,
      POLYKERNEL_INSTANCE: `test-starting-${port}`,
      POLYKERNEL_STATE_DIR: stateDir,
      POLYKERNEL_LOG_LEVEL: 'warn',
    },
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  let status = 0;
  for (let i = 0; i < 100 && status !== 503; i++) {
    status = await fetch(`http://127.0.0.1:${port}/api`).then((r) => r.status, () => 0);
    if (status !== 503) await sleep(100);
  }
  t.is(status, 503, 'the service answers 503 while it waits');

  const huge = await rawRequest(port, `POST /v1/kernel/create HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000000\r\nContent-Type: application/json\r\n\r\n{"lang":`);
  t.regex(huge, /^HTTP\/1\.1 503/, 'a huge declared body is answered 503 without being read');
  const upgrade = await rawRequest(port, `GET /api/kernels/x/channels HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
  t.regex(upgrade, /^HTTP\/1\.1 503/, 'a WebSocket handshake is refused 503');
  const garbage = await rawRequest(port, '\x00\x01garbage\r\n\r\n');
  t.regex(garbage, /^HTTP\/1\.1 400|^$/, 'a garbage request line is a 400 (or a closed connection)');
  const body = await fetch(`http://127.0.0.1:${port}/v1/kernel/create`, { method: 'POST', body: '{}' }).then((r) => r.text());
  t.regex(body, /waiting for the state store \(Redis\)/);
  t.notRegex(body, /at .*\.js:\d+|redis:\/\/|ECONNREFUSED/, 'the answer tells the wait, not the internals');
  t.is(child.exitCode, null, 'still running after all of it');

  const sent = Date.now();
  child.kill('SIGTERM');
  const end = await Promise.race([exited, sleep(10_000).then(() => undefined)]);
  t.log(`exit ${JSON.stringify(end)} ${Date.now() - sent} ms after SIGTERM; stderr: ${stderr.slice(-300)}`);
  t.deepEqual(end, { code: 0, signal: null }, 'SIGTERM while starting is a clean stop, not death by the signal (which PID 1 ignores)');
});

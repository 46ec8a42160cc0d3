/**
 * Issue #6, SIGTERM: the service (`node dist/src/main.js`, a child process here) stops accepting at once,
 * answers the requests in flight instead of cutting their sockets, exits 0, and then either removes every
 * kernel of its instance or leaves them running for the next start to adopt
 * (POLYKERNEL_KEEP_KERNELS_ON_SHUTDOWN).
 *
 * "Cleanly" means: no new connection is accepted once the signal arrived; every request already received
 * gets a complete HTTP answer (a v1 query whose kernel is shut down ends `finished` with exit code 137 and
 * the stderr notice "[kernel died: service shut down]"; with kernels kept it gets its normal answer at the
 * end of its flush window); WebSockets are closed with 1001; the process exits 0 within a bound.
 */
import test from 'ava';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { connectionDirOf } from '../../src/kernels/conn-dir.js';
import { redisUrl } from '../helpers/service.js';
import { freePort } from '../helpers/free-port.js';
import { jsonCall, type Call } from '../helpers/http-client.js';
import { createKernel, whenBusy } from '../helpers/v1-client.js';
import { sleep } from '../helpers/wait.js';
import { channelsUrl } from '../helpers/jupyter-client.js';
import { containersOfInstance, docker } from '../helpers/docker.js';

const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));

interface Spawned {
  process: ChildProcess;
  url: string;
  /** Resolves with the exit code once the process ended. */
  exited: Promise<number | null>;
  stderr: () => string;
  call: Call;
}

async function spawnService(env: Record<string, string>): Promise<Spawned> {
  const port = await freePort();
  const child = spawn(process.execPath, [MAIN], {
    env: { ...process.env, KG_PORT: String(port), KG_IP: '127.0.0.1', POLYKERNEL_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  const call = jsonCall(url);
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`service exited at start (${child.exitCode}): ${stderr}`);
    try {
      if ((await call('GET', '/api')).status === 200) break;
    } catch {
      // Not listening yet.
    }
    if (i > 300) throw new Error(`service did not listen within 30 s: ${stderr}`);
    await sleep(100);
  }
  return { process: child, url, exited, stderr: () => stderr, call };
}

/** Sends SIGTERM and resolves with the exit code and how long the shutdown took; fails past `boundMs`. */
async function terminate(service: Spawned, boundMs: number): Promise<{ code: number | null; ms: number }> {
  const started = Date.now();
  service.process.kill('SIGTERM');
  const code = await Promise.race([service.exited, sleep(boundMs).then(() => 'timeout' as const)]);
  if (code === 'timeout') {
    service.process.kill('SIGKILL');
    throw new Error(`no exit within ${boundMs} ms after SIGTERM: ${service.stderr()}`);
  }
  return { code, ms: Date.now() - started };
}

/** True once a fresh TCP connection to the service is refused (its listening socket is closed). */
async function refusesConnections(url: string, timeoutMs: number): Promise<boolean> {
  const { hostname, port } = new URL(url);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const outcome = await new Promise<string>((resolve) => {
      const socket = net.connect(Number(port), hostname);
      socket.once('connect', () => {
        socket.destroy();
        resolve('accepted');
      });
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    });
    if (outcome === 'ECONNREFUSED') return true;
    await sleep(50);
  }
  return false;
}

/**
 * Watches the kernel's iopub through its channels WebSocket: `seen` resolves once a stream message
 * carries `text`, i.e. the code is known to run (its kernel state alone can say busy before it printed).
 */
async function watchOutput(service: Spawned, kernelId: string, text: string): Promise<{ seen: Promise<void>; close(): void }> {
  const ws = new WebSocket(channelsUrl(service.url, kernelId));
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const seen = new Promise<void>((resolve) => {
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString());
      if (msg.msg_type === 'stream' && String(msg.content?.text).includes(text)) resolve();
    });
  });
  return { seen, close: () => ws.close() };
}

async function setup(keep: boolean) {
  const instance = `test-sigterm-${randomUUID().slice(0, 8)}`;
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'pk-sigterm-'));
  const env = {
    POLYKERNEL_INSTANCE: instance,
    POLYKERNEL_STATE_DIR: stateDir,
    REDIS_URL: redisUrl,
    POLYKERNEL_REDIS_PREFIX: `${instance}:`,
    POLYKERNEL_KEEP_KERNELS_ON_SHUTDOWN: String(keep),
  };
  return { instance, stateDir, env };
}

function storeKeys(instance: string): string {
  if (!redisUrl) return '';
  return execFileSync('redis-cli', ['-u', redisUrl, '--scan', '--pattern', `${instance}:*`], { encoding: 'utf8' }).trim();
}

test('SIGTERM, kernels removed: in-flight query answered, exit 0, nothing of the instance left', async (t) => {
  t.timeout(120_000);
  const { instance, stateDir, env } = await setup(false);
  // A long flush window: without the shutdown, the query below would not answer for 20 s.
  const service = await spawnService({ ...env, POLYKERNEL_FLUSH_WINDOW_MS: '20000' });
  try {
    const busy = await createKernel(service.call);
    const idle = await createKernel(service.call);
    t.is(containersOfInstance(instance).length, 2);
    const output = await watchOutput(service, busy, 'started');
    const inFlight = service.call('POST', `/v1/kernel/${busy}`, { mode: 'query', code: 'import time\nprint("started", flush=True)\ntime.sleep(60)' });
    await output.seen;
    output.close();

    const stopped = terminate(service, 20_000);
    t.true(await refusesConnections(service.url, 10_000), 'no new connection is accepted once SIGTERM arrived');

    const answer = await inFlight;
    t.is(answer.status, 200, 'the in-flight request got a complete answer');
    t.is(answer.body.result.status, 'finished');
    t.is(answer.body.result.exitCode, 137);
    t.deepEqual(answer.body.result.console, [['stdout', 'started\n'], ['stderr', '\n[kernel died: service shut down]\n']]);

    const { code, ms } = await stopped;
    t.log(`exited ${code} ${ms} ms after SIGTERM`);
    t.is(code, 0);
    t.deepEqual(containersOfInstance(instance), [], `no container of the instance is left (${idle} included)`);
    t.deepEqual(await readdir(stateDir), [], 'no socket directory is left');
    t.is(storeKeys(instance), '', 'no store key is left');
  } finally {
    if (service.process.exitCode === null) service.process.kill('SIGKILL');
    for (const id of containersOfInstance(instance)) docker('rm', '-f', id);
    await rm(stateDir, { recursive: true, force: true });
  }
});

test('SIGTERM, kernels kept: in-flight query answered, exit 0, the next start adopts the kernels', async (t) => {
  if (!redisUrl) return t.fail('REDIS_URL is not set: keeping kernels for re-adoption needs Redis');
  t.timeout(120_000);
  const { instance, stateDir, env } = await setup(true);
  const first = await spawnService({ ...env, POLYKERNEL_FLUSH_WINDOW_MS: '3000' });
  let second: Spawned | undefined;
  try {
    const kernel = await createKernel(first.call);
    await first.call('POST', `/v1/kernel/${kernel}`, { mode: 'query', code: 'x = "kept"' });
    const inFlight = first.call('POST', `/v1/kernel/${kernel}`, { mode: 'query', code: 'import time\nprint("started", flush=True)\ntime.sleep(5)' });
    await whenBusy(first.call, kernel);
    const stopped = terminate(first, 20_000);

    const answer = await inFlight;
    t.is(answer.status, 200, 'the in-flight request got a complete answer');
    t.is(answer.body.result.status, 'continued', 'its flush window ended while the kernel was still connected');
    t.deepEqual(answer.body.result.console, [['stdout', 'started\n']]);
    const { code, ms } = await stopped;
    t.log(`exited ${code} ${ms} ms after SIGTERM`);
    t.is(code, 0);
    t.is(containersOfInstance(instance).length, 1, 'the kernel container keeps running');
    t.true(existsSync(connectionDirOf(stateDir, instance, kernel)), 'and keeps its socket directory');

    second = await spawnService({ ...env, POLYKERNEL_KEEP_KERNELS_ON_SHUTDOWN: 'false' });
    const adopted = await second.call('GET', `/v1/kernel/${kernel}`);
    t.is(adopted.status, 200);
    // Runs live in the process that started them: a run cut by the restart cannot be continued.
    const cut = await second.call('POST', `/v1/kernel/${kernel}`, { mode: 'continue', runId: answer.body.result.runId });
    t.is(cut.status, 404);
    t.regex(cut.body.detail, /no run .* in progress/);
    let result = (await second.call('POST', `/v1/kernel/${kernel}`, { mode: 'query', code: 'print(x)' })).body.result;
    const out: unknown[] = [...result.console];
    while (result.status === 'continued') {
      result = (await second.call('POST', `/v1/kernel/${kernel}`, { mode: 'continue', runId: result.runId })).body.result;
      out.push(...result.console);
    }
    t.deepEqual(out, [['stdout', 'kept\n']]);

    const { code: secondCode } = await terminate(second, 20_000);
    t.is(secondCode, 0);
    t.deepEqual(containersOfInstance(instance), []);
    t.deepEqual(await readdir(stateDir), []);
    t.is(storeKeys(instance), '');
  } finally {
    for (const service of [first, second]) if (service && service.process.exitCode === null) service.process.kill('SIGKILL');
    for (const id of containersOfInstance(instance)) docker('rm', '-f', id);
    await rm(stateDir, { recursive: true, force: true });
  }
});

/**
 * Issue #6, Redis unreachable: requests that need the store fail fast (503 well under 3 s) with a message
 * naming Redis; requests that do not (executing on a live kernel) keep working; and the service recovers
 * on its own once Redis is back, without a restart. The test runs its own redis-server on a free loopback
 * port, so that it can stop, freeze and restart it (the shared one is never touched).
 */
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startTestService, type TestService } from '../helpers/service.js';
import { freePort } from '../helpers/free-port.js';
import { sleep } from '../helpers/wait.js';

/** A redis-server of this test: saves on SIGTERM and loads again at start, so records survive a stop. */
class OwnRedis {
  private process?: ChildProcess;
  constructor(readonly port: number, private readonly dir: string) {}

  async start(): Promise<void> {
    if (this.process && this.process.exitCode === null && this.process.signalCode === null) return;
    this.process = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '3600 1', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    for (let i = 0; i < 100; i++) {
      const up = await new Promise<boolean>((resolve) => {
        const socket = net.connect(this.port, '127.0.0.1', () => (socket.end(), resolve(true)));
        socket.on('error', () => resolve(false));
      });
      if (up) return;
      await sleep(50);
    }
    throw new Error('redis-server did not start');
  }

  async stop(): Promise<void> {
    const process = this.process;
    if (!process || process.exitCode !== null) return;
    process.kill('SIGCONT');
    const exited = new Promise((resolve) => process.once('exit', resolve));
    process.kill('SIGTERM');
    await exited;
  }

  signal(signal: NodeJS.Signals): void {
    this.process?.kill(signal);
  }
}

let redis: OwnRedis;
let svc: TestService;
let dir: string;

test.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'pk-redis-'));
  redis = new OwnRedis(await freePort(), dir);
  await redis.start();
  svc = await startTestService({ redisUrl: `redis://127.0.0.1:${redis.port}`, poolSizes: { python3: 1 } }, 'memory');
});

test.after.always(async () => {
  await redis?.start().catch(() => undefined);
  await svc?.stop();
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A request that must fail fast with 503 and a message about the store. */
async function expectStoreDown(t: import('ava').ExecutionContext, method: string, route: string, body?: unknown) {
  const started = Date.now();
  // Bounded, so that a hang fails the test (and the hooks still stop redis-server) instead of stalling it.
  const response = await Promise.race([
    svc.call(method, route, body),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${method} ${route}: no answer within 10 s`)), 10_000).unref()),
  ]);
  const ms = Date.now() - started;
  t.is(response.status, 503, `${method} ${route}: ${JSON.stringify(response.body)}`);
  t.true(ms < 3000, `${method} ${route} answered in ${ms} ms`);
  const message = route.startsWith('/v1/') ? response.body.detail : response.body.message;
  t.regex(message, /state store \(Redis\) is unreachable/, `${method} ${route}`);
}

// One after the other: both stop the same redis-server.
test.serial('Redis stopped: 503 fast with a clear message, live kernels still execute, recovery on its own', async (t) => {
  t.timeout(120_000);
  t.true(await svc.service.kernels.pool.whenFull(60_000));
  const kernel = (await svc.call('POST', '/v1/kernel/create', { lang: 'python3' })).body.kernelId as string;
  await svc.call('POST', `/v1/kernel/${kernel}`, { mode: 'query', code: 'x = 1' });
  t.true(await svc.service.kernels.pool.whenFull(60_000));

  await redis.stop();
  await expectStoreDown(t, 'GET', `/v1/kernel/${kernel}`);
  await expectStoreDown(t, 'POST', '/v1/kernel/create', { lang: 'python3' });
  await expectStoreDown(t, 'DELETE', `/v1/kernel/${kernel}`);
  await expectStoreDown(t, 'GET', '/api/kernels');
  await expectStoreDown(t, 'POST', '/api/kernels', { name: 'python3' });
  await expectStoreDown(t, 'GET', `/api/kernels/${kernel}`);
  await expectStoreDown(t, 'GET', '/api/sessions');
  await expectStoreDown(t, 'POST', '/api/sessions', { path: 'a.ipynb', type: 'notebook', kernel: { name: 'python3' } });
  await expectStoreDown(t, 'GET', '/api/executions');
  // A create refused for want of the store gives its warm kernel back instead of leaking it.
  t.is(svc.service.kernels.pool.size('python3'), 1);
  // Executing on a live kernel needs no store round trip.
  const run = await svc.call('POST', `/v1/kernel/${kernel}`, { mode: 'query', code: 'x += 1\nprint(x)' });
  t.is(run.status, 200);
  t.deepEqual(run.body.result.console, [['stdout', '2\n']]);
  // Background work (usage sampling) fails quietly meanwhile: the process is still up and answering.
  await sleep(svc.config.statsIntervalMs + 500);
  t.is((await svc.call('GET', '/api')).status, 200);

  await redis.start();
  const back = Date.now();
  let status = 0;
  while (Date.now() - back < 15_000 && (status = (await svc.call('GET', `/v1/kernel/${kernel}`)).status) !== 200) await sleep(200);
  t.is(status, 200, 'the service reconnects to Redis by itself');
  t.log(`recovered ${Date.now() - back} ms after redis-server started again`);
  t.is((await svc.call('GET', `/v1/kernel/${kernel}`)).body.numQueriesExecuted >= 1, true);
  const created = await svc.call('POST', '/v1/kernel/create', { lang: 'python3' });
  t.is(created.status, 201);
  t.is((await svc.call('DELETE', `/v1/kernel/${created.body.kernelId}`)).status, 204);
  t.is((await svc.call('DELETE', `/v1/kernel/${kernel}`)).status, 204);
});

test.serial('Redis frozen (accepts connections, never answers): 503 within the command timeout, then recovery', async (t) => {
  t.timeout(60_000);
  const kernel = (await svc.call('POST', '/v1/kernel/create', { lang: 'python3' })).body.kernelId as string;
  redis.signal('SIGSTOP');
  try {
    await expectStoreDown(t, 'GET', `/v1/kernel/${kernel}`);
    await expectStoreDown(t, 'GET', '/api/sessions');
  } finally {
    redis.signal('SIGCONT');
  }
  let status = 0;
  const back = Date.now();
  while (Date.now() - back < 15_000 && (status = (await svc.call('GET', `/v1/kernel/${kernel}`)).status) !== 200) await sleep(200);
  t.is(status, 200);
  t.is((await svc.call('DELETE', `/v1/kernel/${kernel}`)).status, 204);
});

/**
 * Redis as the one shared dependency: a service started while its Redis is not up yet listens and answers
 * 503 saying what it waits for (each API in its dialect, WebSocket handshakes too) instead of exiting, and
 * serves once Redis answers; a Redis that goes away later makes requests 503 while it is gone, and the
 * service recovers on its own when it is back. A real redis-server of the test's own, on a port of its own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import WebSocket from 'ws';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/logger.js';
import { startService, type RunningService } from '../../src/main.js';
import { containersOfInstance } from '../helpers/docker.js';
import { freePort } from '../helpers/free-port.js';
import { jsonCall } from '../helpers/http-client.js';
import { eventually, sleep } from '../helpers/wait.js';

let redis: ChildProcess | undefined;
let redisPort: number;

async function startRedis(): Promise<void> {
  redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
}

async function stopRedis(): Promise<void> {
  const process = redis;
  redis = undefined;
  if (!process || process.exitCode !== null) return;
  const exited = new Promise((resolve) => process.once('exit', resolve));
  process.kill('SIGKILL');
  await exited;
}

test.after.always(async () => {
  await stopRedis();
});

test.serial('a service started before its Redis answers 503 saying so, then serves; a Redis lost later is a 503 until it is back', async (t) => {
  t.timeout(180_000);
  redisPort = await freePort();
  const port = await freePort();
  const instance = `test-redis-wait-${randomUUID().slice(0, 8)}`;
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'pk-'));
  const config = loadConfig(process.env, {
    port,
    ip: '127.0.0.1',
    instance,
    stateDir,
    redisUrl: `redis://127.0.0.1:${redisPort}`,
    redisPrefix: `${instance}:`,
    logLevel: 'error',
  });
  const url = `http://127.0.0.1:${port}`;
  const call = jsonCall(url);
  let service: RunningService | undefined;
  const starting = startService(config, createLogger(config.logLevel)).then((started) => (service = started));
  starting.catch(() => undefined);
  try {
    t.true(await eventually(async () => (await fetch(`${url}/api`).catch(() => undefined)) !== undefined, 30_000), 'it listens before Redis is up');
    // Still waiting after a few seconds: no exit, no time-out of the start.
    await sleep(3000);
    t.is(service, undefined);
    const jupyter = await call('GET', '/api/kernels');
    t.is(jupyter.status, 503);
    t.regex(jupyter.body.message, /starting: waiting for the state store \(Redis\)/);
    t.is(jupyter.headers.get('retry-after'), '2');
    const v1 = await call('POST', '/v1/kernel/create', { lang: 'python3' });
    t.is(v1.status, 503);
    t.regex(v1.body.detail, /waiting for the state store \(Redis\)/, 'v1 answers its problem document');
    const handshake = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/api/kernels/${randomUUID()}/channels`);
      ws.once('unexpected-response', (req, res) => {
        resolve(res.statusCode ?? 0);
        req.destroy();
      });
      ws.once('open', () => resolve(101));
      ws.once('error', () => resolve(-1));
    });
    t.is(handshake, 503, 'a WebSocket handshake is refused with 503 too');

    await startRedis();
    await starting;
    t.truthy(service, 'the start completes once Redis answers');
    const created = await call('POST', '/v1/kernel/create', { lang: 'python3' });
    t.is(created.status, 201, JSON.stringify(created.body));
    const id = created.body.kernelId as string;
    t.deepEqual((await call('POST', `/v1/kernel/${id}`, { mode: 'query', code: 'print(6*7)' })).body.result.console, [['stdout', '42\n']]);

    await stopRedis();
    const lost = await call('GET', `/v1/kernel/${id}`);
    t.is(lost.status, 503);
    t.regex(lost.body.detail, /state store \(Redis\) is unreachable/);
    await startRedis();
    // The new Redis is empty (a failover that lost its data): the service works again on its own.
    t.true(await eventually(async () => (await call('POST', '/v1/kernel/create', { lang: 'python3' })).status === 201, 30_000, 500), 'a kernel can be created again');
    // The stop removes every kernel of the service, also the one whose record went with the old Redis.
    await service!.stop();
    t.deepEqual(containersOfInstance(instance), [], 'no kernel container outlives the service');
  } finally {
    // The start (if it still waits) and the stop both need a Redis.
    if (!redis) await startRedis();
    await starting.catch(() => undefined);
    await service?.stop();
    await stopRedis();
    await rm(stateDir, { recursive: true, force: true });
  }
});

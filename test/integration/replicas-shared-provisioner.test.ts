/**
 * Two gateway replicas in one process sharing one Redis and ONE DockerProvisioner on the real Docker
 * engine (the node agent's shape in miniature): a kernel created through replica A's v1 API is queried
 * through B's v1 API and used through B's channels WebSocket, restarted through A (B then sees a fresh
 * process), deleted through B, and gone from A. One container all along.
 */
import test from 'ava';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { loadConfig } from '../../src/config/index.js';
import { DockerProvisioner } from '../../src/kernels/docker-provisioner.js';
import { KernelSpecRegistry } from '../../src/kernels/kernel-specs.js';
import { createLogger } from '../../src/logger.js';
import { DockerRuntime, dockerOptionsFor } from '../../src/runtime/docker.js';
import { createStore } from '../../src/store/index.js';
import { channelsUrl } from '../helpers/jupyter-client.js';
import { JupyterWs, V1 } from '../helpers/jupyter-ws.js';
import { startReplica } from '../helpers/replica-app.js';
import { redisUrl } from '../helpers/service.js';
import { createKernel, runOrThrow, runToEnd } from '../helpers/v1-client.js';
import { eventually } from '../helpers/wait.js';

test('a kernel created through replica A is served by replica B (v1 and channels), restarted through A, deleted through B, gone from A', async (t) => {
  if (!redisUrl) throw new Error('REDIS_URL is not set: replicas share their kernels through Redis');
  const instance = `test-${randomUUID().slice(0, 8)}`;
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'pk-replicas-'));
  const config = loadConfig(process.env, {
    port: 0,
    ip: '127.0.0.1',
    instance,
    stateDir,
    redisUrl,
    redisPrefix: `${instance}:`,
    logLevel: (process.env.POLYKERNEL_TEST_LOG_LEVEL as 'warn') ?? 'warn',
  });
  const log = createLogger(config.logLevel);
  const runtime = new DockerRuntime(log, config.instance, dockerOptionsFor(config.dockerHost), config.containerLabels);
  const provisioner = new DockerProvisioner(config, runtime, log);
  const specs = new KernelSpecRegistry(runtime, config.imagePrefix);
  // One Redis connection (and subscriber) per replica, as two processes would have.
  const [storeA, storeB] = [await createStore(config, log), await createStore(config, log)];
  const a = await startReplica(config, provisioner, storeA, specs, log);
  const b = await startReplica(config, provisioner, storeB, specs, log);
  t.teardown(async () => {
    await b.stop();
    await a.stop();
    await Promise.all([storeA.close(), storeB.close()]);
    await runtime.close();
    const redis = new Redis(redisUrl);
    const keys = await redis.keys(`${instance}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
    await rm(stateDir, { recursive: true, force: true });
  });

  const id = await createKernel(a.call, { lang: 'python3' });
  await runOrThrow(a.call, id, { mode: 'query', code: 'x = 6 * 7' });
  // Figures, not assertions (a loaded machine is slow): B's first query pays the attach, later ones do not.
  let started = Date.now();
  t.is((await runOrThrow(b.call, id, { mode: 'query', code: 'print(x)' })).text.trim(), '42', "B's v1 API runs in A's kernel");
  const firstOnB = Date.now() - started;
  const timed = async (call: typeof a.call) => {
    const times: number[] = [];
    for (let i = 0; i < 10; i++) {
      started = Date.now();
      await runOrThrow(call, id, { mode: 'query', code: 'x' });
      times.push(Date.now() - started);
    }
    return times.sort((p, q) => p - q)[5]!;
  };
  t.log(`first query through B (attach): ${firstOnB} ms; median query through A: ${await timed(a.call)} ms, through B: ${await timed(b.call)} ms`);
  t.is((await b.call('GET', `/api/kernels/${id}`)).status, 200);

  const ws = await JupyterWs.open(channelsUrl(b.url, id), { protocols: [V1] });
  t.teardown(() => ws.close());
  const { stdout, reply } = await ws.execute('print(x + 1)');
  t.is(reply.content.status, 'ok');
  t.is(stdout.trim(), '43', "B's channels WebSocket reaches the same kernel process");
  t.is((await provisioner.list()).filter((k) => k.running).length, 1, 'one container: B attached, it did not start another');

  t.is((await a.call('PATCH', `/v1/kernel/${id}`)).status, 204, 'restarted through A');
  const restartSeen = await eventually(async () => {
    const after = await runToEnd(b.call, id, { mode: 'query', code: 'print("x" in globals())' });
    return after.status === 'finished' && after.text.trim() === 'False';
  }, 30_000);
  t.true(restartSeen, "B's next query runs in the fresh process");
  t.is((await b.call('GET', `/api/kernels/${id}`)).status, 200);
  const fresh = await ws.execute('print("ws", "x" in globals())');
  t.is(fresh.stdout.trim(), 'ws False', "B's WebSocket client now talks to the restarted process");

  t.is((await b.call('DELETE', `/v1/kernel/${id}`)).status, 204, 'deleted through B');
  t.true(await eventually(() => ws.closed !== undefined, 10_000), "B's WebSocket client is told the kernel went");
  t.is((await a.call('GET', `/v1/kernel/${id}`)).status, 404, 'A answers 404');
  t.is((await a.call('POST', `/v1/kernel/${id}`, { mode: 'query', code: '1' })).status, 404);
  t.true(await eventually(() => a.kernels.handles().length === 0 && b.kernels.handles().length === 0, 10_000), 'neither replica holds it');
  await provisioner.settled();
  t.is((await provisioner.list()).length, 0, 'its container is gone');
});

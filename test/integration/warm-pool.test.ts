/**
 * Warm pools (issue #7) against a real engine: a kernel handed out of the pool is one of the containers
 * that were waiting in it, is indistinguishable from a cold one (fresh globals, its own socket directory
 * and key), takes the requested limits through the engine's update API, is never handed out twice, and
 * the pool refills behind it. GET /api/status shows the pools.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { startTestService, type TestService } from '../helpers/service.js';
import { runOrThrow } from '../helpers/v1-client.js';

let svc: TestService;

test.before(async () => {
  svc = await startTestService({ poolSizes: { python3: 2 }, flushWindowMs: 60_000 });
});

test.after.always(async () => {
  await svc?.stop();
});

const INSTANCE_LABEL = 'org.polykernel.instance';
const POOL_LABEL = 'org.polykernel.pool';

/** Container ids of this service's pooled containers that no kernel record holds yet. */
async function waitingContainers(): Promise<string[]> {
  const all = execFileSync(
    '/usr/bin/docker',
    ['ps', '-q', '--no-trunc', '--filter', `label=${INSTANCE_LABEL}=${svc.config.instance}`, '--filter', `label=${POOL_LABEL}=true`],
    { encoding: 'utf8' },
  ).split('\n').filter(Boolean);
  const held = new Set((await Promise.all(svc.service.kernels.liveKernels().map((k) => svc.service.kernels.get(k.id)))).map((r) => r.containerId));
  return all.filter((id) => !held.has(id));
}

function inspectMemory(containerId: string): number {
  return Number(execFileSync('/usr/bin/docker', ['inspect', '-f', '{{.HostConfig.Memory}}', containerId], { encoding: 'utf8' }).trim());
}

const query = (id: string, code: string) => runOrThrow(svc.call, id, { mode: 'query', code });

test.serial('GET /api/status reports the pool filled to its target', async (t) => {
  t.true(await svc.service.kernels.pool.whenFull(90_000));
  const { status, body } = await svc.call('GET', '/api/status');
  t.is(status, 200);
  t.deepEqual(body.pools, { python3: { ready: 2, starting: 0, target: 2 } });
  t.is(typeof body.started, 'string');
  t.is(typeof body.kernels, 'number');
  t.is((await waitingContainers()).length, 2);
});

test.serial('a created kernel is a pooled container, fresh, with its own directory and key; the pool refills', async (t) => {
  t.true(await svc.service.kernels.pool.whenFull(90_000));
  const waiting = await waitingContainers();
  const first = await svc.call('POST', '/v1/kernel/create', { lang: 'python3' });
  t.is(first.status, 201);
  const a = await svc.service.kernels.get(first.body.kernelId);
  t.true(waiting.includes(a.containerId), 'the kernel is one of the containers that waited in the pool');
  t.is((await query(a.id, 'secret = 41\nprint(secret + 1)')).console[0][1], '42\n');
  t.is((await svc.call('DELETE', `/v1/kernel/${a.id}`)).status, 204);

  const second = await svc.call('POST', '/v1/kernel/create', { lang: 'python3' });
  t.is(second.status, 201);
  const b = await svc.service.kernels.get(second.body.kernelId);
  t.true(waiting.includes(b.containerId), "the second kernel is the other container that waited");
  t.not(b.containerId, a.containerId, 'a pooled container is never handed out twice');
  t.not(b.connDir, a.connDir);
  t.not(b.key, a.key);
  const fresh = await query(b.id, 'print("secret" in globals())');
  t.deepEqual(fresh.console, [['stdout', 'False\n']]);
  t.is((await query(b.id, 'print(1)')).exitCode, 0);
  await svc.call('DELETE', `/v1/kernel/${b.id}`);

  // Refilled in the background with containers that never served a kernel.
  t.true(await svc.service.kernels.pool.whenFull(90_000));
  const refilled = await waitingContainers();
  t.is(refilled.length, 2);
  t.false(refilled.includes(a.containerId));
  t.false(refilled.includes(b.containerId));
});

test.serial('requested limits are applied to a pooled container with the engine\'s update API', async (t) => {
  t.true(await svc.service.kernels.pool.whenFull(90_000));
  const waiting = await waitingContainers();
  t.is(inspectMemory(waiting[0]!), svc.config.defaultMaxMemKB * 1024);
  const created = await svc.call('POST', '/v1/kernel/create', { lang: 'python3', resourceLimits: { maxMem: 196608 } });
  t.is(created.status, 201);
  const record = await svc.service.kernels.get(created.body.kernelId);
  t.true(waiting.includes(record.containerId), 'served from the pool, not started cold');
  t.is(inspectMemory(record.containerId), 196608 * 1024);
  t.is((await query(record.id, 'print(2 + 2)')).console[0][1], '4\n');
  await svc.call('DELETE', `/v1/kernel/${record.id}`);
});

test.serial('POST /api/kernels is served from the same pool', async (t) => {
  t.true(await svc.service.kernels.pool.whenFull(90_000));
  const waiting = await waitingContainers();
  const created = await svc.call('POST', '/api/kernels', { name: 'python3' });
  t.is(created.status, 201);
  const record = await svc.service.kernels.get(created.body.id);
  t.true(waiting.includes(record.containerId));
  await svc.call('DELETE', `/api/kernels/${record.id}`);
});

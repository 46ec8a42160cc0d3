/**
 * Teardown by the Docker provisioner against a fake engine: a removal while the engine is unreachable is
 * retried until it answers (a deleted kernel must not leave its container running), gives up once the
 * service stops (the next start's reap finds it), and the socket directory goes before remove() resolves.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { unavailable } from '../../src/errors.js';
import { DockerProvisioner } from '../../src/kernels/docker-provisioner.js';
import { silentLogger } from '../../src/logger.js';
import type { ContainerRuntime } from '../../src/runtime/runtime.js';

async function provisionerWith(remove: (containerId: string) => Promise<void>) {
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'pk-docker-provisioner-'));
  const runtime = {
    remove,
    onDeath: () => () => undefined,
    startKernel: async () => ({ containerId: 'c-1', labels: {}, running: true }),
  } as unknown as ContainerRuntime;
  const config = { stateDir, instance: 'unit', cpus: 1, pidsLimit: 64, workDirSizeMB: 16, tmpSizeMB: 16 };
  const provisioner = new DockerProvisioner(config, runtime, silentLogger);
  await provisioner.start(() => undefined);
  return { provisioner, stateDir };
}

test('a container removal is retried while the engine is unreachable, until it succeeds', async (t) => {
  let attempts = 0;
  const { provisioner, stateDir } = await provisionerWith(async () => {
    if (++attempts < 3) throw unavailable('the Docker engine is unreachable');
  });
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const placed = await provisioner.launch({ id: 'k-1', lang: 'python3', image: 'x', runtime: 'runc', key: 'key', memoryBytes: 1 << 26, env: {} });
  t.true(existsSync(placed.connDir));
  await provisioner.remove({ id: 'k-1', ...placed });
  t.false(existsSync(placed.connDir), 'the socket directory is gone when remove resolves');
  await provisioner.settled();
  t.is(attempts, 3);
});

test('once the service stops, a removal the engine does not answer gives up instead of retrying for ever', async (t) => {
  let attempts = 0;
  const { provisioner, stateDir } = await provisionerWith(async () => {
    attempts++;
    throw unavailable('the Docker engine is unreachable');
  });
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  await provisioner.remove({ id: 'k-1', containerId: 'c-1', connDir: '' });
  provisioner.stop();
  await provisioner.settled();
  t.true(attempts <= 2, `gave up after ${attempts} attempts`);
});

test('a removal refused for another reason than an unreachable engine is not retried', async (t) => {
  let attempts = 0;
  const { provisioner, stateDir } = await provisionerWith(async () => {
    attempts++;
    throw new Error('conflict: removal already in progress');
  });
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  await provisioner.remove({ id: 'k-1', containerId: 'c-1', connDir: '' });
  await provisioner.settled();
  t.is(attempts, 1);
});

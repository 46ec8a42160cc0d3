/**
 * gVisor as a second OCI runtime (issue #6): chosen for all kernels (KG_CONTAINER_RUNTIME=runsc) or per
 * language (POLYKERNEL_RUNTIME_BY_LANG=python3=runsc), over the same IPC transport as runc. The sandbox
 * and limit tests run under both runtimes (sandbox-runsc.test.ts, limits-*.test.ts); this file checks the
 * selection and records what gVisor costs: start-up and round trips, runsc against runc (t.log).
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { lstatSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { startTestService } from '../helpers/service.js';
import { runtimeRegistered } from './sandbox-helpers.js';
import { DOCKER } from '../helpers/docker.js';
import { batch, query } from '../helpers/v1-client.js';

/** gVisor's sentry reports its own fixed kernel version; runc shows the host's. */
const GVISOR_KERNEL = /Linux version 4\.4\.0/;

test.before(() => {
  if (!runtimeRegistered('runsc')) throw new Error('the Docker engine has no "runsc" runtime: run scripts/host-setup.sh');
});

function runtimeOf(containerId: string): string {
  return execFileSync(DOCKER, ['inspect', '--format', '{{.HostConfig.Runtime}}', containerId], { encoding: 'utf8' }).trim();
}

test.serial('POLYKERNEL_RUNTIME_BY_LANG=python3=runsc: python3 kernels run under gVisor, bash under runc, both over IPC', async (t) => {
  const svc = await startTestService({ containerRuntime: 'runc', containerRuntimeByLang: { python3: 'runsc' }, flushWindowMs: 20_000 });
  try {
    for (const [lang, runtime, code] of [
      ['python3', 'runsc', 'print(open("/proc/version").read())'],
      ['bash', 'runc', 'cat /proc/version'],
    ] as const) {
      const created = await svc.call('POST', '/v1/kernel/create', { lang });
      t.is(created.status, 201, JSON.stringify(created.body));
      const record = await svc.service.kernels.get(created.body.kernelId);
      t.is(record.runtime, runtime);
      t.is(runtimeOf(record.containerId), runtime, `${lang}: HostConfig.Runtime`);
      const version = (await query(svc.call, record.id, code)).text;
      if (runtime === 'runsc') t.regex(version, GVISOR_KERNEL, `${lang}: ${version}`);
      else t.notRegex(version, GVISOR_KERNEL, `${lang}: ${version}`);
      // The transport: the kernel's ZMQ sockets are IPC socket files in its host directory.
      const sockets = readdirSync(record.connDir).filter((name) => lstatSync(path.join(record.connDir, name)).isSocket());
      t.deepEqual(sockets.sort(), ['k-1', 'k-2', 'k-3', 'k-4', 'k-5'], lang);
      t.is((await batch(svc.call, record.id, 'echo batch ok')).text, 'batch ok\n', `${lang}: batch mode`);
      // A restart stops the container, makes its socket directory anew and starts it again: under both
      // runtimes the new kernel binds there and the directory is sealed again (root's, 0750).
      const restarted = await svc.call('PATCH', `/v1/kernel/${record.id}`);
      t.is(restarted.status, 204, `${lang}: restart ${JSON.stringify(restarted.body)}`);
      t.regex((await query(svc.call, record.id, code)).text, runtime === 'runsc' ? GVISOR_KERNEL : /Linux version/, `${lang}: after restart`);
      const sealed = lstatSync(record.connDir);
      t.is(sealed.uid, 0, `${lang}: the directory is root's after the restart`);
      t.is(sealed.mode & 0o777, 0o750);
    }
  } finally {
    await svc.stop();
  }
});

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

test.serial('KG_CONTAINER_RUNTIME=runsc against runc: start-up and round-trip cost (figures in the log)', async (t) => {
  const STARTS = 3;
  const ROUND_TRIPS = 20;
  const figures: Record<string, { startMs: number; queryMs: number; batchMs: number }> = {};
  for (const runtime of ['runc', 'runsc'] as const) {
    const svc = await startTestService({ containerRuntime: runtime, flushWindowMs: 20_000 });
    try {
      const starts: number[] = [];
      const queries: number[] = [];
      const batches: number[] = [];
      for (let i = 0; i < STARTS; i++) {
        const started = performance.now();
        const created = await svc.call('POST', '/v1/kernel/create', { lang: 'python3' });
        starts.push(performance.now() - started);
        t.is(created.status, 201);
        const id = created.body.kernelId as string;
        await query(svc.call, id, 'pass');
        for (let j = 0; j < ROUND_TRIPS; j++) {
          const sent = performance.now();
          t.is((await query(svc.call, id, 'print(1)')).text, '1\n');
          queries.push(performance.now() - sent);
        }
        for (let j = 0; j < 3; j++) {
          const sent = performance.now();
          t.is((await batch(svc.call, id, 'echo 1')).text, '1\n');
          batches.push(performance.now() - sent);
        }
        await svc.call('DELETE', `/v1/kernel/${id}`);
        await svc.service.kernels.settled();
      }
      figures[runtime] = { startMs: median(starts), queryMs: median(queries), batchMs: median(batches) };
    } finally {
      await svc.stop();
    }
  }
  for (const [runtime, f] of Object.entries(figures)) {
    t.log(`${runtime}: create (cold start to ready) ${f.startMs.toFixed(0)} ms, query print(1) ${f.queryMs.toFixed(1)} ms, batch "echo 1" ${f.batchMs.toFixed(0)} ms (medians)`);
  }
  const { runc, runsc } = figures as Record<'runc' | 'runsc', { startMs: number; queryMs: number; batchMs: number }>;
  t.log(`runsc/runc: start ${(runsc.startMs / runc.startMs).toFixed(1)}x, query ${(runsc.queryMs / runc.queryMs).toFixed(1)}x, batch ${(runsc.batchMs / runc.batchMs).toFixed(1)}x`);
});

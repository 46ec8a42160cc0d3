/**
 * Issue #6, "crashes and restarts lose nothing": a second service started with the same instance label,
 * state directory and Redis prefix re-adopts the first one's kernels (same ids, same state, variables
 * kept, the channels WebSocket reconnects), drops records whose container is gone, and removes containers
 * of the instance that no record names. Needs Redis (REDIS_URL): the in-process store dies with its process.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { connectionDirOf, instanceConnectionDirs } from '../../src/kernels/conn-dir.js';
import { JupyterWs } from '../helpers/jupyter-ws.js';
import { redisUrl, startTestService, type TestService } from '../helpers/service.js';
import { runOrThrow } from '../helpers/v1-client.js';
import { sleep } from '../helpers/wait.js';
import { channelsUrl } from '../helpers/jupyter-client.js';
import { containersOfInstance, docker } from '../helpers/docker.js';

const stdoutOf = (result: { console: [string, unknown][] }) =>
  result.console.filter((item) => item[0] === 'stdout').map((item) => item[1]).join('');

/** Runs a v1 query to its end (through "continued" answers). */
const run = (svc: TestService, kernelId: string, code: string) => runOrThrow(svc.call, kernelId, { mode: 'query', code });

test('a restarted service re-adopts running kernels, keeps their state and reaps unknown containers', async (t) => {
  if (!redisUrl) return t.fail('REDIS_URL is not set: adoption needs a store that outlives the process');
  t.timeout(240_000);
  const instance = `test-restart-${randomUUID().slice(0, 8)}`;
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'pk-restart-'));
  const shared = { instance, stateDir, redisPrefix: `${instance}:`, flushWindowMs: 2000 };
  let second: TestService | undefined;
  let orphan = '';
  let stray = '';
  let strayTarget = '';
  try {
    const first = await startTestService({ ...shared, keepKernelsOnShutdown: true });
    // v1 kernel with a REPL token, a Jupyter kernel with a session and a WebSocket, a kernel whose
    // container will vanish while the service is down, and one busy with a long computation.
    const v1 = (await first.call('POST', '/v1/kernel/create', { lang: 'python3', clientSessionToken: 'restart-repl' })).body.kernelId as string;
    const jupyter = await first.call('POST', '/api/sessions', { path: 'restart.ipynb', type: 'notebook', kernel: { name: 'python3' } });
    t.is(jupyter.status, 201);
    const jupyterKernel = jupyter.body.kernel.id as string;
    const vanishing = (await first.call('POST', '/v1/kernel/create', { lang: 'python3' })).body.kernelId as string;
    const busy = (await first.call('POST', '/v1/kernel/create', { lang: 'python3' })).body.kernelId as string;
    for (const id of [v1, jupyterKernel, vanishing, busy]) t.regex(id, /^[0-9a-f-]{36}$/);

    t.is((await run(first, v1, 'x = 41')).exitCode, 0);
    const wsUrl = channelsUrl(first.url, jupyterKernel);
    const ws = await JupyterWs.open(wsUrl, { protocols: ['v1.kernel.websocket.jupyter.org'] });
    t.is((await ws.execute('y = "kept"')).reply.content.status, 'ok');
    // Still running when the service stops: the first answer is "continued" after the flush window.
    const long = await first.call('POST', `/v1/kernel/${busy}`, { mode: 'query', code: 'import time\ntime.sleep(12)\nz = "slept"' });
    t.is(long.body.result.status, 'continued');
    const before = (await first.call('GET', `/v1/kernel/${v1}`)).body;

    await first.service.stop();
    // The WebSocket is told the service goes away (1001), the kernels' containers stay.
    for (let i = 0; i < 50 && !ws.closed; i++) await sleep(100);
    t.is(ws.closed?.code, 1001);
    t.is(containersOfInstance(instance).length, 4, 'every kernel container survives a stop with keepKernelsOnShutdown');

    // While the service is down: one kernel's container goes away, and a container no record names appears.
    docker('rm', '-f', docker('ps', '-q', '--filter', `label=org.polykernel.kernel-id=${vanishing}`));
    orphan = docker('run', '-d', '--label', 'org.polykernel.managed=true', '--label', `org.polykernel.instance=${instance}`, 'polykernel/python:latest', 'sleep', '300');

    // A socket directory no record names (a service that crashed mid-start, a lost in-memory store), with a
    // link out of it planted by its kernel: reaped without following the link.
    stray = connectionDirOf(stateDir, instance, randomUUID());
    strayTarget = path.join(stateDir, 'outside-target');
    await mkdir(path.join(stray, 'sub'), { recursive: true });
    await mkdir(strayTarget);
    await writeFile(path.join(strayTarget, 'keep'), 'x');
    await symlink(strayTarget, path.join(stray, 'sub', 'link'));

    const started = Date.now();
    second = await startTestService({ ...shared, keepKernelsOnShutdown: false });
    t.log(`second service started (adoption included) in ${Date.now() - started} ms`);

    t.is(docker('ps', '-aq', '--filter', `id=${orphan}`), '', 'the container with no record was removed at start');
    t.is((await second.call('GET', `/v1/kernel/${vanishing}`)).status, 404, 'a record whose container is gone is dropped');
    t.false(existsSync(connectionDirOf(stateDir, instance, vanishing)), 'and its socket directory with it');
    t.false(existsSync(stray), 'a socket directory that no kernel owns is reaped at start, links and all');
    t.true(existsSync(strayTarget), 'without following the link planted in it');

    const after = await second.call('GET', `/v1/kernel/${v1}`);
    t.is(after.status, 200);
    t.is(after.body.lang, 'python3');
    t.is(after.body.state, 'idle');
    t.is(after.body.numQueriesExecuted, before.numQueriesExecuted);
    t.true(after.body.age >= before.age, 'age counts from the first creation');
    const listed = (await second.call('GET', '/api/kernels')).body.map((k: { id: string }) => k.id).sort();
    t.deepEqual(listed, [v1, jupyterKernel, busy].sort(), 'same ids, nothing more');

    // Variables are kept, and the REPL token still leads to the same kernel.
    t.is(stdoutOf(await run(second, v1, 'print(x + 1)')), '42\n');
    const again = await second.call('POST', '/v1/kernel/create', { lang: 'python3', clientSessionToken: 'restart-repl' });
    t.is(again.status, 200);
    t.is(again.body.kernelId, v1);

    // The session survives; a client reconnects to the channels with its session id and finds its state.
    const sessions = (await second.call('GET', '/api/sessions')).body;
    t.is(sessions.length, 1);
    t.is(sessions[0].kernel.id, jupyterKernel);
    const reconnected = await JupyterWs.open(channelsUrl(second.url, jupyterKernel), {
      protocols: ['v1.kernel.websocket.jupyter.org'],
      session: ws.session,
    });
    t.is((await reconnected.execute('print(y)')).stdout, 'kept\n');
    await reconnected.close();

    // The kernel that was busy across the restart is adopted busy, and finishes its computation.
    const busyAfter = await second.call('GET', `/v1/kernel/${busy}`);
    t.is(busyAfter.status, 200, 'a kernel busy with a computation is adopted too');
    t.is(busyAfter.body.state, 'busy');
    t.is(stdoutOf(await run(second, busy, 'print(z)')), 'slept\n');
    t.is((await second.call('DELETE', `/api/sessions/${sessions[0].id}`)).status, 204);
  } finally {
    await second?.stop();
    if (orphan) execFileSync('/usr/bin/docker', ['rm', '-f', orphan], { stdio: 'ignore' });
  }
  // Nothing of the instance is left: no container, no socket directory (the state dir is removed by stop).
  t.deepEqual(containersOfInstance(instance), []);
  const instanceDir = instanceConnectionDirs(stateDir, instance);
  const leftovers = existsSync(instanceDir) ? await readdir(instanceDir) : [];
  t.deepEqual(leftovers, []);
  const keys = execFileSync('redis-cli', ['-u', redisUrl, '--scan', '--pattern', `${instance}:*`], { encoding: 'utf8' }).trim();
  t.is(keys, '', 'no store key of the instance is left');
  await rm(stateDir, { recursive: true, force: true });
});

/**
 * Issue #6, Docker engine unreachable: the service starts anyway (adoption of an earlier run's kernels is
 * retried in the background), operations that need the engine answer 503 with a clear message, kernels
 * already running keep executing, and everything recovers on its own once the engine answers again:
 * adoption and reaping happen, deletes made meanwhile remove their containers, and a container that died
 * while the engine was unreachable is noticed (the events stream replays what it missed).
 *
 * The service reaches the engine through a unix-socket proxy of this test (POLYKERNEL_DOCKER_HOST), which
 * is closed and reopened to play the outage; the test itself talks to the real socket.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startTestService, type TestService } from '../helpers/service.js';
import { sleep } from '../helpers/wait.js';
import { containersOfKernel, docker } from '../helpers/docker.js';

/** Forwards a unix socket to the engine's; `close` drops every connection and stops listening. */
class EngineProxy {
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  constructor(readonly socketPath: string, private readonly target = '/var/run/docker.sock') {}

  async open(): Promise<void> {
    if (this.server) return;
    rmSync(this.socketPath, { force: true });
    const server = net.createServer((client) => {
      const upstream = net.connect(this.target);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => (client.destroy(), upstream.destroy()));
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(this.socketPath, resolve));
    this.server = server;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    if (server) await new Promise((resolve) => server.close(resolve));
    rmSync(this.socketPath, { force: true });
  }
}

async function until<T>(what: string, boundMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() - started > boundMs) throw new Error(`${what}: not within ${boundMs} ms`);
    await sleep(250);
  }
}

test('engine unreachable: start anyway, 503 meanwhile, everything recovers on its own', async (t) => {
  t.timeout(180_000);
  const instance = `test-docker-${randomUUID().slice(0, 8)}`;
  const proxy = new EngineProxy(path.join(os.tmpdir(), `pk-docker-${instance}.sock`));
  // A leftover of an earlier run of this instance, to be reaped once the engine answers.
  const orphan = docker('run', '-d', '--label', 'org.polykernel.managed=true', '--label', `org.polykernel.instance=${instance}`, 'polykernel/python:latest', 'sleep', '300');
  // And a judge sandbox of that run.
  const judgeOrphan = docker('run', '-d', '--label', 'org.polykernel.managed=true', '--label', `org.polykernel.instance=${instance}`, '--label', 'org.polykernel.judge=true', 'polykernel/python:latest', 'sleep', '300');
  const execute = { language: 'python', version: '*', files: [{ content: 'print(6 * 7)' }] };
  let svc: TestService | undefined;
  try {
    // 1. The engine is unreachable at start: the service starts and answers 503 for kernel operations.
    svc = await startTestService({ instance, redisPrefix: `${instance}:`, dockerHost: `unix://${proxy.socketPath}` });
    const started = Date.now();
    const create = await svc.call('POST', '/v1/kernel/create', { lang: 'python3' });
    t.true(Date.now() - started < 3000);
    t.is(create.status, 503);
    t.regex(create.body.detail, /Docker engine is unreachable/);
    const jupyterCreate = await svc.call('POST', '/api/kernels', { name: 'python3' });
    t.is(jupyterCreate.status, 503);
    t.regex(jupyterCreate.body.message, /Docker engine is unreachable/);
    t.is((await svc.call('GET', '/api/kernels')).status, 200, 'what needs only the store still answers');
    t.truthy(docker('ps', '-aq', '--filter', `id=${orphan}`), 'nothing is reaped while the engine is unreachable');
    const judged = await svc.call('POST', '/api/v2/execute', execute);
    t.is(judged.status, 503, 'judging waits for the earlier run\'s sandboxes to be removed');
    t.regex(judged.body.message, /Docker engine is unreachable/);
    t.truthy(docker('ps', '-aq', '--filter', `id=${judgeOrphan}`));

    // 2. The engine answers again: adoption runs (the orphan is reaped) and kernels can be created.
    await proxy.open();
    await until('orphan reaped', 20_000, async () => (docker('ps', '-aq', '--filter', `id=${orphan}`) === '' ? true : undefined));
    await until('judge orphan reaped', 20_000, async () => (docker('ps', '-aq', '--filter', `id=${judgeOrphan}`) === '' ? true : undefined));
    const output = await until('judging answers', 20_000, async () => {
      const response = await svc!.call('POST', '/api/v2/execute', execute);
      return response.status === 200 ? (response.body.run.stdout as string) : undefined;
    });
    t.is(output, '42\n');
    const kernel = await until('create succeeds', 20_000, async () => {
      const response = await svc!.call('POST', '/v1/kernel/create', { lang: 'python3' });
      return response.status === 201 ? (response.body.kernelId as string) : undefined;
    });
    const doomed = (await svc.call('POST', '/v1/kernel/create', { lang: 'python3' })).body.kernelId as string;
    const victim = (await svc.call('POST', '/v1/kernel/create', { lang: 'python3' })).body.kernelId as string;
    const doomedContainer = containersOfKernel(doomed);
    const victimContainer = containersOfKernel(victim);
    t.truthy(doomedContainer && victimContainer);

    // 3. The engine goes away under a running service.
    await proxy.close();
    const refused = await svc.call('POST', '/v1/kernel/create', { lang: 'python3' });
    t.is(refused.status, 503);
    t.regex(refused.body.detail, /Docker engine is unreachable/);
    for (const [method, route] of [['PATCH', `/v1/kernel/${kernel}`], ['POST', `/api/kernels/${kernel}/interrupt`], ['POST', `/api/kernels/${kernel}/restart`]] as const) {
      const response = await svc.call(method, route);
      t.is(response.status, 503, `${method} ${route}: ${JSON.stringify(response.body)}`);
    }
    // A restart refused for want of the engine leaves the kernel as it was: variables included.
    const run = await svc.call('POST', `/v1/kernel/${kernel}`, { mode: 'query', code: 'x = 6 * 7\nprint(x)' });
    t.is(run.status, 200, 'a running kernel keeps executing: its sockets do not go through the engine');
    t.deepEqual(run.body.result.console, [['stdout', '42\n']]);
    // A delete is answered at once; the container goes when the engine answers again.
    t.is((await svc.call('DELETE', `/v1/kernel/${doomed}`)).status, 204);
    t.is((await svc.call('GET', `/v1/kernel/${doomed}`)).status, 404);
    // A container dies while the service cannot hear the engine's events.
    docker('kill', victimContainer);
    await sleep(1500);

    // 4. The engine is back: the deferred removal happens and the missed death is noticed.
    await proxy.open();
    await until('deferred removal', 20_000, async () => (containersOfKernel(doomed) === '' ? true : undefined));
    await until('missed death noticed', 20_000, async () => ((await svc!.call('GET', `/v1/kernel/${victim}`)).status === 404 ? true : undefined));
    const after = await svc.call('POST', `/v1/kernel/${kernel}`, { mode: 'query', code: 'print(x)' });
    t.deepEqual(after.body.result.console, [['stdout', '42\n']]);
    t.is((await svc.call('PATCH', `/v1/kernel/${kernel}`)).status, 204);
    t.is((await svc.call('DELETE', `/v1/kernel/${kernel}`)).status, 204);
    await svc.service.kernels.settled();
  } finally {
    await proxy.open().catch(() => undefined);
    await svc?.stop();
    await proxy.close();
    execFileSync('/usr/bin/docker', ['rm', '-f', orphan, judgeOrphan], { stdio: 'ignore' });
  }
  t.is(docker('ps', '-aq', '--filter', `label=org.polykernel.instance=${instance}`), '', 'no container of the instance is left');
});

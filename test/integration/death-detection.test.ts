/**
 * Issue #6: a kernel container that dies or is killed from outside is noticed within seconds (Docker
 * events, not polling) and reported with its reason: `killed`, `exit code N`, `out-of-memory`. The kernel
 * is gone (404 with the reason), a v1 run in progress ends with a stderr item naming it, the channels
 * WebSocket sees a `dead` status and is closed, and the manager's `removed` event carries it.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { connectionDirOf } from '../../src/kernels/conn-dir.js';
import { JupyterWs } from '../helpers/jupyter-ws.js';
import { startTestService, type TestService } from '../helpers/service.js';
import { createKernel, whenBusy } from '../helpers/v1-client.js';
import { sleep } from '../helpers/wait.js';
import { channelsUrl } from '../helpers/jupyter-client.js';
import { containersOfKernel, docker } from '../helpers/docker.js';

let svc: TestService;
const removed = new Map<string, string>();

test.before(async () => {
  // A long flush window: the run below is still in its first call when the container dies.
  svc = await startTestService({ flushWindowMs: 30_000 });
  svc.service.kernels.on('removed', (kernelId, reason) => removed.set(kernelId, reason));
});

test.after.always(async () => {
  await svc?.stop();
});

/** Polls until GET answers 404; resolves with the time it took. */
async function goneWithin(kernelId: string, boundMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < boundMs) {
    if ((await svc.call('GET', `/v1/kernel/${kernelId}`)).status === 404) return Date.now() - started;
    await sleep(100);
  }
  throw new Error(`kernel ${kernelId} still answers GET after ${boundMs} ms`);
}

/** The reason the manager's `removed` event gave for a kernel; it comes once cleanup is done. */
async function removalReason(kernelId: string, boundMs = 5000): Promise<string> {
  const started = Date.now();
  while (!removed.has(kernelId) && Date.now() - started < boundMs) await sleep(50);
  return removed.get(kernelId) ?? '';
}

/**
 * Starts a long v1 run, waits until the kernel is busy in it (and, given `printed`, until its first
 * output was published), and then kills the container from outside with `kill`. Resolves with the run's
 * answer and how long detection took.
 */
async function killDuringRun(kernelId: string, code: string, kill: () => void, printed?: Promise<unknown>) {
  const answer = svc.call('POST', `/v1/kernel/${kernelId}`, { mode: 'query', code });
  // Busy comes before the first print: a kill right after busy can beat it on a loaded machine.
  await whenBusy(svc.call, kernelId);
  await printed;
  const killedAt = Date.now();
  kill();
  const response = await answer;
  return { response, ms: Date.now() - killedAt };
}

test('docker kill from outside: the run ends with "killed", the kernel is gone within seconds, WebSocket told', async (t) => {
  const id = await createKernel(svc.call);
  const ws = await JupyterWs.open(channelsUrl(svc.url, id), { protocols: ['v1.kernel.websocket.jupyter.org'] });
  const containerId = containersOfKernel(id);
  t.truthy(containerId);
  // iopub reaches every client of the kernel: the channels socket sees the run's print.
  const printed = ws.next((m) => m.header.msg_type === 'stream' && String(m.content.text).includes('started'), 30_000, 'the print');
  const { response, ms } = await killDuringRun(id, 'import time\nprint("started", flush=True)\ntime.sleep(60)', () => docker('kill', containerId), printed);
  t.log(`run answered ${ms} ms after docker kill`);
  t.true(ms < 5000, `noticed in ${ms} ms`);
  t.is(response.status, 200);
  t.is(response.body.result.status, 'finished');
  t.is(response.body.result.exitCode, 137);
  t.deepEqual(response.body.result.console[0], ['stdout', 'started\n']);
  t.deepEqual(response.body.result.console.at(-1), ['stderr', '\n[kernel died: killed]\n']);

  await goneWithin(id, 5000);
  t.is(await removalReason(id), 'killed', "the manager's removed event carries the reason");
  // The reason stays visible to a client that still uses the kernel.
  const late = await svc.call('POST', `/v1/kernel/${id}`, { mode: 'query', code: '1' });
  t.is(late.status, 404);
  t.regex(late.body.detail, /gone \(killed\)/);
  // The channels client saw the kernel die and was disconnected with the reason.
  await ws.next((m) => m.header.msg_type === 'status' && m.content.execution_state === 'dead', 5000, 'dead status');
  for (let i = 0; i < 50 && !ws.closed; i++) await sleep(100);
  t.is(ws.closed?.code, 1000);
  t.regex(ws.closed?.reason ?? '', /killed/);
  // Nothing left behind.
  await svc.service.kernels.settled();
  t.is(containersOfKernel(id), '');
  t.false(existsSync(connectionDirOf(svc.config.stateDir, svc.config.instance, id)));
});

test('SIGTERM to the container: the kernel exits and is reported with its exit code', async (t) => {
  const id = await createKernel(svc.call);
  const containerId = containersOfKernel(id);
  const { response, ms } = await killDuringRun(id, 'import time\nprint("started", flush=True)\ntime.sleep(60)', () =>
    docker('kill', '--signal', 'SIGTERM', containerId),
  );
  t.log(`run answered ${ms} ms after SIGTERM`);
  t.true(ms < 5000, `noticed in ${ms} ms`);
  t.is(response.body.result.status, 'finished');
  // Runs are ended as soon as the death is known; the removed event follows once the kernel is cleaned up.
  const reason = await removalReason(id);
  // The init forwards SIGTERM to the kernel, which dies of it: 128 + 15.
  t.is(reason, 'exit code 143');
  t.log(`reason: ${reason}`);
  t.deepEqual(response.body.result.console.at(-1), ['stderr', `\n[kernel died: ${reason}]\n`]);
  await goneWithin(id, 5000);
});

test('a kernel over its memory cap is reported out-of-memory', async (t) => {
  // 64 MB: filling 400 MB makes the kernel's cgroup hit its cap at once.
  const id = await createKernel(svc.call, { lang: 'python3', resourceLimits: { maxMem: 65536 } });
  const response = await svc.call('POST', `/v1/kernel/${id}`, {
    mode: 'query',
    code: 'print("started", flush=True)\nblocks = [b"x" * (16 * 1024 * 1024) for _ in range(25)]',
  });
  t.is(response.body.result.status, 'finished');
  t.is(response.body.result.exitCode, 137);
  t.deepEqual(response.body.result.console.at(-1), ['stderr', '\n[kernel died: out-of-memory]\n']);
  await goneWithin(id, 5000);
  t.is(await removalReason(id), 'out-of-memory');
});

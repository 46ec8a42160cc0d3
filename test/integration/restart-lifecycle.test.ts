/**
 * What a restart means for the clients of a kernel, now that it stops the container, makes a new socket
 * directory and starts it again: a message sent over the channels while the kernel restarts runs in the
 * new kernel, once its directory is sealed; overlapping restarts and a delete during a restart of one
 * kernel run one after the other and all answer well; the directory is sealed after every restart.
 */
import test from 'ava';
import { lstatSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { JupyterWs, V1 } from '../helpers/jupyter-ws.js';
import { startTestService, type TestService } from '../helpers/service.js';
import { sleep } from '../helpers/wait.js';
import { channelsUrl, startKernel } from '../helpers/jupyter-client.js';
import { containersOfKernel } from '../helpers/docker.js';

let svc: TestService;
test.before(async () => {
  svc = await startTestService({ flushWindowMs: 20_000 });
});
test.after.always(async () => {
  await svc?.stop();
});

function assertSealed(t: import('ava').ExecutionContext, connDir: string) {
  const dir = lstatSync(connDir);
  t.is(dir.uid, 0, 'the socket directory is root\'s');
  t.is(dir.mode & 0o777, 0o750);
  for (const name of readdirSync(connDir)) {
    const entry = lstatSync(path.join(connDir, name));
    t.true(name === 'conn.json' ? entry.uid === 0 && (entry.mode & 0o222) === 0 : entry.isSocket() && /^k-\d$/.test(name), `unexpected ${name}`);
  }
}

test.serial('an execute sent while the kernel restarts runs in the new kernel, after the restart', async (t) => {
  const id = await startKernel(svc.call);
  const ws = await JupyterWs.open(channelsUrl(svc.url, id), { protocols: [V1] });
  try {
    t.is((await ws.execute('before = 1')).reply.content.status, 'ok');
    const restarting = svc.call('POST', `/api/kernels/${id}/restart`);
    // The service marks the kernel restarting at once; the message goes out in that window.
    for (let i = 0; i < 200 && (await svc.service.kernels.get(id)).state !== 'restarting'; i++) await sleep(5);
    const during = ws.send('shell', 'execute_request', { code: 'print("before" in dir())', silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true });
    const restarted = await restarting;
    t.is(restarted.status, 200, JSON.stringify(restarted.body));
    const reply = await ws.reply(during, 'execute_reply');
    t.is(reply.content.status, 'ok');
    await ws.idle(during);
    const printed = ws.received.filter((m) => m.parent_header.msg_id === during && m.header.msg_type === 'stream').map((m) => m.content.text).join('');
    t.is(printed, 'False\n', 'it ran in the fresh kernel');
    assertSealed(t, (await svc.service.kernels.get(id)).connDir);
  } finally {
    await ws.close();
    await svc.call('DELETE', `/api/kernels/${id}`);
  }
});

test.serial('overlapping restarts of one kernel run one after the other; a delete during them waits and removes it', async (t) => {
  t.timeout(180_000);
  for (let round = 0; round < 4; round++) {
    const id = await startKernel(svc.call);
    const record = await svc.service.kernels.get(id);
    const restarts = [
      svc.call('POST', `/api/kernels/${id}/restart`),
      svc.call('PATCH', `/v1/kernel/${id}`),
      svc.call('POST', `/api/kernels/${id}/restart`),
    ];
    await sleep(round * 30);
    const deleted = svc.call('DELETE', `/api/kernels/${id}`);
    const answers = await Promise.all(restarts);
    t.deepEqual(answers.map((a) => a.status), [200, 204, 200], `round ${round}: ${JSON.stringify(answers.map((a) => a.body))}`);
    t.is((await deleted).status, 204, `round ${round}: the delete waited for the restarts`);
    t.is((await svc.call('GET', `/api/kernels/${id}`)).status, 404);
    t.is((await svc.call('DELETE', `/api/kernels/${id}`)).status, 404, 'a second delete finds nothing');
    await svc.service.kernels.settled();
    t.is(containersOfKernel(id), '', 'no container is left');
    t.throws(() => lstatSync(record.connDir), { code: 'ENOENT' }, 'nor its socket directory');
  }
});

test.serial('a restart that follows a restart leaves a working, sealed kernel', async (t) => {
  const id = await startKernel(svc.call);
  try {
    for (let i = 0; i < 3; i++) t.is((await svc.call('POST', `/api/kernels/${id}/restart`)).status, 200);
    const ws = await JupyterWs.open(channelsUrl(svc.url, id), { protocols: [V1] });
    t.is((await ws.execute('print(6*7)')).stdout, '42\n');
    await ws.close();
    assertSealed(t, (await svc.service.kernels.get(id)).connDir);
  } finally {
    await svc.call('DELETE', `/api/kernels/${id}`);
  }
});

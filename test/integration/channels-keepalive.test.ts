/**
 * Keep-alive on the channels WebSocket (as jupyter_server's ws_ping_interval): the service pings every
 * connection; one that answers stays open and usable, one silent for three intervals is closed and no
 * longer counted as a connection of its kernel.
 */
import test from 'ava';
import WebSocket from 'ws';
import { startTestService, type TestService } from '../helpers/service.js';
import { JupyterWs } from '../helpers/jupyter-ws.js';
import { sleep } from '../helpers/wait.js';
import { channelsUrl, startKernel } from '../helpers/jupyter-client.js';

const PING_MS = 300;
let svc: TestService;
let kernelId: string;
let wsUrl: string;

test.before(async () => {
  svc = await startTestService({ wsPingIntervalMs: PING_MS });
  kernelId = await startKernel(svc.call);
  wsUrl = channelsUrl(svc.url, kernelId);
});

test.after.always(async () => {
  await svc?.stop();
});

test.serial('a client that answers pings stays connected and usable', async (t) => {
  const client = await JupyterWs.open(wsUrl);
  let pings = 0;
  client.ws.on('ping', () => pings++);
  await sleep(8 * PING_MS);
  t.true(pings >= 3, `${pings} pings in ${8 * PING_MS} ms`);
  t.is(client.ws.readyState, WebSocket.OPEN);
  t.is((await client.execute('print(7 * 6)')).stdout, '42\n');
  await client.close();
});

test.serial('a client silent for three ping intervals is closed and no longer counted', async (t) => {
  // autoPong off: this client never answers a ping, like one whose network went away without a close.
  const silent = new WebSocket(wsUrl, { autoPong: false });
  await new Promise((resolve, reject) => silent.once('open', resolve).once('error', reject));
  const opened = Date.now();
  t.is((await svc.call('GET', `/api/kernels/${kernelId}`)).body.connections, 1);
  const closedAfter = await new Promise<number>((resolve) => silent.once('close', () => resolve(Date.now() - opened)));
  t.true(closedAfter >= 3 * PING_MS, `closed after ${closedAfter} ms`);
  t.true(closedAfter < 20_000, `closed after ${closedAfter} ms`);
  let connections = -1;
  for (let i = 0; i < 50 && connections !== 0; i++) {
    connections = (await svc.call('GET', `/api/kernels/${kernelId}`)).body.connections;
    if (connections !== 0) await sleep(100);
  }
  t.is(connections, 0);
});

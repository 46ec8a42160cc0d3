/**
 * Attack: a channels WebSocket client that never reads while its kernel floods output. The service must
 * not queue the flood for it: past POLYKERNEL_WS_MAX_BUFFERED_BYTES the connection is closed (1008, or cut
 * when the client does not take the close), the service's RSS (its own process) stays bounded, and a
 * second client of the same kernel keeps receiving everything to the end of the run.
 */
import test from 'ava';
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { startServiceProcess, type ServiceProcess } from '../helpers/service-process.js';
import { sleep } from '../helpers/wait.js';
import { channelsUrl, startKernel } from '../helpers/jupyter-client.js';

const CAP = 16 * 1024 * 1024;
const FLOOD_SECONDS = 12;
/** The flood is hundreds of MB; the cap and the reader's socket buffers are a few. */
const MAX_RSS_GROWTH_KB = 200 * 1024;

let svc: ServiceProcess;
let wsUrl: string;

test.before(async () => {
  svc = await startServiceProcess({ label: 'attack-ws', env: { POLYKERNEL_WS_MAX_BUFFERED_BYTES: String(CAP) } });
  wsUrl = channelsUrl(svc.url, await startKernel((method, route, body) => svc.http.call(method, route, body)));
});

test.after.always(async () => {
  await svc?.stop();
});

const open = (url: string) =>
  new Promise<WebSocket>((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });

test.serial('a client that never reads is closed past its cap; another client of the kernel receives the whole flood', async (t) => {
  t.timeout(90_000);
  const stalled = await open(`${wsUrl}?session_id=${randomUUID()}`);
  // Never read: the socket under the client is paused, so TCP pushes back on the service.
  ((stalled as unknown as { _socket: Socket })._socket).pause();
  let stalledClose: { code: number; at: number } | undefined;
  stalled.on('close', (code) => (stalledClose = { code, at: Date.now() }));

  const session = randomUUID();
  const reader = await open(`${wsUrl}?session_id=${session}`);
  let readerClose: number | undefined;
  reader.on('close', (code) => (readerClose = code));
  const msgId = randomUUID();
  let receivedBytes = 0;
  let sawIdle = false;
  const idle = new Promise<void>((resolve) => {
    reader.on('message', (data: Buffer) => {
      receivedBytes += data.length;
      if (data.length < 2000) {
        const text = data.toString();
        // The execute_reply (shell: never dropped, unlike iopub under a flood) ends the run.
        if (text.includes(msgId) && text.includes('execute_reply')) {
          const msg = JSON.parse(text);
          if (msg.parent_header.msg_id === msgId && msg.header.msg_type === 'execute_reply') {
            sawIdle = true;
            resolve();
          }
        }
      }
    });
  });

  const baseline = svc.rssKB();
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, svc.rssKB())), 100);
  const started = Date.now();
  reader.send(
    JSON.stringify({
      channel: 'shell',
      header: { msg_id: msgId, msg_type: 'execute_request', session, username: 't', date: new Date().toISOString(), version: '5.3' },
      parent_header: {},
      metadata: {},
      content: {
        // About 30 MB/s: a client that reads keeps up with it; one that does not passes its cap in a second.
        code: `import time\nend = time.time() + ${FLOOD_SECONDS}\ns = "x" * 65535\nwhile time.time() < end:\n    print(s, flush=True)\n    time.sleep(0.002)`,
        silent: false,
        store_history: false,
        user_expressions: {},
        allow_stdin: false,
        stop_on_error: true,
      },
    }),
  );
  try {
    await Promise.race([idle, sleep(60_000)]);
  } finally {
    clearInterval(sampler);
  }
  const growth = peak - baseline;
  t.log(`reader received ${(receivedBytes / 1048576).toFixed(0)} MB; stalled client ${stalledClose ? `closed with ${stalledClose.code} after ${stalledClose.at - started} ms` : 'still open'}`);
  t.log(`reader ${readerClose === undefined ? 'still open' : `closed with ${readerClose}`}`);
  t.log(`service RSS baseline ${baseline} KB, peak ${peak} KB, growth ${growth} KB`);
  t.true(sawIdle, `the reading client got the run to its end; service log: ${svc.stderr().slice(-2000)}`);
  t.true(receivedBytes > 50 * 1024 * 1024, `the reading client received ${receivedBytes} bytes`);
  t.true(growth < MAX_RSS_GROWTH_KB, `the service's RSS grew ${growth} KB`);
  // The stalled client is gone for the service: once it reads again it sees the close (or the cut).
  ((stalled as unknown as { _socket: Socket })._socket).resume();
  const deadline = Date.now() + 20_000;
  while (!stalledClose && Date.now() < deadline) await sleep(100);
  t.truthy(stalledClose, 'the stalled client was closed');
  t.true(stalledClose === undefined || stalledClose.code === 1008 || stalledClose.code === 1006, `close code ${stalledClose?.code}`);
  reader.close();
});

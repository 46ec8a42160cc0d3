/**
 * Attack: a client of the v1 streaming socket that never reads. The service must not queue output for it:
 * it stops taking output from the run (which keeps at most POLYKERNEL_MAX_OUTPUT_BYTES) and stops reading
 * the client's frames while its unread output passes POLYKERNEL_STREAM_HIGH_WATER_BYTES. Looped: a run
 * that floods without end, then runs started one after the other, each printing megabytes, for as long
 * as the client keeps sending them. The service's RSS (its own process) stays bounded, the client that
 * goes away interrupts its run, and the kernel answers afterwards.
 */
import test from 'ava';
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { startServiceProcess, type ServiceProcess } from '../helpers/service-process.js';
import { createKernel, runToEnd } from '../helpers/v1-client.js';
import { streamUrl } from '../helpers/v1-stream.js';
import { eventually, sleep } from '../helpers/wait.js';

/** Output a run keeps: large, so that what the socket queues would show if it queued without bound. */
const MAX_OUTPUT_BYTES = 8 * 1024 * 1024;
/** Hundreds of MB are printed; the bounds are a run's output and a high-water mark, and a process's noise. */
const MAX_RSS_GROWTH_KB = 120 * 1024;

let svc: ServiceProcess;
let kernel: string;
const call = (method: string, route: string, body?: unknown) => svc.http.call(method, route, body);

test.before(async () => {
  svc = await startServiceProcess({ label: 'attack-stream', env: { POLYKERNEL_MAX_OUTPUT_BYTES: String(MAX_OUTPUT_BYTES) } });
  kernel = await createKernel(call);
});

test.after.always(async () => {
  await svc?.stop();
});

/** A client that sends but never reads: the socket under it is paused, so TCP pushes back on the service. */
async function stalledClient(): Promise<WebSocket> {
  const ws = new WebSocket(streamUrl(svc.url, kernel));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  (ws as unknown as { _socket: Socket })._socket.pause();
  return ws;
}

/** Samples the service's RSS every 100 ms while `during` runs; returns the peak growth over the start. */
async function rssGrowth(during: () => Promise<void>): Promise<{ baseline: number; peak: number }> {
  const baseline = svc.rssKB();
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, svc.rssKB())), 100);
  try {
    await during();
  } finally {
    clearInterval(sampler);
  }
  return { baseline, peak };
}

async function kernelAnswers(): Promise<boolean> {
  return eventually(async () => (await runToEnd(call, kernel, { mode: 'query', code: 'print("alive")' })).text === 'alive\n', 20_000, 500);
}

test.serial('a never-reading client of an endless flood costs the service a bounded amount; leaving interrupts the run', async (t) => {
  t.timeout(120_000);
  const ws = await stalledClient();
  const { baseline, peak } = await rssGrowth(async () => {
    // About 30 MB/s for as long as the client stays.
    ws.send(JSON.stringify({ mode: 'query', code: 'import time\ns = "x" * 65535\nwhile True:\n    print(s, flush=True)\n    time.sleep(0.002)' }));
    await sleep(12_000);
  });
  t.log(`endless flood: service RSS baseline ${baseline} KB, peak ${peak} KB, growth ${peak - baseline} KB`);
  t.true(peak - baseline < MAX_RSS_GROWTH_KB, `the service's RSS grew ${peak - baseline} KB`);
  ws.terminate();
  t.true(await kernelAnswers(), `the flood was interrupted and the kernel answers; service log: ${svc.stderr().slice(-2000)}`);
});

test.serial('a never-reading client that keeps starting runs is not read: memory stays bounded', async (t) => {
  t.timeout(120_000);
  const ws = await stalledClient();
  let sent = 0;
  const { baseline, peak } = await rssGrowth(async () => {
    // Five runs a second, each printing 4 MB: up to 20 MB/s that nobody reads, for 15 s.
    const end = Date.now() + 15_000;
    while (Date.now() < end) {
      ws.send(JSON.stringify({ mode: 'query', code: 'for i in range(40): print("y" * 100_000)' }));
      sent++;
      await sleep(200);
    }
  });
  t.log(`${sent} runs sent: service RSS baseline ${baseline} KB, peak ${peak} KB, growth ${peak - baseline} KB; client's own unsent ${ws.bufferedAmount} bytes`);
  t.true(peak - baseline < MAX_RSS_GROWTH_KB, `the service's RSS grew ${peak - baseline} KB`);
  ws.terminate();
  t.true(await kernelAnswers(), 'the kernel answers afterwards');
});

/**
 * Attack: a kernel made of many processes, short-lived ones churning among them, while the service
 * samples its usage (POLYKERNEL_STATS_INTERVAL_MS). Every sample reads each process's /proc figures;
 * whatever the kernel does, the service's own file descriptors stay where they were.
 */
import test from 'ava';
import { readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServiceProcess, type ServiceProcess } from '../helpers/service-process.js';
import { runToEnd } from '../helpers/v1-client.js';

const KEPT = 40;
const SECONDS = 8;
/** Sockets and files the service opens for its own work meanwhile (HTTP, the engine, the kernel). */
const MAX_FD_GROWTH = 30;

let svc: ServiceProcess;

test.before(async () => {
  svc = await startServiceProcess({ label: 'attack-fds', env: { POLYKERNEL_STATS_INTERVAL_MS: '100' } });
});

test.after.always(async () => {
  await svc?.stop();
});

const openFds = () => readdirSync(`/proc/${svc.pid}/fd`).length;

test.serial(`${KEPT} processes kept and others exiting all the time, sampled every 100 ms for ${SECONDS} s: the service's fds stay bounded`, async (t) => {
  t.timeout(120_000);
  const { kernelId } = await svc.http.ok('POST', '/v1/kernel/create', { lang: 'python3', resourceLimits: { timeout: 60_000 } });
  await svc.http.ok('POST', `/v1/kernel/${kernelId}`, { mode: 'query', code: 'print("warm")' });
  const before = openFds();
  const code = [
    'import subprocess, time',
    `kept = [subprocess.Popen(["sleep", "${SECONDS + 5}"]) for _ in range(${KEPT})]`,
    'end = time.time() + ' + SECONDS,
    'churned = 0',
    'while time.time() < end:',
    '    subprocess.Popen(["true"]).wait()',
    '    churned += 1',
    'for p in kept: p.kill(); p.wait()',
    'print("churned", churned)',
  ].join('\n');
  const run = runToEnd((method, route, body) => svc.http.call(method, route, body), kernelId, { mode: 'query', code });
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, openFds())), 200);
  let result;
  try {
    result = await run;
    await sleep(500);
  } finally {
    clearInterval(sampler);
  }
  t.is(result.status, 'finished', result.text);
  t.regex(result.text, /churned \d+/);
  const after = openFds();
  t.log(`service fds: ${before} before, peak ${peak}, ${after} after`);
  t.true(peak - before < MAX_FD_GROWTH, `fds grew from ${before} to ${peak} while the kernel ran`);
  t.true(after - before < MAX_FD_GROWTH, `fds grew from ${before} to ${after}`);
  await svc.http.call('DELETE', `/v1/kernel/${kernelId}`);
});

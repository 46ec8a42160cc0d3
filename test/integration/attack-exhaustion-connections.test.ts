/**
 * Attack: thousands of half-open TCP connections (silent, or half a request; no token) from one address. The service's
 * file descriptors must not run out: a request from another address is still answered quickly, and the
 * half-open ones are closed by the service once the header timeout is over.
 *
 * The service runs as its own process with its descriptor limit lowered (prlimit) so that the attack
 * needs a few thousand sockets, not the host's whole limit.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { startServiceProcess, type ServiceProcess } from '../helpers/service-process.js';
import { sleep } from '../helpers/wait.js';

const SERVICE_NOFILE = 3000;
const HALF_OPEN = 4000;

let svc: ServiceProcess;
let port: number;

test.before(async () => {
  svc = await startServiceProcess({
    label: 'attack-conn',
    env: { POLYKERNEL_HEADERS_TIMEOUT_MS: '3000', POLYKERNEL_MAX_CONNECTIONS_PER_PEER: '256', POLYKERNEL_MAX_CONNECTIONS: '2000' },
  });
  execFileSync('prlimit', [`--pid=${svc.pid}`, `--nofile=${SERVICE_NOFILE}:${SERVICE_NOFILE}`]);
  port = Number(new URL(svc.url).port);
});

test.after.always(async () => {
  await svc?.stop();
});

/** GET /api from a given local address; the time it took, or the error. */
function get(localAddress: string, timeoutMs: number): Promise<{ status?: number; ms: number; error?: string }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/api', localAddress, agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, ms: Date.now() - started }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (error) => resolve({ ms: Date.now() - started, error: error.message }));
  });
}

test.serial(`${HALF_OPEN} half-open connections from one address: another address is answered, and they are closed after the header timeout`, async (t) => {
  t.timeout(90_000);
  const sockets: net.Socket[] = [];
  let closedByService = 0;
  try {
    for (let i = 0; i < HALF_OPEN; i++) {
      const socket = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.1' });
      socket.on('error', () => undefined);
      socket.on('close', () => closedByService++);
      // Half of them send half a request, never finished; the other half never send a byte.
      if (i % 2 === 0) socket.write('GET /api HTTP/1.1\r\nHost: x\r\n');
      sockets.push(socket);
      if (i % 500 === 499) await sleep(50);
    }
    await sleep(1000);
    const other = await get('127.0.0.2', 10_000);
    t.log(`GET /api from 127.0.0.2 while ${HALF_OPEN} half-open: ${other.status ?? other.error} in ${other.ms} ms`);
    t.is(other.status, 200, `GET /api from another address: ${other.error ?? other.status}`);
    t.true(other.ms < 5000, `answered in ${other.ms} ms`);
    // After the header timeout (3 s, checked every second) the service has closed what it kept.
    const deadline = Date.now() + 15_000;
    while (closedByService < HALF_OPEN && Date.now() < deadline) await sleep(200);
    t.log(`${closedByService} of ${HALF_OPEN} half-open connections closed by the service`);
    t.is(closedByService, HALF_OPEN);
    const again = await get('127.0.0.1', 10_000);
    t.is(again.status, 200, 'the attacking address itself is served again once its sockets are gone');
  } finally {
    for (const socket of sockets) socket.destroy();
  }
});

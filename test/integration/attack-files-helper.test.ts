/**
 * Attacks on the v1 files routes from inside the kernel: its code runs as the same user as the file helper
 * (images/base/files/files.c) and `timeout` above it, so it can see them in /proc and signal them. A
 * kernel that SIGSTOPs both leaves the `docker exec` open for good: nothing in the container ends it, so
 * the service must give up on its own (POLYKERNEL_FILES_TIMEOUT_MS and a little more), answer the client
 * and let go of the engine connection — else every list, download or upload of such a kernel holds a
 * request and a socket in the service forever, even after its client left.
 */
import test from 'ava';
import { startTestService, type TestService } from '../helpers/service.js';
import { createKernel, query, queryText } from '../helpers/v1-client.js';
import { sleep } from '../helpers/wait.js';

const FILES_TIMEOUT_MS = 2000;
let svc: TestService;

test.before(async () => {
  svc = await startTestService({ filesTimeoutMs: FILES_TIMEOUT_MS, flushWindowMs: 20_000 });
});

test.after.always(async () => {
  await svc?.stop();
});

const py = (id: string, code: string) => queryText(svc.call, id, code);

/**
 * Starts, in the kernel's container, a process of the kernel's user that SIGSTOPs every `timeout` and file
 * helper it sees, as fast as it can, for `seconds`.
 */
async function startStopper(id: string, seconds: number): Promise<void> {
  const loop = [
    'import os, signal, time',
    `end = time.time() + ${seconds}`,
    'while time.time() < end:',
    '    for p in os.listdir("/proc"):',
    '        if not p.isdigit(): continue',
    '        try:',
    '            comm = open(f"/proc/{p}/comm").read().strip()',
    '            if comm in ("timeout", "files"): os.kill(int(p), signal.SIGSTOP)',
    '        except OSError: pass',
  ].join('\n');
  await py(id, `import subprocess, sys\nsubprocess.Popen([sys.executable, "-c", ${JSON.stringify(loop)}], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\nprint("started")`);
}

/** How many processes of the helper (or its timeout) are stopped in the container. */
async function stoppedHelpers(id: string): Promise<number> {
  const text = await py(
    id,
    'import os\nn = 0\nfor p in os.listdir("/proc"):\n    if not p.isdigit(): continue\n    try:\n        s = open(f"/proc/{p}/stat").read()\n    except OSError: continue\n    comm = s[s.index("(")+1:s.rindex(")")]\n    state = s[s.rindex(")")+2]\n    if comm in ("timeout", "files") and state == "T": n += 1\nprint(n)',
  );
  return Number(text.trim());
}

const BOUNDARY = 'pk-attack-boundary';
const multipart = (name: string, data: string) =>
  Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\n\r\n${data}\r\n--${BOUNDARY}--\r\n`);

/** One files request, given up by the client after `clientMs` (then `status` is 0). */
const attempt = (kind: 'list' | 'download' | 'upload', id: string, clientMs: number) => attemptOn(svc, kind, id, clientMs);

async function attemptOn(svc: TestService, kind: 'list' | 'download' | 'upload', id: string, clientMs: number): Promise<{ status: number; ms: number; body: string }> {
  const started = Date.now();
  const url =
    kind === 'list' ? `${svc.url}/v1/kernel/${id}/files` : kind === 'download' ? `${svc.url}/v1/kernel/${id}/download?file=data.txt` : `${svc.url}/v1/kernel/${id}/upload`;
  const init: RequestInit =
    kind === 'upload'
      ? { method: 'POST', headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` }, body: multipart('up.txt', 'uploaded') }
      : {};
  try {
    const response = await fetch(url, { ...init, signal: AbortSignal.timeout(clientMs) });
    const body = await response.text();
    return { status: response.status, ms: Date.now() - started, body };
  } catch {
    return { status: 0, ms: Date.now() - started, body: 'no answer' };
  }
}

test.serial('a kernel that SIGSTOPs the file helper and its timeout: list, download and upload are answered with an error past the files timeout, never left hanging', async (t) => {
  t.timeout(120_000);
  const id = await createKernel(svc.call);
  await py(id, 'open("data.txt", "w").write("x" * 100000)');
  await startStopper(id, 90);
  let caught = 0;
  for (const kind of ['list', 'download', 'upload', 'list', 'download', 'upload'] as const) {
    // Without a deadline of the service's own the request never ends: the client gives up at 20 s.
    const result = await attempt(kind, id, 20_000);
    t.not(result.status, 0, `${kind}: the service answered (took ${result.ms} ms)`);
    if (result.status === 0) continue;
    if (result.status >= 500) {
      caught++;
      t.regex(result.body, /POLYKERNEL_FILES_TIMEOUT_MS/, `${kind}: the error names the option`);
      t.true(result.ms >= FILES_TIMEOUT_MS - 100, `${kind}: not before the helper's own timeout`);
    }
  }
  t.log(`requests whose helper was stopped: ${caught} of 6; stopped helper processes in the container: ${await stoppedHelpers(id)}`);
  t.true(caught >= 2, 'the stopper caught the helper at least twice (else the attack did not happen)');
  // The kernel itself still answers, and once the stopper ends, files work again.
  t.is(await py(id, 'print(6*7)'), '42\n');
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

test.serial('a client that leaves while the helper is stopped before its header: the service lets the engine connection go', async (t) => {
  t.timeout(90_000);
  const id = await createKernel(svc.call);
  await py(id, 'open("data.txt", "w").write("y" * 1000)');
  await startStopper(id, 60);
  const before = await openEngineSockets();
  // Clients that give up after 300 ms each, with the helper stopped: nothing may stay behind them.
  for (let i = 0; i < 8; i++) await attempt(i % 2 ? 'list' : 'download', id, 300);
  await sleep(FILES_TIMEOUT_MS + 6000);
  const after = await openEngineSockets();
  t.log(`sockets to the engine: ${before} before, ${after} after 8 abandoned requests`);
  t.true(after <= before + 2, `sockets to the Docker engine do not pile up (${before} -> ${after})`);
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

/** Unix sockets this process holds open to the Docker engine (counted from /proc/self/fd and /proc/net/unix). */
async function openEngineSockets(): Promise<number> {
  const { readdirSync, readlinkSync, readFileSync } = await import('node:fs');
  const inodes = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const link = readlinkSync(`/proc/self/fd/${fd}`);
      const match = /^socket:\[(\d+)\]$/.exec(link);
      if (match) inodes.add(match[1]!);
    } catch {
      // closed meanwhile
    }
  }
  // Connected client sockets to a path have no path of their own: count every connected unix socket of ours.
  let count = 0;
  for (const line of readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length >= 7 && inodes.has(fields[6]!) && fields[5] === '03') count++;
  }
  return count;
}

test.serial('many parallel transfers on one kernel: each is answered (200 or a clear 4xx/5xx), none is an unhandled error, and the kernel still runs', async (t) => {
  t.timeout(120_000);
  const svc = await startTestService({ flushWindowMs: 20_000 });
  t.teardown(() => svc.stop());
  const py = async (id: string, code: string) => (await query(svc.call, id, code)).text;
  const attempt = (kind: 'list' | 'download' | 'upload', id: string, ms: number) => attemptOn(svc, kind, id, ms);
  const id = await createKernel(svc.call);
  await py(id, 'open("data.txt", "w").write("z" * 200000)');
  const statuses = new Map<number, number>();
  const bodies = new Set<string>();
  for (let round = 0; round < 2; round++) {
    const results = await Promise.all(
      Array.from({ length: 120 }, (_, i) => attempt(i % 3 === 0 ? 'list' : i % 3 === 1 ? 'download' : 'upload', id, 50_000)),
    );
    for (const result of results) {
      statuses.set(result.status, (statuses.get(result.status) ?? 0) + 1);
      if (result.status >= 400) bodies.add(result.body.slice(0, 300));
    }
  }
  t.log(`statuses: ${JSON.stringify([...statuses])}`);
  for (const body of bodies) t.log(body);
  t.false(statuses.has(0), 'every request is answered');
  for (const body of bodies) t.notRegex(body, /Internal Server Error|internal error/i, 'no request fails as an internal error');
  t.is(await py(id, 'print(6*7)'), '42\n');
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

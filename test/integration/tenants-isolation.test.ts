/**
 * Tenants against a real Docker engine and store: two API keys, A and B, and the admin token. A tries
 * every way to reach B's kernels, sessions and executions (list, get, attach over the channels
 * WebSocket, interrupt, restart, delete, execute, B's clientSessionToken, B's session path, B's kernel id
 * in a session) and must see only 404s that look exactly like unknown ids, while B's kernels stay
 * untouched; the admin sees everything; a revoked key is refused at once, WebSocket included.
 */
import test from 'ava';
import { chmod, cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { JupyterWs } from '../helpers/jupyter-ws.js';
import { startTestService, type TestService } from '../helpers/service.js';
import { auth, KeysFile, type KeyEntry } from '../helpers/tenant-keys.js';
import { sleep } from '../helpers/wait.js';
import { channelsUrl } from '../helpers/jupyter-client.js';
import { containersOfInstance } from '../helpers/docker.js';

const ADMIN = 'tenants-admin-token';
const A_KEY = 'key-of-tenant-a-0123456789';
const B_KEY = 'key-of-tenant-b-0123456789';
const ENTRIES: KeyEntry[] = [
  { id: 'tenant-a', key: A_KEY, maxKernels: 6 },
  { id: 'tenant-b', key: B_KEY, maxKernels: 6 },
];
const UNKNOWN = '00000000-0000-4000-8000-000000000000';

let svc: TestService;
let keys: KeysFile;
let root: string;
const A = auth(A_KEY);
const B = auth(B_KEY);
const ADMIN_AUTH = auth(ADMIN);

test.before(async () => {
  keys = await KeysFile.create(ENTRIES);
  root = await mkdtemp(path.join(os.tmpdir(), 'pk-tenants-nb-'));
  await cp(path.resolve('test/fixtures/notebooks'), root, { recursive: true });
  await chmod(root, 0o755);
  svc = await startTestService({ authToken: ADMIN, apiKeysFile: keys.file, apiKeysReloadMs: 100, flushWindowMs: 60_000, notebookRoot: root } as any);
});

test.after.always(async () => {
  await svc?.stop();
  await keys?.remove();
  if (root) await rm(root, { recursive: true, force: true });
});

test.after('no kernel container is left behind', async () => {
  // Every kernel was deleted by the tests; their containers are removed in the background.
  await svc.service.kernels.settled();
  const left = containersOfInstance(svc.config.instance);
  if (left.length) throw new Error(`containers left: ${left.join(' ')}`);
});

const ws = (id: string, token?: string) => `${channelsUrl(svc.url, id)}${token ? `?token=${token}` : ''}`;

async function refusedWs(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  try {
    const client = await JupyterWs.open(url, { headers });
    await client.close();
    return { status: 101, body: undefined };
  } catch (error) {
    return { status: (error as any).status, body: JSON.parse((error as any).body ?? 'null') };
  }
}

/** The 404 of an id, with the id replaced, so a foreign id's answer can be compared with an unknown one's. */
const shape = (answer: { status: number; body: any }, id: string) => ({ status: answer.status, body: JSON.parse(JSON.stringify(answer.body).split(id).join('<id>')) });

test.serial('A cannot list, get, attach to, interrupt, restart, delete or execute on B\'s kernels; B\'s kernels are untouched', async (t) => {
  t.timeout(240_000);
  const v1 = await svc.call('POST', '/v1/kernel/create', { lang: 'python3', clientSessionToken: 'shared-token' }, B);
  t.is(v1.status, 201, JSON.stringify(v1.body));
  const bV1 = v1.body.kernelId as string;
  const jup = await svc.call('POST', '/api/kernels', { name: 'python3' }, B);
  t.is(jup.status, 201, JSON.stringify(jup.body));
  const bJup = jup.body.id as string;
  t.is((await svc.call('POST', `/v1/kernel/${bV1}`, { mode: 'query', code: 'marker = "B-was-here"' }, B)).status, 200);

  const listed = await svc.call('GET', '/api/kernels', undefined, A);
  t.is(listed.status, 200);
  t.deepEqual(listed.body, [], 'A lists none of B\'s kernels');
  t.is((await svc.call('GET', '/api/status', undefined, A)).body.kernels, 0);

  for (const id of [bV1, bJup]) {
    // Every operation on a foreign id answers exactly as on an unknown id: no existence oracle.
    const calls: [string, string, unknown?][] = [
      ['GET', `/v1/kernel/${id}`],
      ['PATCH', `/v1/kernel/${id}`],
      ['DELETE', `/v1/kernel/${id}`],
      ['POST', `/v1/kernel/${id}`, { mode: 'query', code: 'print(marker)' }],
      ['GET', `/api/kernels/${id}`],
      ['POST', `/api/kernels/${id}/interrupt`],
      ['POST', `/api/kernels/${id}/restart`],
      ['DELETE', `/api/kernels/${id}`],
      ['GET', `/api/kernels/${id}/channels`],
    ];
    for (const [method, route, body] of calls) {
      const foreign = await svc.call(method, route, body, A);
      const unknown = await svc.call(method, route.replace(id, UNKNOWN), body, A);
      t.is(foreign.status, 404, `${method} ${route}: ${JSON.stringify(foreign.body)}`);
      t.deepEqual(shape(foreign, id), shape(unknown, UNKNOWN), `${method} ${route} looks like an unknown id`);
    }
    const wsForeign = await refusedWs(ws(id, A_KEY));
    const wsUnknown = await refusedWs(ws(UNKNOWN, A_KEY));
    t.is(wsForeign.status, 404, 'the channels WebSocket of B\'s kernel is refused to A');
    t.deepEqual(shape(wsForeign, id), shape(wsUnknown, UNKNOWN));
    t.is((await refusedWs(ws(id), A)).status, 404, 'with the key in the header too');
  }

  // B's kernels lived through all of it, with their state.
  const after = await svc.call('POST', `/v1/kernel/${bV1}`, { mode: 'query', code: 'print(marker)' }, B);
  t.deepEqual(after.body.result.console, [['stdout', 'B-was-here\n']]);
  t.is((await svc.call('GET', `/api/kernels/${bJup}`, undefined, B)).status, 200);
  const bWs = await JupyterWs.open(ws(bJup, B_KEY));
  t.is((await bWs.execute('print(1+1)')).stdout, '2\n', 'B attaches to its own kernel');
  await bWs.close();

  // A presenting B's clientSessionToken gets a new kernel of its own, not B's.
  const stolen = await svc.call('POST', '/v1/kernel/create', { lang: 'python3', clientSessionToken: 'shared-token' }, A);
  t.is(stolen.status, 201, 'a new kernel, not REPL continuity into B\'s');
  t.not(stolen.body.kernelId, bV1);
  const aRun = await svc.call('POST', `/v1/kernel/${stolen.body.kernelId}`, { mode: 'query', code: 'print(globals().get("marker"))' }, A);
  t.deepEqual(aRun.body.result.console, [['stdout', 'None\n']]);
  // And the token still leads B to B's kernel, A to A's.
  t.is((await svc.call('POST', '/v1/kernel/create', { lang: 'python3', clientSessionToken: 'shared-token' }, B)).body.kernelId, bV1);
  t.is((await svc.call('POST', '/v1/kernel/create', { lang: 'python3', clientSessionToken: 'shared-token' }, A)).body.kernelId, stolen.body.kernelId);

  // The admin token sees every tenant's kernels and may act on them.
  const all = await svc.call('GET', '/api/kernels', undefined, ADMIN_AUTH);
  const ids = (all.body as { id: string }[]).map((k) => k.id);
  for (const id of [bV1, bJup, stolen.body.kernelId]) t.true(ids.includes(id), `admin lists ${id}`);
  t.is((await svc.call('GET', `/v1/kernel/${bV1}`, undefined, ADMIN_AUTH)).status, 200);
  t.deepEqual((await svc.call('GET', '/api/kernels', undefined, A)).body.map((k: { id: string }) => k.id), [stolen.body.kernelId]);

  for (const id of [bV1, bJup]) t.is((await svc.call('DELETE', `/api/kernels/${id}`, undefined, B)).status, 204);
  t.is((await svc.call('DELETE', `/v1/kernel/${stolen.body.kernelId}`, undefined, ADMIN_AUTH)).status, 204, 'the admin deletes a tenant\'s kernel');
});

test.serial('A cannot see or take over B\'s sessions, nor bind B\'s kernel to a session of its own', async (t) => {
  t.timeout(180_000);
  const bs = await svc.call('POST', '/api/sessions', { path: 'shared.ipynb', type: 'notebook', kernel: { name: 'python3' } }, B);
  t.is(bs.status, 201, JSON.stringify(bs.body));
  const bSession = bs.body.id as string;
  const bKernel = bs.body.kernel.id as string;
  t.deepEqual((await svc.call('GET', '/api/sessions', undefined, A)).body, []);
  for (const [method, body] of [['GET'], ['PATCH', { name: 'stolen' }], ['DELETE']] as [string, unknown?][]) {
    const foreign = await svc.call(method, `/api/sessions/${bSession}`, body, A);
    const unknown = await svc.call(method, `/api/sessions/${UNKNOWN}`, body, A);
    t.is(foreign.status, 404, `${method} session`);
    t.deepEqual(shape(foreign, bSession), shape(unknown, UNKNOWN));
  }
  // The same path is A's own session with A's own kernel, not B's.
  const as = await svc.call('POST', '/api/sessions', { path: 'shared.ipynb', type: 'notebook', kernel: { name: 'python3' } }, A);
  t.is(as.status, 201);
  t.not(as.body.id, bSession);
  t.not(as.body.kernel.id, bKernel);
  // B's kernel id in A's session request names nothing A may use: a new kernel (as for an unknown id) or 400.
  const bound = await svc.call('POST', '/api/sessions', { path: 'other.ipynb', type: 'notebook', kernel: { id: bKernel } }, A);
  t.is(bound.status, 201);
  t.not(bound.body.kernel.id, bKernel);
  const patched = await svc.call('PATCH', `/api/sessions/${as.body.id}`, { kernel: { id: bKernel } }, A);
  t.is(patched.status, 400);
  t.regex(patched.body.message, /No such kernel/);
  // B's session and kernel are intact.
  const mine = await svc.call('GET', `/api/sessions/${bSession}`, undefined, B);
  t.is(mine.status, 200);
  t.is(mine.body.kernel.id, bKernel);
  t.is(mine.body.name, '');
  const adminSessions = (await svc.call('GET', '/api/sessions', undefined, ADMIN_AUTH)).body.map((s: { id: string }) => s.id);
  for (const id of [bSession, as.body.id, bound.body.id]) t.true(adminSessions.includes(id));
  for (const [id, who] of [[bSession, B], [as.body.id, A], [bound.body.id, A]] as const) {
    t.is((await svc.call('DELETE', `/api/sessions/${id}`, undefined, who)).status, 204);
  }
});

test.serial('A cannot see, shut down or delete B\'s executions', async (t) => {
  t.timeout(180_000);
  const submitted = await svc.call('POST', '/api/executions', { notebook: 'quick.ipynb', x: 'B' }, B);
  t.is(submitted.status, 202, JSON.stringify(submitted.body));
  const execId = submitted.body.execution.exec_id as string;
  t.deepEqual((await svc.call('GET', '/api/executions', undefined, A)).body, { executions: [] });
  for (const [method, route, body] of [
    ['GET', `/api/executions/${execId}`],
    ['POST', `/api/executions/${execId}`, { action: 'shutdown' }],
    ['DELETE', `/api/executions/${execId}`],
  ] as [string, string, unknown?][]) {
    const foreign = await svc.call(method, route, body, A);
    const unknown = await svc.call(method, route.replace(execId, UNKNOWN), body, A);
    t.is(foreign.status, 404, `${method} ${route}`);
    t.deepEqual(shape(foreign, execId), shape(unknown, UNKNOWN));
  }
  t.is((await svc.call('DELETE', '/api/executions', undefined, A)).status, 202);
  // B's execution runs to its end, unharmed by A's delete-all.
  let status = '';
  for (let i = 0; i < 300 && !/completed|error/.test(status); i++) {
    await sleep(200);
    const got = await svc.call('GET', `/api/executions/${execId}`, undefined, B);
    t.is(got.status, 200);
    status = got.body.execution.status;
  }
  t.is(status, 'completed');
  t.true((await svc.call('GET', '/api/executions', undefined, ADMIN_AUTH)).body.executions.some((e: { exec_id: string }) => e.exec_id === execId));
  t.is((await svc.call('DELETE', `/api/executions/${execId}`, undefined, B, )).status, 202);
});

test.serial('no token, a wrong key: 401 in the Jupyter token forms (header token/Bearer, ?token=)', async (t) => {
  t.is((await svc.call('GET', '/api/kernels')).status, 401);
  t.is((await svc.call('GET', '/api/kernels', undefined, auth('not-a-key-0123456789'))).status, 401);
  t.is((await svc.call('GET', '/v1/kernel/' + UNKNOWN, undefined, { authorization: `Bearer ${A_KEY}` })).status, 404, 'Bearer form works');
  t.is((await svc.call('GET', `/api/kernels?token=${A_KEY}`)).status, 200, '?token= form works');
  const denied = await svc.call('GET', '/v1/kernel/' + UNKNOWN);
  t.is(denied.status, 401);
  t.is(denied.body.type, 'urn:polykernel:error:unauthorized');
  t.is((await refusedWs(ws(UNKNOWN, 'not-a-key-0123456789'))).status, 401);
  // Keyed callers see their rate limit on every answer; the admin is not limited (as Backend.AI's admin API).
  const keyed = await svc.call('GET', '/api/kernels', undefined, A);
  t.truthy(keyed.headers.get('x-ratelimit-limit'));
  t.truthy(keyed.headers.get('x-ratelimit-remaining'));
  t.truthy(keyed.headers.get('x-ratelimit-reset'));
  t.is((await svc.call('GET', '/api/kernels', undefined, ADMIN_AUTH)).headers.get('x-ratelimit-limit'), null);
});

test.serial('a revoked key is refused at once without a restart, WebSocket included; an added key works', async (t) => {
  t.timeout(120_000);
  const created = await svc.call('POST', '/api/kernels', { name: 'python3' }, B);
  t.is(created.status, 201);
  const bKernel = created.body.id as string;
  const open = await JupyterWs.open(ws(bKernel, B_KEY));
  t.is((await open.execute('print(1)')).stdout, '1\n');
  const C_KEY = 'key-of-tenant-c-0123456789';
  t.is((await svc.call('GET', '/api/kernels', undefined, auth(C_KEY))).status, 401);
  await keys.write([ENTRIES[0]!, { id: 'tenant-c', key: C_KEY }]);
  // The file is checked at most every 100 ms (POLYKERNEL_API_KEYS_RELOAD_MS): past that, the first request sees it.
  await sleep(250);
  const revoked = await svc.call('GET', '/api/kernels', undefined, B);
  t.is(revoked.status, 401, 'the first request after the revocation is refused');
  t.is((await svc.call('GET', `/v1/kernel/${bKernel}`, undefined, B)).status, 401);
  t.is((await refusedWs(ws(bKernel, B_KEY))).status, 401, 'the channels handshake is refused');
  for (let i = 0; i < 40 && !open.closed; i++) await sleep(100);
  t.deepEqual(open.closed, { code: 1008, reason: 'API key revoked' }, 'and a connection it had open is closed');
  t.is((await svc.call('GET', '/api/kernels', undefined, auth(C_KEY))).status, 200, 'the added key works');
  t.deepEqual((await svc.call('GET', '/api/kernels', undefined, auth(C_KEY))).body, [], 'and sees nothing of B');
  // The revoked tenant's kernel is still the admin's to see and remove.
  t.is((await svc.call('DELETE', `/api/kernels/${bKernel}`, undefined, ADMIN_AUTH)).status, 204);
  await keys.write(ENTRIES);
});

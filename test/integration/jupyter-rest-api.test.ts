/**
 * The Jupyter REST APIs (Kernel Gateway / jupyter_server: /api, kernelspecs, kernels, sessions) against a
 * real Docker engine and store: models and status codes, one set of kernels with /v1, the env filter,
 * KG_MAX_KERNELS and KG_LIST_KERNELS, CORS, errors as `{message, reason}`, and sessions that outlive a
 * restart of the service.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startService } from '../../src/main.js';
import { createLogger } from '../../src/logger.js';
import { jsonCall } from '../helpers/http-client.js';
import { startKernel } from '../helpers/jupyter-client.js';
import { redisUrl, startTestService, type TestService } from '../helpers/service.js';

const TOKEN = 'rest-token';
const AUTH = { authorization: `token ${TOKEN}` };
const NO_KERNEL = '00000000-0000-4000-8000-000000000000';
let svc: TestService;

test.before(async () => {
  svc = await startTestService({
    authToken: TOKEN,
    maxKernels: 2,
    envWhitelist: ['ALLOWED_VAR'],
    allowOrigin: 'https://lab.example',
    allowMethods: 'GET, POST, PATCH, DELETE',
    allowHeaders: 'Authorization, Content-Type',
    maxAge: '600',
  });
});

test.after.always(async () => {
  await svc?.stop();
});

// Serial tests share one service and KG_MAX_KERNELS=2: a failed test must not leave kernels to the next.
test.afterEach.always(async () => {
  const { body } = await svc.call('GET', '/api/kernels', undefined, AUTH);
  for (const kernel of body as { id: string }[]) await svc.call('DELETE', `/api/kernels/${kernel.id}`, undefined, AUTH);
});

const call = (method: string, route: string, body?: unknown) => svc.call(method, route, body, AUTH);

function containerEnv(kernelId: string): string[] {
  const id = execFileSync('/usr/bin/docker', ['ps', '-q', '--filter', `label=org.polykernel.kernel-id=${kernelId}`], { encoding: 'utf8' }).trim();
  return JSON.parse(execFileSync('/usr/bin/docker', ['inspect', '--format', '{{json .Config.Env}}', id], { encoding: 'utf8' }));
}

test.serial('GET /api answers the version; kernelspecs come from the images, with their logo', async (t) => {
  const api = await call('GET', '/api');
  t.is(api.status, 200);
  t.deepEqual(api.body, { version: JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')).version });

  const { status, body } = await call('GET', '/api/kernelspecs');
  t.is(status, 200);
  t.is(body.default, 'python3');
  const python = body.kernelspecs.python3;
  t.is(python.name, 'python3');
  t.is(python.spec.language, 'python');
  t.is(typeof python.spec.display_name, 'string');
  t.true(Array.isArray(python.spec.argv));
  t.deepEqual(python.spec.env, {});
  // The image's own metadata is empty; what it has installed is under polykernel (once it is built with it).
  const { polykernel, ...metadata } = python.spec.metadata;
  t.deepEqual(metadata, {});
  if (polykernel) t.is(polykernel.packages[0].name, 'python');
  t.is(python.spec.interrupt_mode, 'signal');
  t.deepEqual(python.resources, { 'logo-64x64': '/kernelspecs/python3/logo-64x64.png' });

  const one = await call('GET', '/api/kernelspecs/python3');
  t.deepEqual(one.body, python);
  t.is((await call('GET', '/api/kernelspecs/python')).body.name, 'python3', 'an alias resolves to its kernelspec');
  const missing = await call('GET', '/api/kernelspecs/cobol');
  t.is(missing.status, 404);
  t.deepEqual(Object.keys(missing.body).sort(), ['message', 'reason']);
  t.is(missing.body.reason, 'Not Found');

  const logo = await fetch(`${svc.url}${python.resources['logo-64x64']}`, { headers: AUTH });
  t.is(logo.status, 200);
  t.is(logo.headers.get('content-type'), 'image/png');
  const bytes = Buffer.from(await logo.arrayBuffer());
  t.deepEqual(bytes, readFileSync(new URL('../../../images/python/logo-64x64.png', import.meta.url)), 'the image\'s copy of the logo');
  t.is((await call('GET', '/kernelspecs/python3/Dockerfile')).status, 404, 'only files the image labels as resources');
  t.is((await call('GET', '/kernelspecs/cobol/logo-64x64.png')).status, 404);
});

test.serial('kernels: start (201 + Location), get, list, interrupt, restart, delete', async (t) => {
  const created = await call('POST', '/api/kernels', { name: 'python3' });
  t.is(created.status, 201);
  const id = created.body.id;
  t.is(created.headers.get('location'), `/api/kernels/${id}`);
  t.deepEqual(Object.keys(created.body).sort(), ['connections', 'execution_state', 'id', 'last_activity', 'name']);
  t.is(created.body.name, 'python3');
  // Ready: idle, or busy with a late readiness probe (kernel_info) at this very moment; never starting.
  t.true(['idle', 'busy'].includes(created.body.execution_state), created.body.execution_state);
  t.is(created.body.connections, 0);
  t.regex(created.body.last_activity, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

  t.deepEqual((await call('GET', `/api/kernels/${id}`)).body.id, id);
  t.true((await call('GET', '/api/kernels')).body.some((k: { id: string }) => k.id === id));
  t.is((await call('POST', `/api/kernels/${id}/interrupt`)).status, 204);
  const restarted = await call('POST', `/api/kernels/${id}/restart`);
  t.is(restarted.status, 200);
  t.is(restarted.body.id, id);
  // Ready again, as after the start.
  t.true(['idle', 'busy'].includes(restarted.body.execution_state), restarted.body.execution_state);
  t.is((await call('DELETE', `/api/kernels/${id}`)).status, 204);
  t.is((await call('GET', `/api/kernels/${id}`)).status, 404);
  t.false((await call('GET', '/api/kernels')).body.some((k: { id: string }) => k.id === id));
});

test.serial('one set of kernels: /v1 kernels are listed here, these are served by /v1', async (t) => {
  const { body: v1 } = await call('POST', '/v1/kernel/create', { lang: 'python3' });
  const jupyter = await startKernel(call);
  const listed = (await call('GET', '/api/kernels')).body.map((k: { id: string }) => k.id);
  t.true(listed.includes(v1.kernelId));
  t.true(listed.includes(jupyter));
  t.is((await call('GET', `/api/kernels/${v1.kernelId}`)).body.name, 'python3');
  const run = await call('POST', `/v1/kernel/${jupyter}`, { mode: 'query', code: 'print(7*6)' });
  t.deepEqual(run.body.result.console, [['stdout', '42\n']]);
  t.is((await call('DELETE', `/api/kernels/${v1.kernelId}`)).status, 204);
  t.is((await call('GET', `/v1/kernel/${v1.kernelId}`)).status, 404);
  t.is((await call('DELETE', `/v1/kernel/${jupyter}`)).status, 204);
  t.is((await call('GET', `/api/kernels/${jupyter}`)).status, 404);
});

test.serial('env: only KERNEL_* and KG_ENV_WHITELIST variables reach the container', async (t) => {
  const id = await startKernel(call, { name: 'python3', env: { KERNEL_USERNAME: 'ada', ALLOWED_VAR: 'yes', SECRET_VAR: 'no', LD_PRELOAD: '/x.so' } });
  const env = containerEnv(id);
  t.true(env.includes('KERNEL_USERNAME=ada'));
  t.true(env.includes('ALLOWED_VAR=yes'));
  t.false(env.some((e) => e.startsWith('SECRET_VAR=')));
  t.false(env.some((e) => e.startsWith('LD_PRELOAD=')));
  await call('DELETE', `/api/kernels/${id}`);
});

test.serial('KG_MAX_KERNELS: the kernel past the limit is 402 {message, reason}', async (t) => {
  const ids = [await startKernel(call), await startKernel(call)];
  const refused = await call('POST', '/api/kernels', { name: 'python3' });
  t.is(refused.status, 402);
  t.is(refused.body.reason, 'Payment Required');
  t.regex(refused.body.message, /KG_MAX_KERNELS=2/);
  for (const id of ids) await call('DELETE', `/api/kernels/${id}`);
});

test.serial('bad input gets a clear 4xx {message, reason}, never a 500', async (t) => {
  const cases: [string, string, unknown, number, RegExp][] = [
    ['POST', '/api/kernels', '{"name":', 400, /not valid JSON/],
    ['POST', '/api/kernels', { name: 'python3', extra: 1 }, 400, /unknown field "extra"/],
    ['POST', '/api/kernels', { name: 42 }, 400, /name must be a string/],
    ['POST', '/api/kernels', { name: 'cobol' }, 400, /unknown lang "cobol"/],
    ['POST', '/api/kernels', { env: 'x' }, 400, /env must be an object/],
    ['POST', '/api/kernels', { env: { KERNEL_X: 1 } }, 400, /env.KERNEL_X must be a string/],
    ['POST', '/api/kernels', { env: { 'KERNEL_A=B': 'x' } }, 400, /not a valid environment variable name/],
    ['GET', `/api/kernels/${NO_KERNEL}`, undefined, 404, /no kernel/],
    ['GET', '/api/kernels/not-a-uuid', undefined, 404, /no kernel/],
    ['DELETE', `/api/kernels/${NO_KERNEL}`, undefined, 404, /no kernel/],
    ['POST', `/api/kernels/${NO_KERNEL}/interrupt`, undefined, 404, /no kernel/],
    ['POST', `/api/kernels/${NO_KERNEL}/restart`, undefined, 404, /no kernel/],
    ['POST', '/api/sessions', { type: 'notebook' }, 400, /Missing field in JSON data: path/],
    ['POST', '/api/sessions', { path: 'a.ipynb' }, 400, /Missing field in JSON data: type/],
    ['POST', '/api/sessions', { path: 'a.ipynb', type: 'notebook', kernel: 'python3' }, 400, /kernel must be a JSON object/],
    ['POST', '/api/sessions', { path: 'a.ipynb', type: 'notebook', kernal: { name: 'python3' } }, 400, /unknown field "kernal"/],
    ['POST', '/api/sessions', 'null', 400, /body must be a JSON object/],
    ['GET', `/api/sessions/${NO_KERNEL}`, undefined, 404, /Session not found/],
    ['GET', '/api/sessions/nope', undefined, 404, /no session/],
    ['PATCH', `/api/sessions/${NO_KERNEL}`, { path: 'x' }, 404, /Session not found/],
    ['DELETE', `/api/sessions/${NO_KERNEL}`, undefined, 404, /Session not found/],
    ['PUT', '/api/kernels', {}, 405, /not allowed/],
    ['GET', '/api/nothing-here', undefined, 404, /no such resource/],
  ];
  for (const [method, route, body, status, message] of cases) {
    const response = await call(method, route, body);
    const what = `${method} ${route} ${JSON.stringify(body)?.slice(0, 60)}`;
    t.is(response.status, status, what);
    t.regex(response.body.message, message, what);
    t.is(typeof response.body.reason, 'string', what);
  }
});

test.serial('token auth: 401 {message, reason} without it; header or ?token= pass', async (t) => {
  const none = await svc.call('GET', '/api/kernels');
  t.is(none.status, 401);
  t.is(none.body.reason, 'Unauthorized');
  t.is((await svc.call('GET', '/api/kernels', undefined, { authorization: 'token wrong' })).status, 401);
  t.is((await svc.call('GET', '/api/kernels', undefined, AUTH)).status, 200);
  t.is((await svc.call('GET', `/api/kernels?token=${TOKEN}`)).status, 200);
});

test.serial('CORS: KG_ALLOW_* headers on responses (401s included); preflight answered without a token', async (t) => {
  const preflight = await fetch(`${svc.url}/api/kernels`, {
    method: 'OPTIONS',
    headers: { origin: 'https://lab.example', 'access-control-request-method': 'POST' },
  });
  t.is(preflight.status, 204);
  t.is(preflight.headers.get('access-control-allow-origin'), 'https://lab.example');
  t.is(preflight.headers.get('access-control-allow-methods'), 'GET, POST, PATCH, DELETE');
  t.is(preflight.headers.get('access-control-allow-headers'), 'Authorization, Content-Type');
  t.is(preflight.headers.get('access-control-max-age'), '600');
  t.is(preflight.headers.get('access-control-allow-credentials'), null, 'unset settings send no header');
  const ok = await call('GET', '/api');
  t.is(ok.headers.get('access-control-allow-origin'), 'https://lab.example');
  const denied = await svc.call('GET', '/api/kernels');
  t.is(denied.status, 401);
  t.is(denied.headers.get('access-control-allow-origin'), 'https://lab.example');
});

test.serial('KG_LIST_KERNELS=false: listing is 403, a kernel by id still works', async (t) => {
  const quiet = await startTestService({ listKernels: false });
  try {
    const listed = await quiet.call('GET', '/api/kernels');
    t.is(listed.status, 403);
    t.regex(listed.body.message, /KG_LIST_KERNELS/);
    t.is(listed.body.reason, 'Forbidden');
    t.is((await quiet.call('GET', `/api/kernels/${NO_KERNEL}`)).status, 404);
  } finally {
    await quiet.stop();
  }
});

test.serial('sessions: create, reuse by path and by kernel id, rename, switch kernels, delete', async (t) => {
  const created = await call('POST', '/api/sessions', { path: 'work/a.ipynb', type: 'notebook', name: 'a.ipynb', kernel: { name: 'python3' } });
  t.is(created.status, 201);
  const session = created.body;
  t.is(created.headers.get('location'), `/api/sessions/${session.id}`);
  t.is(session.path, 'work/a.ipynb');
  t.is(session.type, 'notebook');
  t.is(session.name, 'a.ipynb');
  t.deepEqual(session.notebook, { path: 'work/a.ipynb', name: 'a.ipynb' });
  t.deepEqual(Object.keys(session.kernel).sort(), ['connections', 'execution_state', 'id', 'last_activity', 'name']);

  const samePath = await call('POST', '/api/sessions', { path: 'work/a.ipynb', type: 'notebook', kernel: { name: 'python3' } });
  t.is(samePath.status, 201);
  t.is(samePath.body.id, session.id, 'a path that has a session gets that session');

  const console_ = await call('POST', '/api/sessions', { path: 'console-1', type: 'console', kernel: { id: session.kernel.id } });
  t.is(console_.body.kernel.id, session.kernel.id, 'kernel.id reuses the running kernel');
  t.is(console_.body.notebook, undefined);
  t.is(console_.body.name, '');
  const listed = (await call('GET', '/api/sessions')).body;
  t.deepEqual(listed.map((s: { id: string }) => s.id).sort(), [session.id, console_.body.id].sort());

  const renamed = await call('PATCH', `/api/sessions/${session.id}`, { id: session.id, path: 'work/b.ipynb', name: 'b.ipynb' });
  t.is(renamed.status, 200);
  t.is(renamed.body.path, 'work/b.ipynb');
  t.is(renamed.body.kernel.id, session.kernel.id);

  t.is((await call('PATCH', `/api/sessions/${session.id}`, { kernel: { id: NO_KERNEL } })).status, 400);
  const switched = await call('PATCH', `/api/sessions/${session.id}`, { kernel: { name: 'python3' } });
  t.is(switched.status, 200);
  t.not(switched.body.kernel.id, session.kernel.id);
  t.is((await call('GET', `/api/kernels/${session.kernel.id}`)).status, 404, 'the old kernel was shut down');
  // The console session lost its kernel with it: like jupyter_server, it is gone on the next read.
  t.is((await call('GET', `/api/sessions/${console_.body.id}`)).status, 404);
  t.deepEqual((await call('GET', '/api/sessions')).body.map((s: { id: string }) => s.id), [session.id]);

  const unknownSpec = await call('POST', '/api/sessions', { path: 'c.ipynb', type: 'notebook', kernel: { name: 'cobol' } });
  t.is(unknownSpec.status, 501);
  t.regex(unknownSpec.body.message, /'cobol' kernel is not available/);
  t.is(unknownSpec.body.short_message, 'cobol not found');

  t.is((await call('DELETE', `/api/sessions/${session.id}`)).status, 204);
  t.is((await call('GET', `/api/sessions/${session.id}`)).status, 404);
  t.is((await call('GET', `/api/kernels/${switched.body.kernel.id}`)).status, 404, 'deleting a session shuts its kernel down');
});

test.serial('sessions and their kernels outlive a restart of the service (Redis)', async (t) => {
  if (!redisUrl) return t.fail('REDIS_URL is not set');
  // An instance of its own (label, Redis prefix, state directory), as two runs of one deployment share.
  const instance = `test-restart-${randomUUID().slice(0, 8)}`;
  const config = { ...svc.config, instance, redisPrefix: `${instance}:`, stateDir: await mkdtemp(path.join(os.tmpdir(), 'pk-')) };
  const first = await startService({ ...config, keepKernelsOnShutdown: true }, createLogger(config.logLevel));
  const url = (service: typeof first) => `http://127.0.0.1:${(service.server.address() as { port: number }).port}`;
  const req = (base: string, method: string, route: string, body?: unknown) => jsonCall(base, AUTH)(method, route, body);
  let second: typeof first | undefined;
  try {
    const { body: session } = await req(url(first), 'POST', '/api/sessions', { path: 'keep.ipynb', type: 'notebook', name: 'keep' });
    await req(url(first), 'POST', `/v1/kernel/${session.kernel.id}`, { mode: 'query', code: 'kept = 42' });
    await first.stop();
    second = await startService({ ...config, keepKernelsOnShutdown: false }, createLogger(config.logLevel));
    const again = await req(url(second), 'GET', `/api/sessions/${session.id}`);
    t.is(again.status, 200);
    t.is(again.body.path, 'keep.ipynb');
    t.is(again.body.kernel.id, session.kernel.id);
    const run = await req(url(second), 'POST', `/v1/kernel/${session.kernel.id}`, { mode: 'query', code: 'print(kept)' });
    t.deepEqual(run.body.result.console, [['stdout', '42\n']], 'the same kernel process, its globals intact');
    t.is((await req(url(second), 'DELETE', `/api/sessions/${session.id}`)).status, 204);
  } finally {
    await first.stop();
    await second?.stop();
    await rm(config.stateDir, { recursive: true, force: true });
  }
});

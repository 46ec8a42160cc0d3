/**
 * Issue #6, bad input over HTTP: every route of every API surface (v1, /api/kernels, /api/kernelspecs,
 * /kernelspecs, /api/sessions, /api/executions) is sent malformed JSON, wrong types, missing fields,
 * bodies over POLYKERNEL_MAX_BODY_BYTES, unknown and malformed ids, path traversal, over-long strings and
 * bad query strings. Every answer is a 4xx JSON error whose message says what is wrong (v1: a problem
 * document's `detail`; the Jupyter APIs: `message`), never a 500 nor a stack trace, and the service keeps
 * answering afterwards.
 */
import test, { type ExecutionContext } from 'ava';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startTestService, type TestService } from '../helpers/service.js';

const MAX_BODY = 128 * 1024;
const NO_KERNEL = '00000000-0000-4000-8000-000000000000';

let svc: TestService;
let notebooks: string;
let kernel: string;
let session: string;

test.before(async () => {
  notebooks = await mkdtemp(path.join(os.tmpdir(), 'pk-badinput-'));
  // The kernel's user must be able to enter the notebook's directory (mkdtemp makes it 0700).
  await chmod(notebooks, 0o755);
  await writeFile(path.join(notebooks, 'ok.ipynb'), JSON.stringify({ cells: [], metadata: {}, nbformat: 4, nbformat_minor: 5 }));
  await writeFile(path.join(notebooks, 'broken.ipynb'), '{"cells": [');
  svc = await startTestService({ maxBodyBytes: MAX_BODY, notebookRoot: notebooks });
  kernel = (await svc.call('POST', '/v1/kernel/create', { lang: 'python3' })).body.kernelId;
  const created = await svc.call('POST', '/api/sessions', { path: 'bad-input.ipynb', type: 'notebook', kernel: { name: 'python3' } });
  session = created.body.id;
});

test.after.always(async () => {
  await svc?.stop();
  await rm(notebooks, { recursive: true, force: true });
});

interface Case {
  method: string;
  route: string;
  /** A string is sent as it is; anything else as JSON. */
  body?: unknown;
  headers?: Record<string, string>;
  status: number;
  message: RegExp;
}

/** Sends one case with fetch (raw bodies and headers as given) and checks the generic rules. */
async function send(t: ExecutionContext, c: Case): Promise<void> {
  const label = `${c.method} ${c.route.slice(0, 100)} ${typeof c.body === 'string' ? c.body.slice(0, 40) : JSON.stringify(c.body)?.slice(0, 60) ?? ''}`;
  const response = await fetch(svc.url + c.route, {
    method: c.method,
    headers: { 'content-type': 'application/json', ...c.headers },
    body: c.body === undefined ? undefined : typeof c.body === 'string' ? c.body : JSON.stringify(c.body),
  });
  const text = await response.text();
  t.is(response.status, c.status, `${label}: ${text.slice(0, 300)}`);
  t.true(response.status >= 400 && response.status < 500, `${label}: a 4xx`);
  t.regex(response.headers.get('content-type') ?? '', /json/, `${label}: JSON`);
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text);
  } catch {
    t.fail(`${label}: body is not JSON: ${text.slice(0, 200)}`);
  }
  const message = String(c.route.startsWith('/v1/') ? body.detail : body.message);
  t.regex(message, c.message, label);
  t.notRegex(text, /\bat [\w.<>]+ \(|node:internal|\.js:\d+/, `${label}: no stack trace`);
}

const long = (n: number) => 'x'.repeat(n);
const overLimit = JSON.stringify({ code: long(MAX_BODY + 10) });

/** Cases every route that reads a body must pass, whatever it expects in it. */
function bodyCases(method: string, route: string): Case[] {
  return [
    { method, route, body: '{"lang":', status: 400, message: /not valid JSON/ },
    { method, route, body: '\uFEFF{}x', status: 400, message: /not valid JSON/ },
    { method, route, body: '[1, 2]', status: 400, message: /must be a JSON object/ },
    { method, route, body: '"a string"', status: 400, message: /must be a JSON object/ },
    { method, route, body: '[[[[[[[[[[[[[[[[[[[[' + '['.repeat(50_000), status: 400, message: /not valid JSON/ },
    // A Content-Length that already says too much is refused before the body is read.
    { method, route, body: overLimit, status: 413, message: new RegExp(`larger than ${MAX_BODY} bytes`) },
  ];
}

test('v1 kernel API: every bad input is a 4xx problem document that says what is wrong', async (t) => {
  const run = `/v1/kernel/${kernel}`;
  const cases: Case[] = [
    ...bodyCases('POST', '/v1/kernel/create'),
    ...bodyCases('POST', run),
    // create: missing fields, wrong types, over-long strings, unknown fields.
    { method: 'POST', route: '/v1/kernel/create', body: {}, status: 400, message: /lang is required/ },
    { method: 'POST', route: '/v1/kernel/create', body: { lang: null }, status: 400, message: /lang is required/ },
    { method: 'POST', route: '/v1/kernel/create', body: { lang: 42 }, status: 400, message: /lang must be a string, got number 42/ },
    { method: 'POST', route: '/v1/kernel/create', body: { lang: ['python3'] }, status: 400, message: /lang must be a string, got an array/ },
    { method: 'POST', route: '/v1/kernel/create', body: { lang: '' }, status: 400, message: /lang must have at least 1/ },
    { method: 'POST', route: '/v1/kernel/create', body: { lang: long(10_000) }, status: 400, message: /lang is too long \(10000 characters; at most 64\)/ },
    { method: 'POST', route: '/v1/kernel/create', body: { lang: '../../etc/passwd' }, status: 400, message: /unknown lang "..\/..\/etc\/passwd"/ },
    { method: 'POST', route: '/v1/kernel/create', body: { lang: 'python3', clientSessionToken: long(300) }, status: 400, message: /clientSessionToken is too long/ },
    { method: 'POST', route: '/v1/kernel/create', body: { lang: 'python3', clientSessionToken: 7 }, status: 400, message: /clientSessionToken must be a string/ },
    { method: 'POST', route: '/v1/kernel/create', body: { lang: 'python3', resourceLimits: 'lots' }, status: 400, message: /resourceLimits must be a JSON object/ },
    { method: 'POST', route: '/v1/kernel/create', body: { lang: 'python3', resourceLimits: { maxMem: 1.5 } }, status: 400, message: /resourceLimits.maxMem must be a whole number/ },
    { method: 'POST', route: '/v1/kernel/create', body: { lang: 'python3', resourceLimits: { maxMem: -1 } }, status: 400, message: /resourceLimits.maxMem must be at least 1/ },
    { method: 'POST', route: '/v1/kernel/create', body: '{"lang":"python3","resourceLimits":{"maxMem":1e400}}', status: 400, message: /maxMem must be a whole number/ },
    { method: 'POST', route: '/v1/kernel/create', body: { lang: 'python3', resourceLimits: { maxMem: 1024 } }, status: 400, message: /at least 16384 KB/ },
    { method: 'POST', route: '/v1/kernel/create', body: { lang: 'python3', resourceLimits: { maxMem: 1e12 } }, status: 406, message: /exceeds this server's limit/ },
    { method: 'POST', route: '/v1/kernel/create', body: { lang: 'python3', resourceLimits: { cpus: 8 } }, status: 400, message: /unknown field "cpus" in resourceLimits/ },
    { method: 'POST', route: '/v1/kernel/create', body: '{"lang":"python3","__proto__":{"admin":true}}', status: 400, message: /unknown field "__proto__"/ },
    // execute: modes and their required fields, run ids.
    { method: 'POST', route: run, body: {}, status: 400, message: /mode is required/ },
    { method: 'POST', route: run, body: { mode: 'sing' }, status: 400, message: /mode must be one of "query", "batch", "continue", "input", got "sing"/ },
    { method: 'POST', route: run, body: { mode: 1 }, status: 400, message: /mode must be a string/ },
    { method: 'POST', route: run, body: { mode: 'query' }, status: 400, message: /code is required in mode "query"/ },
    { method: 'POST', route: run, body: { mode: 'query', code: { py: 1 } }, status: 400, message: /code must be a string, got an object/ },
    { method: 'POST', route: run, body: { mode: 'query', code: '1', options: 'x' }, status: 400, message: /options must be a JSON object/ },
    { method: 'POST', route: run, body: { mode: 'continue' }, status: 400, message: /runId is required in mode "continue"/ },
    { method: 'POST', route: run, body: { mode: 'continue', runId: '../../etc/passwd' }, status: 400, message: /runId has an invalid format/ },
    { method: 'POST', route: run, body: { mode: 'continue', runId: long(65) }, status: 400, message: /runId is too long/ },
    { method: 'POST', route: run, body: { mode: 'continue', runId: 'never-started' }, status: 404, message: /no run never-started in progress/ },
    { method: 'POST', route: run, body: { mode: 'input', runId: 'never-started' }, status: 400, message: /code is required in mode "input"/ },
    { method: 'POST', route: run, body: { mode: 'batch', options: { files: 'main.py' } }, status: 400, message: /options.files must be an array/ },
    { method: 'POST', route: run, body: { mode: 'batch', options: { files: [{ name: 'main.py' }] } }, status: 400, message: /options.files\[0\].content is required/ },
    { method: 'POST', route: run, body: { mode: 'batch', options: { files: [{ name: '../../etc/passwd', content: 'x' }] } }, status: 400, message: /options.files\[0\].name "..\/..\/etc\/passwd"/ },
    { method: 'POST', route: run, body: { mode: 'batch', options: { files: [{ name: '/etc/passwd', content: 'x' }] } }, status: 400, message: /options.files\[0\].name "\/etc\/passwd"/ },
    { method: 'POST', route: run, body: { mode: 'batch', options: { exec: long(70_000) } }, status: 400, message: /options.exec is too long/ },
    // Ids: malformed, traversal, over-long, unknown, with every method.
    ...['GET', 'DELETE', 'PATCH', 'POST'].flatMap((method): Case[] => [
      { method, route: '/v1/kernel/not-a-uuid', body: method === 'POST' ? { mode: 'query', code: '1' } : undefined, status: 400, message: /"not-a-uuid" is not a kernel id \(expected a UUID\)/ },
      { method, route: '/v1/kernel/..%2f..%2fetc%2fpasswd', body: method === 'POST' ? { mode: 'query', code: '1' } : undefined, status: 400, message: /is not a kernel id/ },
      { method, route: '/v1/kernel/%ZZ', body: method === 'POST' ? { mode: 'query', code: '1' } : undefined, status: 400, message: /is not a kernel id/ },
      { method, route: `/v1/kernel/${long(5000)}`, body: method === 'POST' ? { mode: 'query', code: '1' } : undefined, status: 400, message: /is not a kernel id/ },
      { method, route: `/v1/kernel/${NO_KERNEL}`, body: method === 'POST' ? { mode: 'query', code: '1' } : undefined, status: 404, message: /no kernel with id/ },
    ]),
    { method: 'PUT', route: run, status: 405, message: /PUT is not allowed/ },
    { method: 'GET', route: '/v1/kernel/create', status: 400, message: /"create" is not a kernel id/ },
    { method: 'GET', route: '/v1/nothing-here', status: 404, message: /no such resource: GET \/v1\/nothing-here/ },
    // Query strings are not read by the v1 API; malformed ones do not break it.
    { method: 'GET', route: `/v1/kernel/${NO_KERNEL}?token=%ZZ&token=a&%%=1`, status: 404, message: /no kernel with id/ },
  ];
  for (const c of cases) await send(t, c);
  t.is((await svc.call('GET', `/v1/kernel/${kernel}`)).status, 200, 'the service and the kernel are still fine');
});

test('Jupyter REST APIs: every bad input is a 4xx {message, reason} that says what is wrong', async (t) => {
  const cases: Case[] = [
    ...bodyCases('POST', '/api/kernels'),
    ...bodyCases('POST', '/api/sessions'),
    ...bodyCases('PATCH', `/api/sessions/${session}`),
    // kernels
    { method: 'POST', route: '/api/kernels', body: { name: 5 }, status: 400, message: /name must be a string/ },
    { method: 'POST', route: '/api/kernels', body: { name: long(200) }, status: 400, message: /name is too long/ },
    { method: 'POST', route: '/api/kernels', body: { name: 'no-such-kernel' }, status: 400, message: /unknown lang "no-such-kernel"/ },
    { method: 'POST', route: '/api/kernels', body: { name: 'python3', env: 'PATH=/' }, status: 400, message: /env must be an object/ },
    { method: 'POST', route: '/api/kernels', body: { name: 'python3', env: { KERNEL_X: 1 } }, status: 400, message: /env.KERNEL_X must be a string/ },
    { method: 'POST', route: '/api/kernels', body: { name: 'python3', env: { 'NOT A NAME': 'x' } }, status: 400, message: /env.NOT A NAME is not a valid environment variable name/ },
    { method: 'POST', route: '/api/kernels', body: { name: 'python3', path: long(5000) }, status: 400, message: /path is too long/ },
    { method: 'POST', route: '/api/kernels', body: { name: 'python3', extra: true }, status: 400, message: /unknown field "extra"/ },
    ...['GET', 'DELETE'].flatMap((method): Case[] => [
      { method, route: '/api/kernels/not-a-uuid', status: 404, message: /no kernel with id not-a-uuid/ },
      { method, route: '/api/kernels/..%2f..%2fetc%2fpasswd', status: 404, message: /no kernel with id/ },
      { method, route: `/api/kernels/${long(5000)}`, status: 404, message: /no kernel with id/ },
      { method, route: `/api/kernels/${NO_KERNEL}`, status: 404, message: /no kernel with id/ },
    ]),
    { method: 'POST', route: `/api/kernels/${NO_KERNEL}/interrupt`, status: 404, message: /no kernel with id/ },
    { method: 'POST', route: `/api/kernels/${NO_KERNEL}/restart`, status: 404, message: /no kernel with id/ },
    { method: 'POST', route: '/api/kernels/%ZZ/restart', status: 404, message: /no kernel with id/ },
    { method: 'GET', route: `/api/kernels/${NO_KERNEL}/channels`, status: 404, message: /no kernel with id/ },
    { method: 'GET', route: `/api/kernels/${kernel}/channels`, status: 400, message: /this endpoint is a WebSocket/ },
    { method: 'PUT', route: '/api/kernels', status: 405, message: /PUT is not allowed/ },
    // kernelspecs: names and resource files, traversal included.
    { method: 'GET', route: '/api/kernelspecs/..%2f..%2fetc%2fpasswd', status: 404, message: /Kernel spec ..\/..\/etc\/passwd not found/ },
    { method: 'GET', route: `/api/kernelspecs/${long(5000)}`, status: 404, message: /not found/ },
    { method: 'GET', route: '/kernelspecs/python3/..%2f..%2f..%2fetc%2fpasswd', status: 404, message: /has no resource ..\/..\/..\/etc\/passwd/ },
    { method: 'GET', route: '/kernelspecs/python3/%2fetc%2fpasswd', status: 404, message: /has no resource/ },
    { method: 'GET', route: '/kernelspecs/..%2f..%2fetc/passwd', status: 404, message: /has no resource/ },
    { method: 'GET', route: '/kernelspecs/python3/kernel.json', status: 404, message: /has no resource kernel.json/ },
    // sessions
    { method: 'POST', route: '/api/sessions', body: {}, status: 400, message: /Missing field in JSON data: path/ },
    { method: 'POST', route: '/api/sessions', body: { path: 'a.ipynb' }, status: 400, message: /Missing field in JSON data: type/ },
    { method: 'POST', route: '/api/sessions', body: { path: 5, type: 'notebook' }, status: 400, message: /path must be a string/ },
    { method: 'POST', route: '/api/sessions', body: { path: long(5000), type: 'notebook' }, status: 400, message: /path is too long/ },
    { method: 'POST', route: '/api/sessions', body: { path: 'a.ipynb', type: 'notebook', kernel: 'python3' }, status: 400, message: /kernel must be a JSON object/ },
    { method: 'POST', route: '/api/sessions', body: { path: 'a.ipynb', type: 'notebook', kernel: { name: 3 } }, status: 400, message: /kernel.name must be a string/ },
    { method: 'POST', route: '/api/sessions', body: { path: 'a.ipynb', type: 'notebook', kernel: { id: long(100) } }, status: 400, message: /kernel.id is too long/ },
    { method: 'POST', route: '/api/sessions', body: { path: 'a.ipynb', type: 'notebook', notebook: 'a.ipynb' }, status: 400, message: /notebook must be a JSON object/ },
    { method: 'PATCH', route: `/api/sessions/${session}`, body: { kernel: { id: 'zzz' } }, status: 400, message: /No such kernel: zzz/ },
    { method: 'PATCH', route: `/api/sessions/${session}`, body: { path: ['a'] }, status: 400, message: /path must be a string/ },
    { method: 'PATCH', route: `/api/sessions/${session}`, body: { owner: 'me' }, status: 400, message: /unknown field "owner"/ },
    ...['GET', 'DELETE', 'PATCH'].flatMap((method): Case[] => [
      { method, route: '/api/sessions/not-a-uuid', body: method === 'PATCH' ? {} : undefined, status: 404, message: /no session with id not-a-uuid/ },
      { method, route: '/api/sessions/..%2f..%2fetc%2fpasswd', body: method === 'PATCH' ? {} : undefined, status: 404, message: /no session with id/ },
      { method, route: `/api/sessions/${NO_KERNEL}`, body: method === 'PATCH' ? {} : undefined, status: 404, message: /session/ },
    ]),
    { method: 'GET', route: '/api/nothing-here', status: 404, message: /no such resource: GET \/api\/nothing-here/ },
  ];
  for (const c of cases) await send(t, c);
  t.is((await svc.call('GET', `/api/sessions/${session}`)).status, 200, 'the service and the session are still fine');
});

test('/api/executions: bad fields, notebook paths outside the root, bad ids and actions are 4xx', async (t) => {
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  const cases: Case[] = [
    { method: 'POST', route: '/api/executions', body: '{"notebook":', status: 400, message: /not valid JSON/ },
    { method: 'POST', route: '/api/executions', body: '[1]', status: 400, message: /must be a JSON object/ },
    { method: 'POST', route: '/api/executions', body: overLimit, status: 413, message: /larger than/ },
    { method: 'POST', route: '/api/executions', body: `notebook=${long(MAX_BODY)}`, headers: form, status: 413, message: /larger than/ },
    { method: 'POST', route: '/api/executions', body: '<notebook/>', headers: { 'content-type': 'application/xml' }, status: 415, message: /send application\/x-www-form-urlencoded or application\/json, not application\/xml/ },
    { method: 'POST', route: '/api/executions', body: {}, status: 400, message: /notebook is required/ },
    { method: 'POST', route: '/api/executions', body: '', headers: form, status: 400, message: /notebook is required/ },
    { method: 'POST', route: '/api/executions', body: { notebook: { path: 'ok.ipynb' } }, status: 400, message: /notebook must be a string, number or boolean/ },
    // Paths outside the notebook root, every way round.
    { method: 'POST', route: '/api/executions', body: { notebook: '../../../etc/passwd' }, status: 400, message: /notebook points outside the notebook root/ },
    { method: 'POST', route: '/api/executions', body: 'notebook=..%2F..%2Fetc%2Fpasswd', headers: form, status: 400, message: /outside the notebook root/ },
    { method: 'POST', route: '/api/executions', body: { notebook: 'a/../../ok.ipynb' }, status: 400, message: /outside the notebook root/ },
    { method: 'POST', route: '/api/executions', body: { notebook: '/etc/passwd' }, status: 400, message: /must be relative to the notebook root/ },
    { method: 'POST', route: '/api/executions', body: { notebook: 'C:\\Windows\\win.ini' }, status: 400, message: /must be relative to the notebook root/ },
    { method: 'POST', route: '/api/executions', body: { notebook: 'ok.ipynb\u0000.txt' }, status: 400, message: /contains a NUL character/ },
    { method: 'POST', route: '/api/executions', body: { notebook: 'ok.ipynb', output_path: '../escaped.ipynb' }, status: 400, message: /output_path points outside the notebook root/ },
    { method: 'POST', route: '/api/executions', body: { notebook: 'missing.ipynb' }, status: 404, message: /missing.ipynb/ },
    { method: 'POST', route: '/api/executions', body: { notebook: 'broken.ipynb' }, status: 400, message: /not a valid notebook|not valid JSON/ },
    { method: 'POST', route: '/api/executions', body: { notebook: 'ok.ipynb', cell_timeout: 'soon' }, status: 400, message: /cell_timeout must be a whole number of seconds/ },
    { method: 'POST', route: '/api/executions', body: { notebook: 'ok.ipynb', overwrite: 'maybe' }, status: 400, message: /overwrite must be true or false/ },
    { method: 'POST', route: '/api/executions', body: { notebook: 'ok.ipynb', jupyter_kernel: long(100) }, status: 400, message: /jupyter_kernel is too long/ },
    { method: 'POST', route: '/api/executions', body: { notebook: 'ok.ipynb', jupyter_kernel: 'cobol' }, status: 400, message: /kernel "cobol" is not available/ },
    // Ids and actions.
    ...['GET', 'DELETE'].flatMap((method): Case[] => [
      { method, route: '/api/executions/no-such-execution', status: 404, message: /no execution with id no-such-execution/ },
      { method, route: '/api/executions/..%2f..%2fetc%2fpasswd', status: 404, message: /no execution with id/ },
      { method, route: `/api/executions/${long(5000)}`, status: 404, message: /no execution with id/ },
    ]),
    { method: 'POST', route: '/api/executions/no-such-execution', body: { action: 'shutdown' }, status: 404, message: /no execution with id/ },
    { method: 'POST', route: '/api/executions/no-such-execution', body: {}, status: 400, message: /action is required/ },
    { method: 'POST', route: '/api/executions/no-such-execution', body: { action: 'explode' }, status: 400, message: /unknown action "explode"; the only action is "shutdown"/ },
    { method: 'POST', route: '/api/executions/no-such-execution?action=shutdown&action=explode', body: '', headers: form, status: 400, message: /unknown action/ },
    { method: 'POST', route: '/api/executions/no-such-execution', body: overLimit, status: 413, message: /larger than/ },
  ];
  for (const c of cases) await send(t, c);
  t.is((await svc.call('GET', '/api/executions')).status, 200);
});

test('a body streamed without Content-Length is cut at the limit with 413', async (t) => {
  const chunk = new TextEncoder().encode(long(16 * 1024));
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      // Up to 4x the limit: the service answers before the client is done.
      if ((sent += chunk.length) > 4 * MAX_BODY) controller.close();
      else controller.enqueue(chunk);
    },
  });
  const response = await fetch(`${svc.url}/v1/kernel/create`, { method: 'POST', body, duplex: 'half', headers: { 'content-type': 'application/json' } } as RequestInit).catch(
    (error: Error) => error,
  );
  if (response instanceof Error) return t.fail(`no answer: ${response.message} ${String((response as { cause?: unknown }).cause)}`);
  t.is(response.status, 413);
  t.regex((await response.json()).detail, /larger than/);
  t.is((await svc.call('GET', `/v1/kernel/${kernel}`)).status, 200);
});

test('with KG_AUTH_TOKEN: bad, repeated and malformed tokens are 401 JSON, on every surface', async (t) => {
  const secured = await startTestService({ authToken: 's3cret' });
  try {
    const routes = ['/v1/kernel/create', `/v1/kernel/${NO_KERNEL}`, '/api/kernels', '/api/kernelspecs', '/api/sessions', '/api/executions'];
    const queries = ['', '?token=', '?token=%ZZ', '?token=s3cre', '?token=s3cret%00', '?token=wrong&token=s3cret', `?token=${long(3000)}`];
    for (const route of routes) {
      for (const query of queries) {
        const response = await fetch(`${secured.url}${route}${query}`, { headers: query ? {} : { authorization: 'token nope' } });
        const body = (await response.json()) as Record<string, string>;
        t.is(response.status, 401, `${route}${query.slice(0, 40)}`);
        t.regex(route.startsWith('/v1/') ? body.detail! : body.message!, /authentication required/);
      }
    }
    t.is((await fetch(`${secured.url}/api/kernels?token=s3cret`)).status, 200);
  } finally {
    await secured.stop();
  }
});

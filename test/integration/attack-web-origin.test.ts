/**
 * A web page attacking a service on 127.0.0.1 with the default empty token: cross-site requests (CSRF,
 * with the "simple request" content types that need no CORS preflight) and DNS rebinding (a page whose
 * host name resolves to 127.0.0.1, so its requests are "same-origin" but carry a foreign Host). Every one
 * is refused on every API surface, the channels WebSocket included, and no kernel is started; clients that
 * are not browsers (curl -d, server-side clients) keep working.
 *
 * Requests go through node:http so that the test sets Host and Origin exactly as a browser would.
 */
import http from 'node:http';
import test from 'ava';
import WebSocket from 'ws';
import { startTestService, type TestService } from '../helpers/service.js';
import { createKernel, query } from '../helpers/v1-client.js';

let svc: TestService;
let port: number;
let victim: string;

test.before(async () => {
  svc = await startTestService();
  port = Number(new URL(svc.url).port);
  victim = await createKernel(svc.call, { lang: 'python3' });
});

test.after.always(async () => {
  await svc?.stop();
});

interface Answer {
  status: number;
  body: any;
  contentType: string;
}

function raw(method: string, path: string, headers: Record<string, string>, body?: string, target = svc): Promise<Answer> {
  const url = new URL(target.url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: url.port, method, path, headers: { ...headers, ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}) } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () => {
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            // Not JSON: the assertion will show it.
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, contentType: String(res.headers['content-type'] ?? '') });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const kernelCount = async () => (await svc.service.kernels.list()).length;

/** What a page on http://evil.example can send without a preflight: a form post or text/plain fetch. */
const CROSS_SITE_WRITES: [method: string, path: () => string, contentType: string, body: string][] = [
  ['POST', () => '/v1/kernel/create', 'text/plain;charset=UTF-8', '{"lang":"python3"}'],
  ['POST', () => '/v1/kernel/create', 'application/x-www-form-urlencoded', '{"lang":"python3"}'],
  ['POST', () => '/api/kernels', 'text/plain', '{"name":"python3"}'],
  ['POST', () => '/api/kernels', 'multipart/form-data; boundary=x', '{"name":"python3"}'],
  ['POST', () => '/api/sessions', 'text/plain', '{"path":"a.ipynb","type":"notebook","kernel":{"name":"python3"}}'],
  ['POST', () => '/api/executions', 'application/x-www-form-urlencoded', 'notebook=Example.ipynb'],
  ['POST', () => `/v1/kernel/${victim}`, 'text/plain', '{"mode":"query","code":"print(1)"}'],
  ['POST', () => `/api/kernels/${victim}/restart`, 'text/plain', ''],
  ['POST', () => `/api/kernels/${victim}/interrupt`, 'text/plain', ''],
  ['DELETE', () => `/api/kernels/${victim}`, 'text/plain', ''],
  ['DELETE', () => `/v1/kernel/${victim}`, 'text/plain', ''],
];

test.serial('CSRF: a page elsewhere (Origin: http://evil.example) is refused on every API, and starts no kernel', async (t) => {
  const before = await kernelCount();
  for (const origin of ['http://evil.example', 'null', `http://127.0.0.1:${port + 1}`]) {
    for (const [method, path, contentType, body] of CROSS_SITE_WRITES) {
      const answer = await raw(method, path(), { host: `127.0.0.1:${port}`, origin, 'content-type': contentType }, body);
      t.is(answer.status, 403, `${origin} ${method} ${path()} answered ${answer.status} ${JSON.stringify(answer.body)}`);
      const message = path().startsWith('/v1') ? answer.body?.detail : answer.body?.message;
      t.regex(String(message), /KG_ALLOW_ORIGIN/, 'the error says which option allows that origin');
    }
    // Reads too (a page must not list kernels or kernelspecs of the victim's machine).
    const list = await raw('GET', '/api/kernels', { host: `127.0.0.1:${port}`, origin });
    t.is(list.status, 403);
  }
  // A no-cors subresource (<img>/<script src>) carries no Origin but Sec-Fetch-Site.
  const subresource = await raw('GET', '/api/kernels', { host: `127.0.0.1:${port}`, 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors' });
  t.is(subresource.status, 403);
  t.is(await kernelCount(), before, 'no kernel was started or deleted');
  t.is((await query(svc.call, victim, 'print("still here")')).text, 'still here\n', 'the victim kernel was not touched');
  t.log(`refused ${CROSS_SITE_WRITES.length * 3 + 4} cross-site requests; kernels before/after: ${before}/${await kernelCount()}`);
});

test.serial('CSRF: the channels and v1 streaming WebSockets refuse a foreign Origin', async (t) => {
  const status = await wsHandshake(`/api/kernels/${victim}/channels`, { host: `127.0.0.1:${port}`, origin: 'http://evil.example' });
  t.is(status, 403);
  t.is(await wsHandshake(`/v1/stream/kernel/${victim}/execute`, { host: `127.0.0.1:${port}`, origin: 'http://evil.example' }), 403);
});

test.serial('DNS rebinding: a foreign Host against the loopback-bound service is refused, with or without Origin', async (t) => {
  const before = await kernelCount();
  for (const host of [`attacker.example:${port}`, 'attacker.example', `0.0.0.0:${port}`, `127.0.0.1.attacker.example:${port}`]) {
    // After rebinding, the page's requests are same-origin: Origin and Host name the attacker's host.
    const sameOrigin = await raw('POST', '/api/kernels', { host, origin: `http://${host}`, 'content-type': 'application/json' }, '{"name":"python3"}');
    t.is(sameOrigin.status, 403, `${host}: ${sameOrigin.status} ${JSON.stringify(sameOrigin.body)}`);
    t.regex(sameOrigin.body.message, /POLYKERNEL_LOCAL_HOSTNAMES|POLYKERNEL_ALLOW_REMOTE_ACCESS/);
    const v1 = await raw('POST', '/v1/kernel/create', { host, 'content-type': 'application/json' }, '{"lang":"python3"}');
    t.is(v1.status, 403);
    t.is(v1.contentType, 'application/problem+json');
    const read = await raw('GET', `/api/kernels/${victim}`, { host });
    t.is(read.status, 403);
    const ws = await wsHandshake(`/api/kernels/${victim}/channels`, { host, origin: `http://${host}` });
    t.is(ws, 403, `${host}: the WebSocket handshake answered ${ws}`);
    t.is(await wsHandshake(`/v1/stream/kernel/${victim}/execute`, { host, origin: `http://${host}` }), 403, `${host}: the v1 streaming handshake`);
  }
  t.is(await kernelCount(), before, 'no kernel was started');
});

test.serial('a browser request must label its JSON body application/json; same-origin text/plain is 415', async (t) => {
  const answer = await raw('POST', '/api/kernels', { host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}`, 'content-type': 'text/plain' }, '{"name":"python3"}');
  t.is(answer.status, 415, JSON.stringify(answer.body));
  t.regex(answer.body.message, /application\/json/);
});

test.serial('non-browser clients keep working: curl -d (form-labelled JSON, no Origin), local names, same-origin JSON', async (t) => {
  // curl -d '{"lang":"python3"}' sends exactly this.
  const curl = await raw('POST', '/v1/kernel/create', { host: `127.0.0.1:${port}`, 'content-type': 'application/x-www-form-urlencoded', 'user-agent': 'curl/7.88.1' }, '{"lang":"python3"}');
  t.is(curl.status, 201, JSON.stringify(curl.body));
  const executed = await raw('POST', `/v1/kernel/${curl.body.kernelId}`, { host: `localhost:${port}`, 'content-type': 'application/x-www-form-urlencoded' }, '{"mode":"query","code":"print(6*7)"}');
  t.is(executed.status, 200);
  t.deepEqual(executed.body.result.console, [['stdout', '42\n']]);
  for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, `127.0.0.2:${port}`, `LOCALHOST:${port}`]) {
    t.is((await raw('GET', '/api', { host })).status, 200, host);
  }
  // A page served from this very service (same origin, JSON) may use it, as jupyter_server allows.
  const sameOrigin = await raw('GET', `/api/kernels/${victim}`, { host: `localhost:${port}`, origin: `http://localhost:${port}` });
  t.is(sameOrigin.status, 200);
  t.is((await raw('DELETE', `/api/kernels/${curl.body.kernelId}`, { host: `127.0.0.1:${port}` })).status, 204);
  t.is(await wsHandshake(`/api/kernels/${victim}/channels`, { host: `127.0.0.1:${port}` }), 101, 'a WebSocket client without Origin connects');
  t.is(await wsHandshake(`/v1/stream/kernel/${victim}/execute`, { host: `localhost:${port}` }), 101, 'a v1 streaming client without Origin connects');
});

test.serial('KG_ALLOW_ORIGIN, POLYKERNEL_LOCAL_HOSTNAMES and POLYKERNEL_ALLOW_REMOTE_ACCESS open what they name, and only that', async (t) => {
  const open = await startTestService({ allowOrigin: 'https://app.example', localHostnames: ['localhost', 'kernels.internal'] } as never);
  try {
    const p = new URL(open.url).port;
    const allowed = await raw('GET', '/api/kernelspecs', { host: `127.0.0.1:${p}`, origin: 'https://app.example' }, undefined, open);
    t.is(allowed.status, 200);
    const other = await raw('GET', '/api/kernelspecs', { host: `127.0.0.1:${p}`, origin: 'https://evil.example' }, undefined, open);
    t.is(other.status, 403);
    t.is((await raw('GET', '/api', { host: `kernels.internal:${p}` }, undefined, open)).status, 200);
    t.is((await raw('GET', '/api', { host: `attacker.example:${p}` }, undefined, open)).status, 403);
  } finally {
    await open.stop();
  }
  const remote = await startTestService({ allowRemoteAccess: true, allowOrigin: '*' } as never);
  try {
    const p = new URL(remote.url).port;
    t.is((await raw('GET', '/api', { host: `kernels.example.com:${p}`, origin: 'https://anything.example' }, undefined, remote)).status, 200);
  } finally {
    await remote.stop();
  }
});

/** The status of a WebSocket handshake (101 when upgraded). */
function wsHandshake(path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      ws.terminate();
    });
    ws.on('open', () => {
      resolve(101);
      ws.close();
    });
    ws.on('error', () => resolve(-1));
  });
}

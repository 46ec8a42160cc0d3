/**
 * Callbacks against a real loopback listener: a PUT of the JSON body, retried after a failure with a
 * backoff, never following a redirect, bounded by a timeout, and refused where the configuration does not
 * allow the target (SSRF: loopback, private and metadata addresses are not public).
 */
import test from 'ava';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { CallbackSender, CallbackTargets, callbackUrlProblem, isPublicAddress, type CallbackConfig } from '../../src/judge/callbacks.js';
import { silentLogger } from '../../src/logger.js';

const config = (over: Partial<CallbackConfig> = {}): CallbackConfig => ({
  judge0CallbackHosts: ['127.0.0.1'],
  judge0CallbackMaxTries: 3,
  judge0CallbackTimeoutMs: 500,
  judge0CallbackBackoffMs: 10,
  ...over,
});

async function listener(t: { teardown: (fn: () => unknown) => void }, answer: (n: number, req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const hits: { method: string; url: string; body: string; type?: string }[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      hits.push({ method: req.method!, url: req.url!, body, type: req.headers['content-type'] });
      answer(hits.length, req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits };
}

test('public addresses: loopback, private, link-local (metadata), CGNAT and mapped forms are not', (t) => {
  for (const address of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '0:0:0:0:0:ffff:a00:1', 'fe80::1', 'fd00::1', '224.0.0.1']) {
    t.false(isPublicAddress(address), address);
  }
  for (const address of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111']) t.true(isPublicAddress(address), address);
});

test('callback URLs are checked when the submission comes in', (t) => {
  const publicOnly = new CallbackTargets([]);
  t.is(callbackUrlProblem('https://hooks.example.com/judge', publicOnly), undefined);
  t.regex(callbackUrlProblem('http://169.254.169.254/latest/meta-data', publicOnly)!, /public addresses only/);
  t.regex(callbackUrlProblem('http://localhost:8080/', publicOnly)!, /not allowed/);
  t.regex(callbackUrlProblem('http://[::1]/', publicOnly)!, /not allowed/);
  t.regex(callbackUrlProblem('file:///etc/passwd', publicOnly)!, /http or https/);
  t.regex(callbackUrlProblem('not a url', publicOnly)!, /not a valid URL/);
  t.is(callbackUrlProblem('http://10.0.0.5/', new CallbackTargets(['10.0.0.0/8'])), undefined);
  t.regex(callbackUrlProblem('http://10.0.0.5/', new CallbackTargets(['192.168.0.0/16']))!, /only the hosts this server lists/);
  t.is(callbackUrlProblem('http://127.0.0.1/', new CallbackTargets(['*'])), undefined);
});

test('a PUT of the JSON body; a failed try (500) is retried after the backoff', async (t) => {
  const server = await listener(t, (n, _req, res) => res.writeHead(n === 1 ? 500 : 204).end());
  const sender = new CallbackSender({ config: config(), log: silentLogger });
  t.true(await sender.send(`${server.url}/hook?x=1`, '{"token":"t"}'));
  t.is(server.hits.length, 2);
  t.deepEqual(server.hits[1], { method: 'PUT', url: '/hook?x=1', body: '{"token":"t"}', type: 'application/json' });
});

test('a redirect is not followed; tries are bounded', async (t) => {
  const target = await listener(t, (_n, _req, res) => res.writeHead(200).end());
  const redirecting = await listener(t, (_n, _req, res) => res.writeHead(302, { Location: `${target.url}/stolen` }).end());
  const sender = new CallbackSender({ config: config(), log: silentLogger });
  t.false(await sender.send(redirecting.url, '{}'));
  t.is(redirecting.hits.length, 3);
  t.is(target.hits.length, 0);
});

test('a listener that never answers costs one timeout per try', async (t) => {
  const silent = await listener(t, () => undefined);
  const sender = new CallbackSender({ config: config({ judge0CallbackMaxTries: 2, judge0CallbackTimeoutMs: 200 }), log: silentLogger });
  const started = Date.now();
  t.false(await sender.send(silent.url, '{}'));
  t.true(Date.now() - started < 5000);
  t.is(silent.hits.length, 2);
});

test('a target the configuration does not allow is never connected to, whatever it resolves to', async (t) => {
  const server = await listener(t, (_n, _req, res) => res.writeHead(200).end());
  const publicOnly = new CallbackSender({ config: config({ judge0CallbackHosts: [], judge0CallbackMaxTries: 1 }), log: silentLogger });
  t.regex(await publicOnly.tryOnce(server.url, '{}'), /may not reach/);
  const port = new URL(server.url).port;
  t.regex(await publicOnly.tryOnce(`http://localhost:${port}/`, '{}'), /may not reach/);
  t.is(server.hits.length, 0);
});

/**
 * The browser edge's decisions on headers alone: loopback addresses and local names, jupyter_server's
 * Host check and its auto mode, Origin = Host or KG_ALLOW_ORIGIN, Sec-Fetch-Site on no-cors requests, and
 * which bodies a browser must label as JSON.
 */
import test from 'ava';
import { edgeCheck, hostName, isJsonType, isLoopback, refusesNonJsonBody, remoteAccessAllowed } from '../../src/api/origin.js';

const base = { ip: '127.0.0.1', allowOrigin: '', allowRemoteAccess: 'auto' as const, localHostnames: ['localhost'] };

test('loopback addresses and host names', (t) => {
  for (const a of ['127.0.0.1', '127.8.9.10', '::1', '[::1]', '0:0:0:0:0:0:0:1', 'localhost', 'LocalHost', 'x.localhost']) t.true(isLoopback(a), a);
  for (const a of ['0.0.0.0', '::', '', '10.0.0.1', '128.0.0.1', 'example.com', '::2']) t.false(isLoopback(a), a);
  t.is(hostName('Example.COM:8888'), 'example.com');
  t.is(hostName('[::1]:8888'), '::1');
  t.is(hostName('::1'), '::1');
  t.is(hostName('localhost'), 'localhost');
});

test('auto remote access: off on a loopback address, on elsewhere; an explicit value wins', (t) => {
  t.false(remoteAccessAllowed({ ip: '127.0.0.1', allowRemoteAccess: 'auto' }));
  t.false(remoteAccessAllowed({ ip: 'localhost', allowRemoteAccess: 'auto' }));
  t.true(remoteAccessAllowed({ ip: '0.0.0.0', allowRemoteAccess: 'auto' }));
  t.true(remoteAccessAllowed({ ip: '', allowRemoteAccess: 'auto' }));
  t.true(remoteAccessAllowed({ ip: '127.0.0.1', allowRemoteAccess: true }));
  t.false(remoteAccessAllowed({ ip: '0.0.0.0', allowRemoteAccess: false }));
});

test('Host: loopback and local names pass, anything else is refused naming the options; remote access turns it off', (t) => {
  const check = edgeCheck(base);
  for (const host of ['127.0.0.1:1', 'localhost:1', 'LOCALHOST', '[::1]:1', '127.0.0.5']) t.is(check({ host }), undefined, host);
  for (const host of ['evil.example:1', '0.0.0.0:1', '10.1.2.3', 'localhost.evil.example', '127.0.0.1.nip.io']) {
    t.regex(check({ host }) ?? '', /POLYKERNEL_LOCAL_HOSTNAMES.*POLYKERNEL_ALLOW_REMOTE_ACCESS/, host);
  }
  t.is(check({}), undefined, 'no Host (HTTP/1.0) passes, as in jupyter_server');
  t.is(edgeCheck({ ...base, localHostnames: ['kernels.internal'] })({ host: 'kernels.internal:80' }), undefined);
  t.is(edgeCheck({ ...base, ip: '0.0.0.0' })({ host: 'evil.example' }), undefined);
});

test('Origin: none passes, the service itself and KG_ALLOW_ORIGIN pass, anything else is refused', (t) => {
  const check = edgeCheck(base);
  t.is(check({ host: 'localhost:8888' }), undefined);
  t.is(check({ host: 'localhost:8888', origin: 'http://localhost:8888' }), undefined);
  t.is(check({ host: 'localhost', origin: 'http://localhost:80' }), undefined, 'default ports are the same origin');
  for (const origin of ['http://evil.example', 'null', 'http://localhost:8889', 'file://', 'chrome-extension://abc']) {
    t.regex(check({ host: 'localhost:8888', origin }) ?? '', /KG_ALLOW_ORIGIN/, origin);
  }
  t.is(check({ host: 'localhost:8888', origin: 'http://evil.example' }, 'OPTIONS'), undefined, 'preflights are not origin-checked');
  const allowing = edgeCheck({ ...base, allowOrigin: 'https://app.example/' });
  t.is(allowing({ host: 'localhost:8888', origin: 'https://APP.example' }), undefined);
  t.truthy(allowing({ host: 'localhost:8888', origin: 'https://app.example.evil' }));
  t.is(edgeCheck({ ...base, allowOrigin: '*' })({ host: 'localhost:8888', origin: 'http://evil.example' }), undefined);
});

test('Sec-Fetch-Site without Origin (no-cors subresources): cross-site and same-site are refused', (t) => {
  const check = edgeCheck(base);
  t.truthy(check({ host: 'localhost', 'sec-fetch-site': 'cross-site' }));
  t.truthy(check({ host: 'localhost', 'sec-fetch-site': 'same-site' }));
  t.is(check({ host: 'localhost', 'sec-fetch-site': 'same-origin' }), undefined);
  t.is(check({ host: 'localhost', 'sec-fetch-site': 'none' }), undefined, 'typed into the address bar');
  t.is(check({ host: 'localhost', 'sec-fetch-mode': 'cors' }), undefined, "Node's fetch sends Sec-Fetch-Mode only");
});

test('a browser must label JSON bodies as JSON; other clients may label them as a form', (t) => {
  t.true(isJsonType('application/json'));
  t.true(isJsonType('Application/JSON; charset=utf-8'));
  t.true(isJsonType('application/problem+json'));
  t.false(isJsonType('text/plain'));
  t.false(isJsonType(undefined));
  t.is(refusesNonJsonBody({ 'content-type': 'application/x-www-form-urlencoded' }), undefined, 'curl -d');
  t.is(refusesNonJsonBody({ origin: 'http://localhost', 'content-type': 'application/json' }), undefined);
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
    t.regex(refusesNonJsonBody({ origin: 'http://localhost', 'content-type': type }) ?? '', /application\/json/, type);
    t.truthy(refusesNonJsonBody({ 'sec-fetch-site': 'same-origin', 'content-type': type }));
  }
});

/**
 * The playground's asset route (src/api/playground/routes.ts) over a bundle directory of the test's own:
 * the page with its CSP, bundle files by name only (no path, no dot file, no other extension), a clear
 * 503 when the bundle was never built, and every other request passed on.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import test from 'ava';
import Koa from 'koa';
import { errorBoundary } from '../../src/api/http.js';
import { PLAYGROUND_CSP, playground } from '../../src/api/playground/routes.js';
import { silentLogger } from '../../src/logger.js';

async function serve(dir: string): Promise<{ url: string; close(): Promise<void> }> {
  const app = new Koa();
  app.silent = true;
  app.use(errorBoundary(silentLogger));
  app.use(playground(pathToFileURL(`${dir}/`)));
  app.use((ctx) => {
    ctx.body = { passedOn: ctx.path };
  });
  const server = http.createServer(app.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

test('the page, its script chunks and stylesheet are served; nothing else is', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pk-playground-'));
  const site = await serve(dir);
  t.teardown(async () => {
    await site.close();
    await rm(dir, { recursive: true, force: true });
  });
  await writeFile(path.join(dir, 'index.html'), '<!doctype html><title>p</title>');
  await writeFile(path.join(dir, 'playground.js'), 'export {}');
  await writeFile(path.join(dir, 'chunk-AB12.js'), 'export {}');
  await writeFile(path.join(dir, 'playground.css'), 'body{}');
  await writeFile(path.join(dir, 'secret.json'), '{"secret":1}');
  await writeFile(path.join(dir, '.hidden.js'), 'hidden');

  const page = await fetch(`${site.url}/`);
  t.is(page.status, 200);
  t.is(page.headers.get('content-type'), 'text/html; charset=utf-8');
  t.is(page.headers.get('content-security-policy'), PLAYGROUND_CSP);
  t.is(page.headers.get('x-frame-options'), 'DENY');
  t.is(await page.text(), '<!doctype html><title>p</title>');

  for (const [name, type] of [['playground.js', 'text/javascript'], ['chunk-AB12.js', 'text/javascript'], ['playground.css', 'text/css']]) {
    const asset = await fetch(`${site.url}/playground/${name}`);
    t.is(asset.status, 200, name);
    t.true(asset.headers.get('content-type')!.startsWith(type!), name);
    t.is(asset.headers.get('x-content-type-options'), 'nosniff');
    t.is(asset.headers.get('content-security-policy'), null, 'the CSP is the page\'s');
  }
  t.is((await fetch(`${site.url}/playground/chunk-AB12.js`)).headers.get('cache-control'), 'public, max-age=31536000, immutable', 'hashed chunks are kept');
  t.is((await fetch(`${site.url}/playground/playground.js`)).headers.get('cache-control'), 'no-cache', 'the entry is checked each time');
  t.is(page.headers.get('cache-control'), 'no-cache');
  const head = await fetch(`${site.url}/playground/playground.js`, { method: 'HEAD' });
  t.is(head.status, 200);

  for (const refused of ['/playground/secret.json', '/playground/.hidden.js', '/playground/missing.js', '/playground/index.html', '/playground/%2e%2e%2fsecret.json', '/playground/sub/playground.js', '/index.html']) {
    const answer = await fetch(`${site.url}${refused}`);
    t.deepEqual(await answer.json(), { passedOn: new URL(refused, site.url).pathname }, `${refused} is passed on, not served`);
  }
  const post = await fetch(`${site.url}/`, { method: 'POST' });
  t.deepEqual(await post.json(), { passedOn: '/' });
});

test('a bundle never built is a 503 that says how to build it', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pk-playground-'));
  const site = await serve(dir);
  t.teardown(async () => {
    await site.close();
    await rm(dir, { recursive: true, force: true });
  });
  const answer = await fetch(`${site.url}/`);
  t.is(answer.status, 503);
  t.regex((await answer.json()).message, /npm run build/);
  // Built afterwards (a build while the service runs): found without a restart.
  await writeFile(path.join(dir, 'index.html'), 'built');
  t.is(await (await fetch(`${site.url}/`)).text(), 'built');
});

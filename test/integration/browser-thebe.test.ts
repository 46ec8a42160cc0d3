/**
 * Thebe (thebe-core from npm, its own browser build) on the example tutorial page (examples/thebe),
 * served from another origin than the service's, as a tutorial site would be: the service allows that
 * origin the documented way (KG_ALLOW_ORIGIN and the CORS headers, README "Thebe"), Thebe connects to it
 * as its Jupyter server with the site's own API key (as the README advises for a key a page publishes),
 * and every code block of the page runs on a real Docker kernel and shows its output. The page reaches
 * only its own origin and the service.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { collectPageErrors, guardOrigins, launchBrowser, screenshot, type OriginGuard } from '../helpers/browser.js';
import { startTestService, type TestService } from '../helpers/service.js';
import { KeysFile } from '../helpers/tenant-keys.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const ADMIN = 'thebe-admin-token';
/** The tutorial site's own API key, with the quotas the README recommends for a key published in a page. */
const SITE_KEY = 'tutorial-site-key';
const WAIT = { timeout: 60_000 };
const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.map': 'application/json' };

/** A static site: URL prefixes mapped to directories, nothing outside them served. */
async function staticSite(mounts: Record<string, string>): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(async (req, res) => {
    let pathname: string;
    try {
      pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      res.writeHead(400).end();
      return;
    }
    const prefix = Object.keys(mounts).sort((a, b) => b.length - a.length).find((p) => pathname.startsWith(p));
    const root = prefix === undefined ? undefined : mounts[prefix]!;
    const file = root === undefined ? undefined : path.resolve(root, `.${pathname.slice(prefix!.length - 1)}`);
    const isFile = file !== undefined && file.startsWith(root! + path.sep) && (await stat(file).then((s) => s.isFile(), () => false));
    if (!isFile) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file!)] ?? 'application/octet-stream' });
    createReadStream(file!).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

let site: Awaited<ReturnType<typeof staticSite>>;
let svc: TestService;
let keys: KeysFile;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let guard: OriginGuard;
let errors: string[];

test.before(async () => {
  // What `npx copy-thebe-assets examples/thebe/thebe core` would copy, served in place.
  site = await staticSite({ '/': path.join(REPO, 'examples/thebe'), '/thebe/': path.join(REPO, 'node_modules/thebe-core/dist/lib') });
  keys = await KeysFile.create([{ id: 'tutorial', key: SITE_KEY, maxKernels: 2, maxMemKB: 1_048_576, rateLimit: 1000 }]);
  [svc, browser] = await Promise.all([
    startTestService({
      authToken: ADMIN,
      apiKeysFile: keys.file,
      allowOrigin: site.url,
      allowHeaders: 'Authorization,Content-Type',
      allowMethods: 'GET,POST,PATCH,DELETE',
    }),
    launchBrowser(),
  ]);
  context = await browser.newContext({ viewport: { width: 900, height: 900 } });
  guard = await guardOrigins(context, [site.url, svc.url]);
  page = await context.newPage();
  errors = collectPageErrors(page);
});

test.after.always(async () => {
  await context?.close().catch(() => undefined);
  await browser?.close().catch(() => undefined);
  await Promise.all([svc?.stop(), site?.close()]);
  await keys?.remove();
});

test.serial('a tutorial page on another origin runs its code blocks on the service through Thebe', async (t) => {
  t.not(new URL(site.url).origin, new URL(svc.url).origin);
  const query = new URLSearchParams({ server: `${svc.url}/`, token: SITE_KEY, kernel: 'python3' });
  await page.goto(`${site.url}/index.html?${query}`);
  await page.click('#activate');
  await page.locator('#thebe-status[data-status="ready"]').waitFor(WAIT).catch(async (error: Error) => {
    throw new Error(`${error.message}\nstatus: ${await page.locator('#thebe-status').innerText()}\n${errors.join('\n')}\nforeign: ${guard.foreign.join(' ')}`);
  });

  const sessions = await svc.call('GET', '/api/sessions', undefined, { authorization: `token ${SITE_KEY}` });
  t.is(sessions.body.length, 1, 'Thebe made one session on the service, under the site\'s key');
  t.is(sessions.body[0].kernel.name, 'python3');

  await page.click('#run-all');
  const output = (id: string) => page.locator(`.cell-output[data-cell="${id}"]`);
  for (const id of ['define', 'total', 'table']) await output(id).locator('xpath=self::*[@data-state="ok" or @data-state="error"]').waitFor(WAIT);
  t.is(await output('define').getAttribute('data-state'), 'ok');
  t.regex(await output('define').innerText(), /squares: \[1, 4, 9, 16, 25, 36, 49\]/);
  t.regex(await output('total').innerText(), /7 squares add up to 140/);
  t.regex(await output('total').innerText(), /140/, 'the execute_result of the block');
  t.is((await output('table').locator('table.squares td').allInnerTexts()).join(','), '1,1,2,4,3,9,4,16');
  await screenshot(page, 'thebe-tutorial', { fullPage: true });

  // An edited block runs as edited, in the same kernel.
  await page.locator('pre#total').evaluate((pre) => (pre.textContent = 'print("edited:", total * 2)'));
  await page.click('button[data-cell="total"]');
  await output('total').getByText('edited: 280').waitFor(WAIT);
  t.pass();
});

test.serial('the Thebe page reached only its own origin and the service', (t) => {
  t.deepEqual(guard.foreign, [], 'requests to other origins');
  t.true(guard.requested.some((url) => url.startsWith(`${svc.url.replace('http', 'ws')}/api/kernels/`)), 'the channels WebSocket went to the service');
  t.deepEqual(errors, [], 'page errors');
});

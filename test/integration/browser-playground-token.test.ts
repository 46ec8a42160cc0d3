/**
 * The playground with KG_AUTH_TOKEN set, in headless Chromium: the page itself loads without a token, asks
 * for it once (a wrong one is refused and asked again), keeps it in the tab's sessionStorage, sends it as
 * Jupyter's clients do (`Authorization: token …` on REST calls, `?token=` on the channels WebSocket) and
 * runs code; a reload needs no new entry. With POLYKERNEL_PLAYGROUND=false `/` is a 404 like any unknown
 * path, and the asset route serves bundle files only.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { collectPageErrors, guardOrigins, launchBrowser, screenshot, type OriginGuard } from '../helpers/browser.js';
import { startTestService, type TestService } from '../helpers/service.js';

const TOKEN = 'playground-secret';
let svc: TestService;
let off: TestService;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let guard: OriginGuard;
let errors: string[];
/** A page of another site that links to the playground. */
let elsewhere: http.Server;
let elsewhereUrl: string;
const WAIT = { timeout: 45_000 };

test.before(async () => {
  [svc, off, browser] = await Promise.all([startTestService({ authToken: TOKEN }), startTestService({ playground: false }), launchBrowser()]);
  elsewhere = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(`<a id="go" href="${svc.url}/">try it in the playground</a>`));
  await new Promise<void>((resolve) => elsewhere.listen(0, '127.0.0.1', resolve));
  elsewhereUrl = `http://127.0.0.1:${(elsewhere.address() as AddressInfo).port}`;
  context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  guard = await guardOrigins(context, [svc.url, elsewhereUrl]);
  page = await context.newPage();
  errors = collectPageErrors(page);
});

test.after.always(async () => {
  await context?.close().catch(() => undefined);
  await browser?.close().catch(() => undefined);
  await Promise.all([svc?.stop(), off?.stop(), new Promise((resolve) => (elsewhere ? elsewhere.close(resolve) : resolve(undefined)))]);
});

test.serial('token mode: the page asks for the token once, keeps it in sessionStorage and sends it as Jupyter clients do', async (t) => {
  const authorizations: string[] = [];
  page.on('request', (request) => {
    if (new URL(request.url()).pathname.startsWith('/api/')) authorizations.push(request.headers().authorization ?? '');
  });
  // Opened from a link on another site, as a README or a course page would link to it.
  await page.goto(`${elsewhereUrl}/`);
  const [response] = await Promise.all([page.waitForNavigation(), page.click('#go')]);
  t.is(response?.url(), `${svc.url}/`);
  t.is(response?.status(), 200, 'the page itself needs no token, and a link from elsewhere opens it');
  const form = page.locator('#token-form');
  await form.waitFor({ state: 'visible', ...WAIT });
  t.is(await page.locator('#token-message').innerText(), 'This service needs a token.');

  await page.locator('#token-input').fill('not-the-token');
  await page.locator('#token-input').press('Enter');
  await page.locator('#token-message', { hasText: 'That token was refused' }).waitFor(WAIT);
  t.true(await form.isVisible(), 'a wrong token is asked for again');
  await screenshot(page, 'playground-token');

  await page.locator('#token-input').fill(TOKEN);
  await page.locator('#token-input').press('Enter');
  await page.locator('#status[data-status="idle"]').waitFor(WAIT);
  t.true(await form.isHidden());
  t.is(await page.evaluate(() => sessionStorage.getItem('polykernel.token')), TOKEN);

  await page.locator('#editor .cm-content').click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText('print("with token", 6 * 7)');
  await page.click('#run');
  const cell = page.locator('#output .run').first();
  await cell.locator('xpath=self::*[@data-state="ok"]').waitFor(WAIT);
  t.is((await cell.locator('.stream.stdout').innerText()).trim(), 'with token 42');

  t.true(authorizations.includes(`token ${TOKEN}`), 'REST calls carry Authorization: token …');
  const sockets = guard.requested.filter((url) => url.startsWith('ws'));
  t.true(sockets.length > 0 && sockets.every((url) => new URL(url).searchParams.get('token') === TOKEN), 'the WebSocket carries ?token=');

  // A reload of the tab finds the token in sessionStorage: nothing is asked.
  await page.reload();
  await page.locator('#status[data-status="idle"]').waitFor(WAIT);
  t.true(await form.isHidden(), 'the token is not asked for again after a reload');
  t.deepEqual(guard.foreign, [], 'requests to other origins');
  t.deepEqual(errors.filter((error) => !/status of 401/.test(error)), [], 'page errors besides the refused probes');
});

test('POLYKERNEL_PLAYGROUND=false: / is a 404 JSON as any unknown path', async (t) => {
  const page = await off.call('GET', '/');
  t.is(page.status, 404);
  t.like(page.body, { reason: 'Not Found' });
  t.regex(page.body.message, /no such resource: GET \//);
  t.is((await off.call('GET', '/playground/playground.js')).status, 404);
  t.is((await off.call('GET', '/api')).status, 200, 'the APIs are unaffected');
});

test('the asset route serves only bundle files', async (t) => {
  const open = await fetch(`${svc.url}/playground/playground.js`);
  t.is(open.status, 200, 'assets need no token: the page must load before one is entered');
  t.regex(open.headers.get('content-type') ?? '', /^text\/javascript/);
  t.is(open.headers.get('x-content-type-options'), 'nosniff');
  for (const path of ['/playground/..%2f..%2fpackage.json', '/playground/%2e%2e/index.html', '/playground/nope.js', '/playground/index.html', '/index.html']) {
    const answer = await fetch(`${svc.url}${path}`);
    const body = await answer.text();
    t.true(answer.status === 401 || answer.status === 404, `${path}: ${answer.status}`);
    t.false(body.includes('"name": "polykernel"') || body.includes('<html'), `${path} serves no file`);
  }
  const head = await fetch(`${svc.url}/`, { method: 'POST' });
  t.is(head.status, 401, 'only GET and HEAD reach the page');
});

test('a navigation from another site opens the page; the Origin check still refuses that site everything else', async (t) => {
  const port = Number(new URL(svc.url).port);
  const get = (path: string, headers: Record<string, string>, method = 'GET') =>
    new Promise<number>((resolve, reject) => {
      http.request({ host: '127.0.0.1', port, path, method, headers }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      }).on('error', reject).end();
    });
  const navigation = { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', host: `127.0.0.1:${port}` };
  t.is(await get('/', navigation), 200);
  t.is(await get('/api/kernels', navigation), 403, 'a navigation to an API is still refused');
  t.is(await get('/playground/playground.js', { ...navigation, 'sec-fetch-mode': 'no-cors', 'sec-fetch-dest': 'script' }), 403, 'a script tag elsewhere cannot load the bundle');
  t.is(await get('/', { ...navigation, 'sec-fetch-dest': 'iframe' }), 403, 'nor frame the page');
  t.is(await get('/', { ...navigation, host: 'rebound.example:80' }), 403, 'the Host check (DNS rebinding) still applies');
  t.is(await get('/', { ...navigation, origin: 'http://evil.example' }, 'POST'), 403, 'a cross-site POST is refused');
});

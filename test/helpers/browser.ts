/**
 * Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by playwright-core (never a
 * browser Playwright downloads), started with the flags that keep it off the network on its own
 * (background networking, component updates, sync) and, as Playwright's launch() does, a new empty
 * profile directory. Screenshots go to the test artifacts directory ($POLYKERNEL_TEST_ARTIFACTS, else
 * test-artifacts/ in the repository, git-ignored).
 *
 * `guardOrigins` makes a context answer only requests to the origins a test names: every other HTTP
 * request is recorded and refused, every WebSocket to elsewhere recorded, so a test can assert that a
 * page reached nothing else.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = process.env.POLYKERNEL_CHROMIUM ?? '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: install Debian's chromium (scripts/host-setup.sh does) or set POLYKERNEL_CHROMIUM`);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
}

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const ARTIFACTS_DIR = process.env.POLYKERNEL_TEST_ARTIFACTS || path.join(REPO, 'test-artifacts');

/** Writes a PNG of the page's viewport (or all of it) to the artifacts directory as `<name>.png`; returns its path. */
export async function screenshot(page: Page, name: string, options: { fullPage?: boolean } = {}): Promise<string> {
  await mkdir(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, `${name.replace(/[^\w.-]+/g, '-')}.png`);
  await page.screenshot({ path: file, fullPage: options.fullPage ?? false });
  return file;
}

export interface OriginGuard {
  /** URLs of requests to any other origin, in the order the browser made them (each was refused). */
  readonly foreign: string[];
  /** Every URL requested (HTTP and WebSocket), allowed or not. */
  readonly requested: string[];
}

/** Lets `context` reach only `origins` (e.g. `http://127.0.0.1:8888`); records and refuses the rest. */
export async function guardOrigins(context: BrowserContext, origins: string[]): Promise<OriginGuard> {
  const allowed = new Set(origins.map((origin) => new URL(origin).origin));
  const guard = { foreign: [] as string[], requested: [] as string[] };
  const isAllowed = (url: URL) => allowed.has(url.origin) || allowed.has(url.origin.replace(/^ws/, 'http'));
  await context.route(
    () => true,
    (route) => {
      const url = new URL(route.request().url());
      guard.requested.push(url.href);
      if (url.protocol === 'data:' || url.protocol === 'blob:' || isAllowed(url)) return route.continue();
      guard.foreign.push(url.href);
      return route.abort('blockedbyclient');
    },
  );
  // WebSockets are recorded, not intercepted (Playwright's WebSocket routing replaces the page's
  // WebSocket class, which would change what is tested): one to another origin fails the same assertion.
  const watch = (page: Page) =>
    page.on('websocket', (ws) => {
      const url = new URL(ws.url());
      guard.requested.push(url.href);
      if (!isAllowed(url)) guard.foreign.push(url.href);
    });
  context.pages().forEach(watch);
  context.on('page', watch);
  return guard;
}

/** What a page logged as errors and threw: shown in a failing assertion's message. */
export function collectPageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => errors.push(`page error: ${error.message}`));
  return errors;
}

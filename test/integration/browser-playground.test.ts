/**
 * The playground page (src/playground) in headless Chromium against a real service with real Docker
 * kernels: Python and C run, output streams in (the first line is shown while the run still goes on),
 * input() is answered in the page, an endless loop is interrupted (and the kernel keeps working), an
 * error is shown, a plot (image/png display_data) and HTML appear, a restart loses the kernel's state.
 * The page must reach nothing but the service: every other request is refused and recorded, and none is
 * allowed to have been made. Screenshots of each step go to the test artifacts.
 */
import test from 'ava';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import { collectPageErrors, guardOrigins, launchBrowser, screenshot, type OriginGuard } from '../helpers/browser.js';
import { startTestService, type TestService } from '../helpers/service.js';
import { eventually } from '../helpers/wait.js';

let svc: TestService;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let guard: OriginGuard;
let errors: string[];
let specs: Record<string, unknown>;
const WAIT = { timeout: 45_000 };

test.before(async () => {
  [svc, browser] = await Promise.all([startTestService(), launchBrowser()]);
  specs = (await svc.call('GET', '/api/kernelspecs')).body.kernelspecs;
  context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  guard = await guardOrigins(context, [svc.url]);
  page = await context.newPage();
  errors = collectPageErrors(page);
});

test.after.always(async () => {
  await context?.close().catch(() => undefined);
  await browser?.close().catch(() => undefined);
  await svc?.stop();
});

/** Chooses a kernel in the language list and waits for it to be ready. */
async function choose(name: string): Promise<void> {
  await page.selectOption('#language', name);
  await page.locator('#status[data-status="idle"]').waitFor(WAIT);
}

/** Types `code` into the editor (replacing what is there), runs it with Shift+Enter; returns its run. */
async function run(code: string): Promise<Locator> {
  const before = await page.locator('#output .run').count();
  await page.locator('#editor .cm-content').click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(code);
  await page.keyboard.press('Shift+Enter');
  const cell = page.locator('#output .run').nth(before);
  await cell.waitFor(WAIT);
  return cell;
}

const finished = (cell: Locator) => cell.locator('xpath=self::*[@data-state!="running"]').waitFor(WAIT);

test.serial('the page is served at / with a CSP that keeps it to its own origin, and lists the kernelspecs', async (t) => {
  const response = await page.goto(`${svc.url}/`);
  t.is(response?.status(), 200);
  const csp = response?.headers()['content-security-policy'] ?? '';
  t.regex(csp, /default-src 'none'/);
  t.regex(csp, /connect-src 'self'/);
  await page.locator('#status[data-status="idle"]').waitFor(WAIT);
  const options = await page.locator('#language option').evaluateAll((nodes) => nodes.map((node) => (node as HTMLOptionElement).value));
  t.deepEqual([...options].sort(), Object.keys(specs).sort());
  t.is(await page.locator('#language').inputValue(), 'python3', 'the default kernelspec is chosen');
  t.true(await page.locator('#token-form').isHidden(), 'no token is asked for: the service has none');
});

test.serial('Python: output streams in, the first line shows while the run is still going', async (t) => {
  await choose('python3');
  const cell = await run('import time\nprint("first line", flush=True)\ntime.sleep(3)\nprint("second line")');
  await cell.locator('.stream.stdout', { hasText: 'first line' }).waitFor(WAIT);
  t.is(await cell.getAttribute('data-state'), 'running', 'the run has not ended when its first line is shown');
  t.false((await cell.locator('.stream').innerText()).includes('second line'));
  await screenshot(page, 'playground-streaming');
  await finished(cell);
  t.is(await cell.getAttribute('data-state'), 'ok');
  t.is((await cell.locator('.stream.stdout').innerText()).trim(), 'first line\nsecond line');
});

test.serial('Python: input() is asked for in the page and answered there', async (t) => {
  const cell = await run('name = input("Your name? ")\nprint(f"Hello, {name}!")');
  await page.locator('#stdin').waitFor({ state: 'visible', ...WAIT });
  t.is(await page.locator('#stdin-prompt').innerText(), 'Your name?');
  await screenshot(page, 'playground-input');
  await page.locator('#stdin-input').fill('Ada');
  await page.locator('#stdin-input').press('Enter');
  await finished(cell);
  t.is(await cell.getAttribute('data-state'), 'ok');
  t.regex(await cell.innerText(), /Hello, Ada!/);
  t.true(await page.locator('#stdin').isHidden());
});

test.serial('Python: the kernel completes a name in the editor (Ctrl+Space)', async (t) => {
  await page.locator('#editor .cm-content').click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText('import o');
  await page.keyboard.press('Control+Space');
  const option = page.locator('.cm-tooltip-autocomplete li', { hasText: /^os$/ });
  await option.waitFor(WAIT);
  await option.click();
  t.is(await page.locator('#editor .cm-content').innerText(), 'import os');
});

test.serial('Python: an error is shown with its traceback', async (t) => {
  const cell = await run('def f(x):\n    return 1 / x\nf(0)');
  await finished(cell);
  t.is(await cell.getAttribute('data-state'), 'error');
  const error = cell.locator('.error');
  t.is(await error.getAttribute('data-ename'), 'ZeroDivisionError');
  t.regex(await error.innerText(), /ZeroDivisionError: division by zero/);
  t.notRegex(await error.innerText(), /\u001b\[/, 'terminal colour codes are removed');
  await screenshot(page, 'playground-error');
});

test.serial('Python: a run printing more than the page keeps is cut with a note, and the page stays usable', async (t) => {
  const cell = await run('for _ in range(30):\n    print("x" * 49_999)\nprint("the end")');
  await finished(cell);
  t.is(await cell.getAttribute('data-state'), 'ok');
  const shown = await cell.locator('.stream.stdout').evaluate((pre) => pre.textContent!.length);
  t.is(shown, 100_000, 'the first 100,000 characters are shown');
  t.regex(await cell.locator('.note.truncated').innerText(), /output cut: 1,400,008 more characters/);
  const next = await run('print("after", 1)');
  await finished(next);
  t.is((await next.locator('.stream.stdout').innerText()).trim(), 'after 1');
  await page.click('#clear');
  t.is(await page.locator('#output .run').count(), 0, 'Clear empties the output');
});

test.serial('Python: Interrupt stops an endless loop, and the kernel then runs the next code', async (t) => {
  const cell = await run('n = 0\nwhile True:\n    n += 1');
  await page.locator('#status[data-status="busy"]').waitFor(WAIT);
  await page.waitForTimeout(500);
  await page.click('#interrupt');
  await finished(cell);
  t.is(await cell.getAttribute('data-state'), 'interrupted');
  t.regex(await cell.locator('.error').innerText(), /KeyboardInterrupt/);
  const next = await run('print("still alive", n > 0)');
  await finished(next);
  t.is((await next.locator('.stream.stdout').innerText()).trim(), 'still alive True');
});

test.serial('a plot (image/png display_data) and HTML are shown', async (t) => {
  // The data-science kernel's matplotlib when the service has it; else a PNG sent by IPython.display.
  const dataKernel = Object.keys(specs).find((name) => name === 'python3-data');
  let plot: Locator;
  if (dataKernel) {
    await choose(dataKernel);
    plot = await run('import matplotlib.pyplot as plt\nplt.plot([1, 4, 9, 16])\nplt.title("squares")\nplt.show()');
  } else {
    plot = await run(
      'from IPython.display import display, Image\n' +
        'display(Image(data=__import__("base64").b64decode("iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEklEQVR4nGP4z8CAFWEXHbQSACj/P8Fu7N9hAAAAAElFTkSuQmCC")))',
    );
  }
  t.log(dataKernel ? `plot from matplotlib in ${dataKernel}` : 'python3-data is not built: PNG from IPython.display in python3');
  await finished(plot);
  t.is(await plot.getAttribute('data-state'), 'ok');
  const image = plot.locator('img.display.image');
  await image.waitFor(WAIT);
  t.regex((await image.getAttribute('src')) ?? '', /^data:image\/png;base64,/);
  t.true(await image.evaluate((img) => (img as HTMLImageElement).complete && (img as HTMLImageElement).naturalWidth > 0), 'the PNG decodes');

  // The HTML also tries to reach another origin four ways: each must be stopped before the network.
  const elsewhere = 'http://127.0.0.1:9';
  const html = await run(
    "from IPython.display import HTML\nHTML('''<table><tr><th>x</th><td id=cell>42</td></tr></table>" +
      '<script>parent.document.title = "owned"</script>' +
      `<img src="${elsewhere}/pixel.png"><link rel="stylesheet" href="${elsewhere}/style.css">` +
      `<iframe src="${elsewhere}/frame"></iframe><meta http-equiv="refresh" content="1;url=${elsewhere}/refresh">''')`,
  );
  await finished(html);
  const frame = html.locator('iframe.display.html');
  await frame.waitFor(WAIT);
  t.is(await frame.getAttribute('sandbox'), 'allow-same-origin', 'kernel HTML may not run scripts');
  t.is((await html.frameLocator('iframe.display.html').locator('#cell').innerText()).trim(), '42');
  t.not(await page.title(), 'owned', 'a script in kernel HTML did not run');
  await screenshot(page, 'playground-plot');
  await page.waitForTimeout(1500); // past the refresh's 1 s
  t.is((await html.frameLocator('iframe.display.html').locator('#cell').innerText()).trim(), '42', 'the frame was not navigated away');
  t.deepEqual(guard.foreign, [], 'kernel HTML reached no other origin');
  // What stopped each: the page's CSP (inherited by the srcdoc frame) and the frame's sandbox.
  for (const blocked of [/pixel\.png' violates .*img-src/, /style\.css' violates .*style-src/, /Framing 'http:\/\/127\.0\.0\.1:9\/' violates .*frame-src/, /Refused to execute the redirect .*sandboxed/]) {
    t.true(errors.some((error) => blocked.test(error)), `blocked: ${blocked}`);
  }
  if (dataKernel) await choose('python3');
});

test.serial('Restart: the kernel comes back without its state', async (t) => {
  const set = await run('x = 41');
  await finished(set);
  await page.click('#restart');
  await page.getByText('kernel restarted').waitFor(WAIT);
  await page.locator('#status[data-status="idle"]').waitFor(WAIT);
  const cell = await run('print(x + 1)');
  await finished(cell);
  t.is(await cell.getAttribute('data-state'), 'error');
  t.is(await cell.locator('.error').getAttribute('data-ename'), 'NameError');
});

test.serial('a kernel removed under the page (culled, or dead and not restarted) is replaced by Restart', async (t) => {
  const [gone] = (await svc.call('GET', '/api/kernels')).body as Array<{ id: string }>;
  t.is((await svc.call('DELETE', `/api/kernels/${gone!.id}`)).status, 204);
  await page.locator('#status:not([data-status="idle"])').waitFor(WAIT);
  await page.click('#restart');
  await page.getByText('starting a new one').waitFor(WAIT);
  await page.locator('#status[data-status="idle"]').waitFor(WAIT);
  const cell = await run('print("a new kernel")');
  await finished(cell);
  t.is((await cell.locator('.stream.stdout').innerText()).trim(), 'a new kernel');
  const now = (await svc.call('GET', '/api/kernels')).body as Array<{ id: string }>;
  t.is(now.length, 1);
  t.not(now[0]!.id, gone!.id);
});

test.serial('C: a compiled language runs, and a compile error is shown', async (t) => {
  await choose('c');
  const cell = await run('#include <stdio.h>\nint main(void) {\n    for (int i = 1; i <= 3; i++) printf("square %d\\n", i * i);\n    return 0;\n}\n');
  await finished(cell);
  t.is(await cell.getAttribute('data-state'), 'ok', await cell.innerText());
  t.regex(await cell.innerText(), /square 1\nsquare 4\nsquare 9/);
  await screenshot(page, 'playground-c');
  const broken = await run('int main(void) { return undefined_name; }\n');
  await finished(broken);
  t.is(await broken.getAttribute('data-state'), 'error');
  t.regex(await broken.innerText(), /undefined_name/);
});

test.serial('the page made no request to any other origin', (t) => {
  t.deepEqual(guard.foreign, [], 'requests to other origins');
  t.true(guard.requested.some((url) => url.startsWith(svc.url.replace('http', 'ws'))), 'the channels WebSocket was recorded');
  t.true(guard.requested.some((url) => url.startsWith(`${svc.url}/api/kernelspecs`)));
  // Chromium reports what the kernel HTML test tried and the CSP or the sandbox refused.
  const refused = /Blocked script execution in 'about:srcdoc'|violates the following Content Security Policy|Refused to execute the redirect/;
  t.deepEqual(errors.filter((error) => !refused.test(error)), [], 'page errors');
});

test.serial('a language change shuts the old kernel down, and leaving the page deletes the last one', async (t) => {
  const before = (await svc.call('GET', '/api/kernels')).body as Array<{ name: string }>;
  t.deepEqual(before.map((kernel) => kernel.name), ['c'], 'only the kernel of the language in use is left');
  await page.close({ runBeforeUnload: true });
  t.true(await eventually(async () => (await svc.call('GET', '/api/kernels')).body.length === 0, 20_000), 'the kernel is deleted');
});

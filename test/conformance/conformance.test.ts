/**
 * The conformance suite: every row of languages.ts through the v1 API of a real service (real Docker,
 * real Redis), for each language whose image is present: hello world, a line of stdin (query mode, then
 * input), a syntax or compile error, a runtime error, output over the limit cut with a marker, an endless
 * loop stopped by interrupt (the kernel lives on, with its state) and by the kernel timeout (the kernel is
 * destroyed). One kernel per language serves every case but the timeout; languages run one after another.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import type { ErrorContent, JupyterMessage } from '../../src/protocol/messages.js';
import { startTestService, type TestService } from '../helpers/service.js';
import { createKernel } from '../helpers/v1-client.js';
import { HELLO, LANGUAGE_ROWS, PROMPT, type LanguageRow } from './languages.js';
import { sleep } from '../helpers/wait.js';

const MAX_OUTPUT_BYTES = 64 * 1024;
const TIMEOUT_KERNEL_MS = 4000;

let svc: TestService;
const kernels = new Map<string, Promise<string>>();

test.before(async () => {
  svc = await startTestService({ flushWindowMs: 1000, maxOutputBytes: MAX_OUTPUT_BYTES, defaultTimeoutMs: 60_000 });
});

test.after.always(async () => {
  for (const id of kernels.values()) {
    await id.then((kernelId) => svc.call('DELETE', `/v1/kernel/${kernelId}`)).catch(() => undefined);
  }
  await svc?.stop();
});

// The service uses the images of POLYKERNEL_IMAGE_PREFIX (a private set, say); the suite looks for the same.
const IMAGE_PREFIX = process.env.POLYKERNEL_IMAGE_PREFIX || 'polykernel/';

function imagePresent(image: string): boolean {
  try {
    execFileSync('/usr/bin/docker', ['image', 'inspect', '--format', '{{.Id}}', `${IMAGE_PREFIX}${image}:latest`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

type ConsoleItem = [string, unknown];

interface RunResult {
  status: string;
  exitCode: number | null;
  console: ConsoleItem[];
  stdout: string;
  stderr: string;
  /** The console returned with each waiting-input status. */
  beforeInput: ConsoleItem[][];
  errors: ErrorContent[];
  /** Status of the kernel's execute_reply. */
  replyStatus?: string;
}

const text = (items: ConsoleItem[], stream: string) =>
  items.filter((item) => item[0] === stream).map((item) => item[1] as string).join('');

/** The language's shared kernel, created (through its alias when it has one) on first use. */
function kernelFor(row: LanguageRow): Promise<string> {
  let id = kernels.get(row.lang);
  if (!id) {
    id = createKernel(svc.call, { lang: row.alias ?? row.lang });
    kernels.set(row.lang, id);
  }
  return id;
}

/**
 * A query followed through continue and input calls to its end; error messages read from iopub. With
 * `interrupt`, it is called once the program has printed `started`.
 */
async function run(kernelId: string, code: string, inputs: string[] = [], interrupt?: () => Promise<void>): Promise<RunResult> {
  const live = (await svc.service.kernels.handle(kernelId)).kernel;
  const errors: ErrorContent[] = [];
  let replyStatus: string | undefined;
  const unsubscribe = live.onMessage((channel, msg: JupyterMessage) => {
    if (channel === 'iopub' && msg.header.msg_type === 'error') errors.push(msg.content as ErrorContent);
    if (channel === 'shell' && msg.header.msg_type === 'execute_reply') replyStatus = String(msg.content.status);
  });
  try {
    const items: ConsoleItem[] = [];
    const beforeInput: ConsoleItem[][] = [];
    let { body } = await svc.call('POST', `/v1/kernel/${kernelId}`, { mode: 'query', code });
    let result = body.result;
    for (;;) {
      if (!result) throw new Error(`no result: ${JSON.stringify(body)}`);
      items.push(...result.console);
      if (result.status === 'finished' || result.status === 'exec-timeout') break;
      if (result.status === 'waiting-input') {
        beforeInput.push([...items]);
        const line = inputs.shift();
        if (line === undefined) throw new Error(`unexpected input request; console so far ${JSON.stringify(items)}`);
        ({ body } = await svc.call('POST', `/v1/kernel/${kernelId}`, { mode: 'input', runId: result.runId, code: line }));
      } else {
        if (interrupt && text(items, 'stdout').includes('started')) {
          await interrupt();
          interrupt = undefined;
        }
        ({ body } = await svc.call('POST', `/v1/kernel/${kernelId}`, { mode: 'continue', runId: result.runId }));
      }
      result = body.result;
    }
    // The error message may trail the reply on another socket by a moment.
    if (result.exitCode === 1 && !errors.length) await sleep(200);
    return {
      status: result.status,
      exitCode: result.exitCode,
      console: items,
      stdout: text(items, 'stdout'),
      stderr: text(items, 'stderr'),
      beforeInput,
      errors,
      replyStatus,
    };
  } finally {
    unsubscribe();
  }
}

/** Interrupt through the Jupyter REST API; through the kernel manager where that API is not mounted. */
async function interruptKernel(t: ExecutionContext, kernelId: string): Promise<void> {
  const response = await svc.call('POST', `/api/kernels/${kernelId}/interrupt`);
  if (response.status === 204) return;
  t.log(`POST /api/kernels/:id/interrupt answered ${response.status}; interrupting through KernelManager.interrupt`);
  await svc.service.kernels.interrupt(kernelId);
}

function assertEname(t: ExecutionContext, result: RunResult, expected: string | RegExp | null, what: string): void {
  if (expected === null) {
    t.not(result.replyStatus, 'ok', `${what}: the execute_reply says it failed`);
    return;
  }
  const enames = result.errors.map((error) => error.ename);
  if (typeof expected === 'string') t.true(enames.includes(expected), `${what}: error enames ${JSON.stringify(enames)}, expected ${expected}`);
  else t.true(enames.some((ename) => expected.test(ename)), `${what}: error enames ${JSON.stringify(enames)}, expected ${expected}`);
}

for (const row of LANGUAGE_ROWS) {
  const { lang } = row;
  const image = row.image ?? lang;
  if (!imagePresent(image)) {
    test(`${lang}: image absent, conformance not run`, (t) => {
      t.log(`${IMAGE_PREFIX}${image}:latest is not built here (npm run images builds it); its cases were not run`);
      t.pass();
    });
    continue;
  }

  test.serial(`${lang}: listed in /api/kernelspecs and created through its name or alias`, async (t) => {
    const specs = await svc.call('GET', '/api/kernelspecs');
    if (specs.status === 200) t.truthy(specs.body.kernelspecs?.[lang], `kernelspecs: ${Object.keys(specs.body.kernelspecs ?? {})}`);
    else t.log(`GET /api/kernelspecs answered ${specs.status}; checked the registry instead`);
    t.truthy(await svc.service.kernels.specs.resolve(lang));
    t.regex(await kernelFor(row), /^[0-9a-f-]{36}$/);
  });

  test.serial(`${lang}: kernel_info reports its language_info`, async (t) => {
    const live = (await svc.service.kernels.handle(await kernelFor(row))).kernel;
    const reply = await live.request('shell', live.message('kernel_info_request', {}), 10_000);
    const info = reply.content.language_info as Record<string, unknown>;
    t.like(info, row.info);
    t.regex(String(info.version), /^\d+\.\d+/);
    t.truthy(info.mimetype, 'mimetype');
    t.log(`${info.name} ${info.version}, ${info.mimetype}, codemirror ${JSON.stringify(info.codemirror_mode)}`);
  });

  test.serial(`${lang}: hello world`, async (t) => {
    const result = await run(await kernelFor(row), row.hello);
    t.is(result.status, 'finished');
    t.is(result.exitCode, 0, result.stderr);
    t.is(result.stdout, HELLO);
  });

  test.serial(`${lang}: reads a line of stdin (waiting-input, then mode "input")`, async (t) => {
    const result = await run(await kernelFor(row), row.readLine, ['Ada']);
    t.is(result.beforeInput.length, 1, 'exactly one input request');
    t.is(text(result.beforeInput[0] ?? [], 'stdout'), PROMPT, 'the prompt comes before the input request');
    t.is(result.exitCode, 0, result.stderr);
    t.is(result.stdout.slice(PROMPT.length), 'hello Ada\n');
  });

  test.serial(`${lang}: a syntax or compile error`, async (t) => {
    const result = await run(await kernelFor(row), row.syntaxError.code);
    t.is(result.status, 'finished');
    t.is(result.exitCode, 1);
    assertEname(t, result, row.syntaxError.ename, 'syntax error');
    t.regex(result.stderr, row.syntaxError.stderr);
  });

  test.serial(`${lang}: a runtime error has a non-zero exit code`, async (t) => {
    const result = await run(await kernelFor(row), row.runtimeError.code);
    t.is(result.exitCode, 1);
    assertEname(t, result, row.runtimeError.ename, 'runtime error');
    t.regex(result.stderr, row.runtimeError.stderr);
  });

  test.serial(`${lang}: output over the limit is cut with a marker`, async (t) => {
    const result = await run(await kernelFor(row), row.bigOutput);
    t.is(result.status, 'finished');
    const size = result.console.reduce((sum, item) => sum + Buffer.byteLength(String(item[1])), 0);
    t.regex(result.stderr, /\[output truncated: more than \d+ bytes\]/);
    t.true(size <= MAX_OUTPUT_BYTES + 200, `${size} bytes came back`);
    t.true(result.stdout.startsWith('line '), result.stdout.slice(0, 80));
  });

  test.serial(`${lang}: an endless loop is stopped by interrupt and the kernel lives on`, async (t) => {
    const kernelId = await kernelFor(row);
    if (row.state) t.is((await run(kernelId, row.state.set)).exitCode, 0);
    const started = Date.now();
    const result = await run(kernelId, row.endless, [], () => interruptKernel(t, kernelId));
    t.is(result.status, 'finished', 'the loop ended without the kernel timeout');
    // 128 + SIGINT, as a shell reports an interrupted command; the kernel's own error says where.
    t.is(result.exitCode, 130);
    assertEname(t, result, row.interruptEname, 'interrupt');
    t.log(`interrupted after ${Date.now() - started} ms`);
    t.is((await run(kernelId, row.hello)).stdout, HELLO);
    if (row.state) t.is((await run(kernelId, row.state.get)).stdout, row.state.stdout, 'state survives the interrupt');
  });

  test.serial(`${lang}: an endless loop past the kernel timeout destroys the kernel`, async (t) => {
    const kernelId = await createKernel(svc.call, { lang, resourceLimits: { timeout: TIMEOUT_KERNEL_MS } });
    const result = await run(kernelId, row.endless);
    t.is(result.status, 'exec-timeout');
    let status = 0;
    for (let i = 0; i < 50 && status !== 404; i++) {
      status = (await svc.call('GET', `/v1/kernel/${kernelId}`)).status;
      if (status !== 404) await sleep(100);
    }
    t.is(status, 404, 'the timed-out kernel is gone');
    const shared = kernels.get(lang);
    kernels.delete(lang);
    if (shared) await svc.call('DELETE', `/v1/kernel/${await shared}`);
  });
}

/**
 * Output (issue #6): a program printing without end is cut at POLYKERNEL_MAX_OUTPUT_BYTES per execution,
 * with a marker, and the service's own memory stays bounded while it happens (the service runs in this
 * test's process, so its RSS is ours). Query mode (through the kernel's iopub) and batch mode (through a
 * Docker exec stream).
 */
import test from 'ava';
import { startTestService, type TestService } from '../helpers/service.js';
import { createKernel, query, type RunOutcome, runToEnd } from '../helpers/v1-client.js';

const MAX_OUTPUT = 64 * 1024;
/** Generous: the point is "bounded", not a figure; the flood itself is hundreds of MB. */
const MAX_RSS_GROWTH = 100 * 1024 * 1024;
const MARKER = /\[output truncated: more than 65536 bytes\]/g;

let svc: TestService;
let kernelId: string;

test.before(async () => {
  svc = await startTestService({ maxOutputBytes: MAX_OUTPUT, flushWindowMs: 1000 });
  kernelId = await createKernel(svc.call, { lang: 'python3', resourceLimits: { timeout: 60_000 } });
});

test.after.always(async () => {
  await svc?.stop();
});

/** Runs a request to its end while sampling this process's RSS; returns the outcome and the largest growth. */
async function floodWithRss(body: Record<string, unknown>): Promise<{ outcome: RunOutcome; growth: number }> {
  global.gc?.();
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
  try {
    const outcome = await runToEnd(svc.call, kernelId, body);
    return { outcome, growth: peak - baseline };
  } finally {
    clearInterval(sampler);
  }
}

function stdoutBytes(outcome: RunOutcome): number {
  return outcome.console.filter(([kind]) => kind === 'stdout').reduce((sum, [, text]) => sum + Buffer.byteLength(text as string), 0);
}

test.serial('query: printing without end for 6 s is cut at the limit with one marker; the service stays bounded', async (t) => {
  // flush=True: ipykernel sends each line as it is printed, as fast as the service takes them.
  const code = 'import time\nend = time.time() + 6\nline = "x" * 1023\nwhile time.time() < end:\n    print(line, flush=True)\nprint("never shown")';
  const { outcome, growth } = await floodWithRss({ mode: 'query', code });
  t.log(`RSS growth ${(growth / 1048576).toFixed(1)} MB`);
  t.is(outcome.status, 'finished');
  t.is(outcome.exitCode, 0);
  t.true(stdoutBytes(outcome) <= MAX_OUTPUT, `${stdoutBytes(outcome)} bytes of stdout`);
  t.true(stdoutBytes(outcome) > MAX_OUTPUT / 2, 'output up to the limit is kept');
  t.is(outcome.text.match(MARKER)?.length, 1);
  t.notRegex(outcome.text, /never shown/);
  t.true(growth < MAX_RSS_GROWTH, `the service's RSS grew ${growth} bytes`);
  // The limit is per execution: the next one has the whole budget again.
  t.is((await query(svc.call, kernelId, 'print("next")')).text, 'next\n');
});

test.serial('batch: `yes` for 6 s is cut at the limit with one marker; the service stays bounded', async (t) => {
  const { outcome, growth } = await floodWithRss({ mode: 'batch', options: { exec: 'timeout 6 yes polykernel' } });
  t.log(`RSS growth ${(growth / 1048576).toFixed(1)} MB`);
  t.is(outcome.status, 'finished');
  t.is(outcome.exitCode, 124, 'timeout(1) ended it');
  t.true(stdoutBytes(outcome) <= MAX_OUTPUT);
  t.is(outcome.text.match(MARKER)?.length, 1);
  t.true(growth < MAX_RSS_GROWTH, `the service's RSS grew ${growth} bytes`);
  t.is((await query(svc.call, kernelId, 'print("next")')).text, 'next\n');
});

test.serial('query: unflushed writes in a tight loop: the service stays bounded whatever the kernel does with them', async (t) => {
  // ipykernel buffers these and sends them in a few huge messages, or dies of its own memory cap first.
  const id = await createKernel(svc.call, { lang: 'python3', resourceLimits: { timeout: 60_000 } });
  const code = 'import sys, time\nend = time.time() + 6\nline = "x" * 1023 + "\\n"\nwhile time.time() < end:\n    sys.stdout.write(line)';
  const saved = kernelId;
  kernelId = id;
  try {
    const { outcome, growth } = await floodWithRss({ mode: 'query', code });
    t.log(`${outcome.status} ${outcome.exitCode}; RSS growth ${(growth / 1048576).toFixed(1)} MB`);
    t.true(stdoutBytes(outcome) <= MAX_OUTPUT);
    t.true(growth < MAX_RSS_GROWTH, `the service's RSS grew ${growth} bytes`);
  } finally {
    kernelId = saved;
    await svc.call('DELETE', `/v1/kernel/${id}`);
  }
});

test.serial('a kernel sending one 300 MB message (forged on its own iopub socket) cannot blow up the service', async (t) => {
  const id = await createKernel(svc.call, { lang: 'python3', resourceLimits: { maxMem: 2 * 1024 * 1024, timeout: 60_000 } });
  const code = [
    'k = get_ipython().kernel',
    'k.session.send(k.iopub_socket, "stream", {"name": "stdout", "text": "x" * (300 * 2**20)}, parent=k.get_parent("shell"))',
    'print("sent")',
  ].join('\n');
  const saved = kernelId;
  kernelId = id;
  try {
    const { outcome, growth } = await floodWithRss({ mode: 'query', code });
    t.log(`${outcome.status} ${outcome.exitCode}; RSS growth ${(growth / 1048576).toFixed(1)} MB`);
    t.is(outcome.status, 'finished');
    t.is(outcome.exitCode, 0);
    t.true(stdoutBytes(outcome) <= MAX_OUTPUT);
    t.true(growth < MAX_RSS_GROWTH, `the service's RSS grew ${growth} bytes`);
    t.is((await query(svc.call, id, 'print("next")')).text, 'next\n', 'the kernel still answers');
  } finally {
    kernelId = saved;
    await svc.call('DELETE', `/v1/kernel/${id}`);
  }
});

/**
 * Warm judge sandboxes: filled to their size, a sandbox handed out once and replaced, one that does not
 * fit a submission (another image, too little memory) left for the next, a failing start retried with a
 * growing delay instead of a spin, and everything closed at stop.
 */
import test from 'ava';
import type { JudgeSandbox, SandboxSpec } from '../../src/judge/model.js';
import { WarmSandboxes } from '../../src/judge/warm-sandboxes.js';
import { silentLogger } from '../../src/logger.js';

const spec: SandboxSpec = { image: 'polykernel/c:latest', runtime: 'runc', memoryKB: 512000, maxProcesses: 120, diskMB: 64 };

function pool(sizes: Record<string, number>, fail = false) {
  const made: Array<JudgeSandbox & { closed: boolean }> = [];
  let attempts = 0;
  const warm = new WarmSandboxes(
    sizes,
    {
      specFor: async (lang) => (lang === 'c' ? spec : undefined),
      create: async () => {
        attempts += 1;
        if (fail) throw new Error('engine down');
        const sandbox = { id: `sb${made.length + 1}`, closed: false, writeFiles: async () => undefined, run: async () => { throw new Error('x'); }, runInteractive: () => { throw new Error('x'); }, close: async () => { sandbox.closed = true; } };
        made.push(sandbox as JudgeSandbox & { closed: boolean });
        return sandbox as unknown as JudgeSandbox;
      },
    },
    silentLogger,
  );
  return { warm, made, attempts: () => attempts };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

test('filled to size; a sandbox is handed out once and replaced; stop closes the ready ones', async (t) => {
  const { warm, made } = pool({ c: 2 });
  warm.fill();
  await settle();
  t.is(warm.readyCount('c'), 2);
  const first = warm.take('c', { ...spec, memoryKB: 128000, maxProcesses: 60 });
  const second = warm.take('c', spec);
  t.truthy(first);
  t.truthy(second);
  t.not(first, second);
  await settle();
  t.is(made.length, 4, 'both replaced');
  t.is(warm.readyCount('c'), 2);
  await warm.stop();
  t.deepEqual(made.map((sandbox) => sandbox.closed), [false, false, true, true], 'the ready ones are closed; the handed-out ones are their users\'');
});

test('a sandbox that does not fit (another image, more memory than it has) is not handed out', async (t) => {
  const { warm } = pool({ c: 1 });
  warm.fill();
  await settle();
  t.is(warm.take('c', { ...spec, image: 'polykernel/cpp:latest' }), undefined);
  t.is(warm.take('c', { ...spec, memoryKB: spec.memoryKB + 1 }), undefined);
  t.is(warm.take('python3', spec), undefined);
  t.truthy(warm.take('c', spec));
  await warm.stop();
});

test('a failing start is retried with a growing delay, not in a loop', async (t) => {
  const { warm, attempts } = pool({ c: 1 }, true);
  warm.fill();
  await new Promise((resolve) => setTimeout(resolve, 1500));
  // 0 ms, then 1 s, then 2 s: two or three attempts in 1.5 s, not thousands.
  t.true(attempts() >= 2 && attempts() <= 3, `${attempts()} attempts`);
  await warm.stop();
});

test('stop waits for a sandbox still being made, and closes it: none outlives the stop', async (t) => {
  let finishCreate = () => {};
  const created: Array<{ closed: boolean }> = [];
  const warm = new WarmSandboxes(
    { c: 1 },
    {
      specFor: async () => spec,
      create: () =>
        new Promise<JudgeSandbox>((resolve) => {
          finishCreate = () => {
            const sandbox = { id: 'slow', closed: false, close: async () => { sandbox.closed = true; } };
            created.push(sandbox);
            resolve(sandbox as unknown as JudgeSandbox);
          };
        }),
    },
    silentLogger,
  );
  warm.fill();
  await settle();
  let stopped = false;
  const stopping = warm.stop().then(() => (stopped = true));
  await settle();
  t.false(stopped, 'the stop waits for the start in progress');
  finishCreate();
  await stopping;
  t.deepEqual(created.map((sandbox) => sandbox.closed), [true]);
});

test('a start waiting out its backoff gives up at stop instead of holding it', async (t) => {
  const { warm, attempts } = pool({ c: 1 }, true);
  warm.fill();
  await settle();
  const before = attempts();
  const startedAt = Date.now();
  await warm.stop();
  t.true(Date.now() - startedAt < 400, 'the stop did not wait for the backoff');
  await new Promise((resolve) => setTimeout(resolve, 700));
  t.is(attempts(), before, 'no start after the stop');
});

/**
 * The persisted submission queue against a fake engine, on the in-process store and on a real Redis:
 * bounded pool in order, a full queue refused, a restart (a second queue on the same store) runs what the
 * first left queued or processing and never what it finished, results expire after their TTL, and at
 * most `maxKept` are kept.
 */
import test from 'ava';
import { randomUUID } from 'node:crypto';
import { loadConfig } from '../../src/config/index.js';
import { unavailable } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import type { Submission } from '../../src/judge/model.js';
import { decodeResult, SubmissionQueue, type QueueConfig } from '../../src/judge/submission-queue.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { RedisStore } from '../../src/store/redis-store.js';
import type { Namespace, Store } from '../../src/store/store.js';
import { accepted, deferred, FakeJudge } from '../helpers/fake-judge.js';

const base = loadConfig({});
const REDIS_URL = process.env.REDIS_URL ?? '';

const queueConfig = (over: Partial<QueueConfig> = {}): QueueConfig => ({
  instance: `q-${randomUUID().slice(0, 8)}`,
  judge0Workers: 2,
  judge0MaxQueueSize: 100,
  judge0ResultTtlS: 3600,
  judge0MaxKept: 1000,
  judge0MaxKeptMB: 64,
  ...over,
});

const submissionOf = (text: string): Submission => ({
  lang: 'python3',
  files: [{ name: '', content: Buffer.from(text) }],
  limits: base.judgeLimits,
  compileLimits: base.judgeCompileLimits,
  tests: [{ stdin: Buffer.alloc(0) }],
  comparison: 'lines',
});
const job = (text: string) => ({ submission: submissionOf(text), meta: { text } });
const sourceOf = (s: Submission) => s.files[0]!.content.toString();

const until = async (check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000) => {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

const stores: [string, () => Promise<Store>][] = [['memory', async () => new MemoryStore()]];
if (REDIS_URL) {
  stores.push([
    'redis',
    async () => {
      const prefix = `polykernel-test-${randomUUID().slice(0, 8)}:`;
      const store = new RedisStore(REDIS_URL, prefix);
      await store.ready();
      return store;
    },
  ]);
}

for (const [kind, makeStore] of stores) {
  test(`${kind}: runs at most judge0Workers at once, oldest first, and stores each result`, async (t) => {
    const store = await makeStore();
    t.teardown(async () => {
      for (const ns of ['submissions', 'submission-index'] as const) {
        for (const record of await store.list<{ token: string }>(ns)) await store.delete(ns, record.token);
      }
      await store.close();
    });
    const gates = new Map<string, ReturnType<typeof deferred<void>>>();
    let running = 0;
    let peak = 0;
    const engine = new FakeJudge(async (s) => {
      running++;
      peak = Math.max(peak, running);
      const gate = deferred<void>();
      gates.set(sourceOf(s), gate);
      await gate.promise;
      running--;
      return accepted(`out ${sourceOf(s)}`);
    });
    const queue = new SubmissionQueue<{ text: string }>({ config: queueConfig(), store, engine, log: silentLogger });
    await queue.start();
    const records = await queue.submit(['a', 'b', 'c', 'd'].map(job));
    await until(() => gates.size === 2, 'two runs');
    t.deepEqual([...gates.keys()], ['a', 'b']);
    t.is((await queue.get(records[0]!.token))!.state, 'processing');
    t.is((await queue.get(records[2]!.token))!.state, 'queued');
    for (const name of ['a', 'b', 'c', 'd']) {
      await until(() => gates.has(name), name);
      gates.get(name)!.resolve();
    }
    const done = await queue.waitFor(records[3]!.token, 5000);
    t.is(done!.state, 'finished');
    t.is(decodeResult(done!)!.tests[0]!.stdout.toString(), 'out d');
    t.is(peak, 2);
    await queue.stop();
  });

  test(`${kind}: a restart runs again what was queued or processing, never what had finished`, async (t) => {
    const store = await makeStore();
    t.teardown(async () => {
      for (const ns of ['submissions', 'submission-index'] as const) {
        for (const record of await store.list<{ token: string }>(ns)) await store.delete(ns, record.token);
      }
      await store.close();
    });
    const config = queueConfig({ judge0Workers: 1 });
    const first = new FakeJudge(async (s, signal) => {
      if (sourceOf(s) === 'done-before') return accepted('1');
      // Never finishes by itself: the service "dies" while it runs.
      await new Promise((_resolve, reject) => signal?.addEventListener('abort', () => reject(signal.reason)));
      throw new Error('unreachable');
    });
    const before = new SubmissionQueue<{ text: string }>({ config, store, engine: first, log: silentLogger });
    await before.start();
    const [done] = await before.submit([job('done-before')]);
    const finished = await before.waitFor(done!.token, 5000);
    t.is(finished!.state, 'finished');
    const pending = await before.submit(['p1', 'q1', 'q2'].map(job));
    await until(async () => (await before.get(pending[0]!.token))!.state === 'processing', 'p1 processing');
    await before.stop();
    t.is((await store.get<{ state: string }>('submissions', pending[0]!.token))!.state, 'processing');

    const second = new FakeJudge((s) => accepted(`again ${sourceOf(s)}`));
    const after = new SubmissionQueue<{ text: string }>({ config, store, engine: second, log: silentLogger });
    await after.start();
    for (const record of pending) t.is((await after.waitFor(record.token, 5000))!.state, 'finished');
    t.deepEqual(second.judged.map(sourceOf), ['p1', 'q1', 'q2']);
    const kept = await after.get(done!.token);
    t.is(kept!.finishedAt, finished!.finishedAt);
    t.is((await after.get(pending[0]!.token))!.attempts, 2);
    await after.stop();
  });
}

test('a full queue is refused whole (503 "queue is full"), a batch included', async (t) => {
  const engine = new FakeJudge(() => new Promise(() => undefined));
  const queue = new SubmissionQueue<{ text: string }>({ config: queueConfig({ judge0Workers: 1, judge0MaxQueueSize: 2 }), store: new MemoryStore(), engine, log: silentLogger });
  await queue.start();
  await queue.submit([job('running')]);
  await until(() => engine.judged.length === 1, 'first run');
  await queue.submit([job('w1')]);
  t.false(queue.hasRoomFor(2));
  await t.throwsAsync(queue.submit([job('w2'), job('w3')]), { message: 'queue is full' });
  await queue.submit([job('w2')]);
  await t.throwsAsync(queue.submit([job('w3')]), { message: 'queue is full' });
  t.deepEqual(queue.stats(), { waiting: 2, running: 1, workers: 1, kept: 3 });
  await queue.stop();
});

test('room reserved while a request is read counts as taken: the next request is refused before its body is read', async (t) => {
  const engine = new FakeJudge(() => new Promise(() => undefined));
  const queue = new SubmissionQueue<{ text: string }>({ config: queueConfig({ judge0Workers: 1, judge0MaxQueueSize: 2 }), store: new MemoryStore(), engine, log: silentLogger });
  await queue.start();
  await queue.submit([job('running')]);
  await until(() => engine.judged.length === 1, 'first run');
  const first = queue.reserve();
  const second = queue.reserve();
  t.truthy(first);
  t.truthy(second);
  t.is(queue.reserve(), undefined, 'the queue is full of reservations');
  t.false(queue.hasRoomFor(1));
  // A batch without a reservation does not take the reserved room; the holders do.
  await t.throwsAsync(queue.submit([job('batch')]), { message: 'queue is full' });
  await queue.submit([job('w1')], 1);
  first!();
  first!();
  second!();
  t.truthy(queue.reserve(), 'a released reservation (once, however often called) frees its room');
  t.deepEqual(queue.stats().waiting, 1);
  await queue.stop();
});

test('results go after their TTL and past maxKept, oldest first', async (t) => {
  let now = 1_000_000;
  const store = new MemoryStore();
  const queue = new SubmissionQueue<{ text: string }>({ config: queueConfig({ judge0ResultTtlS: 60, judge0MaxKept: 2 }), store, engine: new FakeJudge(), log: silentLogger, clock: () => now });
  await queue.start();
  const [a] = await queue.submit([job('a')]);
  await queue.waitFor(a!.token, 5000);
  now += 30_000;
  const [b] = await queue.submit([job('b')]);
  await queue.waitFor(b!.token, 5000);
  t.truthy(await queue.get(a!.token));
  now += 31_000; // a is 61 s old, b 31 s
  t.is(await queue.get(a!.token), undefined);
  await queue.sweep();
  t.is((await store.list('submissions')).length, 1);
  t.is((await store.list('submission-index')).length, 1);
  const [c] = await queue.submit([job('c')]);
  await queue.waitFor(c!.token, 5000);
  const [d] = await queue.submit([job('d')]);
  await queue.waitFor(d!.token, 5000);
  // b, c, d finished, at most 2 kept: b (the oldest) went before its TTL.
  t.is(await queue.get(b!.token), undefined);
  t.truthy(await queue.get(c!.token));
  t.truthy(await queue.get(d!.token));
  await queue.stop();
});

test('past maxKeptMB the oldest finished go, whatever their count', async (t) => {
  const store = new MemoryStore();
  const queue = new SubmissionQueue<{ text: string }>({ config: queueConfig({ judge0MaxKeptMB: 1 }), store, engine: new FakeJudge((s) => accepted(sourceOf(s))), log: silentLogger });
  await queue.start();
  const tokens: string[] = [];
  for (let i = 0; i < 4; i++) {
    // About 0.4 MB stored per record (source as Base64, output as Base64 again).
    const [r] = await queue.submit([{ submission: submissionOf(`${i}`.repeat(150_000)), meta: { text: 'big' } }]);
    await queue.waitFor(r!.token, 5000);
    tokens.push(r!.token);
  }
  await new Promise((resolve) => setTimeout(resolve, 20));
  const kept = (await Promise.all(tokens.map((token) => queue.get(token)))).map(Boolean);
  t.deepEqual(kept, [false, false, true, true]);
  t.is((await store.list('submission-index')).length, 2);
  await queue.stop();
});

test('an engine that answers busy (503) has the submission offered again, not failed', async (t) => {
  let calls = 0;
  const engine = new FakeJudge(() => {
    calls++;
    if (calls < 3) throw unavailable('the judge line is full');
    return accepted('ok');
  });
  const queue = new SubmissionQueue<{ text: string }>({ config: queueConfig(), store: new MemoryStore(), engine, log: silentLogger, busyRetryMs: 10 });
  await queue.start();
  const [a] = await queue.submit([job('a')]);
  const done = await queue.waitFor(a!.token, 5000);
  t.is(done!.state, 'finished');
  t.is(done!.failure, undefined);
  t.is(calls, 3);
  await queue.stop();
});

test('an engine fault finishes the submission as a failure with a generic message', async (t) => {
  const engine = new FakeJudge(() => {
    throw new Error('secret internals /var/lib/docker');
  });
  const queue = new SubmissionQueue<{ text: string }>({ config: queueConfig(), store: new MemoryStore(), engine, log: silentLogger });
  await queue.start();
  const [a] = await queue.submit([job('a')]);
  const done = await queue.waitFor(a!.token, 5000);
  t.is(done!.failure, 'the judge failed; the service logged the details');
  await queue.stop();
});

test('waitFor answers the record as it is when the time is up', async (t) => {
  const queue = new SubmissionQueue<{ text: string }>({ config: queueConfig(), store: new MemoryStore(), engine: new FakeJudge(() => new Promise(() => undefined)), log: silentLogger });
  await queue.start();
  const [a] = await queue.submit([job('a')]);
  const record = await queue.waitFor(a!.token, 50);
  t.not(record!.state, 'finished');
  t.is(await queue.waitFor(randomUUID(), 50), undefined);
  await queue.stop();
});

/** The in-process store, failing its first few calls of one kind as an unreachable Redis does (503). */
class FlakyStore extends MemoryStore {
  failures = { get: 0, update: 0 };
  override async get<T>(ns: Namespace, id: string): Promise<T | undefined> {
    if (ns === 'submissions' && this.failures.get-- > 0) throw unavailable('the state store (Redis) is unreachable');
    return super.get<T>(ns, id);
  }
  override async update<T extends object>(ns: Namespace, id: string, patch: Partial<T>): Promise<boolean> {
    if (ns === 'submissions' && (patch as { state?: string }).state === 'finished' && this.failures.update-- > 0) throw unavailable('the state store (Redis) is unreachable');
    return super.update<T>(ns, id, patch);
  }
}

test('a store out of reach for a moment delays a submission, it does not lose it', async (t) => {
  const store = new FlakyStore();
  store.failures = { get: 2, update: 2 };
  const queue = new SubmissionQueue<{ text: string }>({ config: queueConfig(), store, engine: new FakeJudge((s) => accepted(sourceOf(s))), log: silentLogger, busyRetryMs: 10 });
  await queue.start();
  const [a] = await queue.submit([job('a')]);
  // Watched through list(), which does not fail: every failure goes to the queue's own calls.
  await until(async () => (await store.list<{ token: string; state: string }>('submissions')).some((r) => r.token === a!.token && r.state === 'finished'), 'finished', 10_000);
  t.deepEqual(store.failures, { get: -1, update: -1 }, 'both kinds failed twice before they worked');
  t.is(decodeResult((await queue.get(a!.token))!)!.tests[0]!.stdout.toString(), 'a');
  await queue.stop();
});

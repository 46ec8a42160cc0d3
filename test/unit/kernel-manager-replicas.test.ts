/**
 * Two gateway replicas in miniature: two KernelManagers sharing one provisioner (the runner's JavaScript
 * kernel in this process, real Jupyter messages) and one store — the memory store, and real Redis
 * (REDIS_URL, each test its own key prefix, removed afterwards) with one connection per replica as in
 * production. Any replica serves any kernel (lazy attach), and what one does to a kernel the other hears.
 */
import test, { type ExecutionContext } from 'ava';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { loadConfig, type Config } from '../../src/config/index.js';
import { DomainError } from '../../src/errors.js';
import type { ProvisionedKernelHandle } from '../../src/kernels/kernel-handle.js';
import { KernelManager } from '../../src/kernels/kernel-manager.js';
import type { KernelSpecEntry, KernelSpecRegistry } from '../../src/kernels/kernel-specs.js';
import type { LiveKernel } from '../../src/kernels/live-kernel.js';
import { silentLogger } from '../../src/logger.js';
import type { ExecuteReplyContent } from '../../src/protocol/messages.js';
import { QueryService } from '../../src/runs/query-service.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { RedisStore } from '../../src/store/redis-store.js';
import type { Store } from '../../src/store/store.js';
import { InProcessProvisioner } from '../helpers/in-process-provisioner.js';

const LANG = 'javascript';
const REDIS_URL = process.env.REDIS_URL ?? '';
const RUN_PREFIX = `polykernel-test-replicas-${randomUUID().slice(0, 8)}:`;

const specs = {
  resolve: async (name: string) => (name === LANG ? ({ name: LANG, image: 'test/javascript', aliases: [], resources: [] } as unknown as KernelSpecEntry) : undefined),
  names: async () => [LANG],
} as unknown as KernelSpecRegistry;

/**
 * The periodic re-check against the records is off (an hour): what a replica hears within a test, it
 * heard from an event, or from its own look at the record where a test says so.
 */
function configWith(overrides: Partial<Config>): Config {
  return loadConfig({}, { clusterSyncMs: 3_600_000, defaultKernelName: LANG, defaultMaxMemKB: 65536, startTimeoutMs: 20_000, memoryBudgetKB: 0, maxKernels: 0, prespawnCount: 0, poolSizes: {}, ...overrides });
}

type StoreKind = 'memory' | 'redis';

/** One store per replica: the same MemoryStore for both, or two Redis connections on one prefix. */
async function storesFor(kind: StoreKind, t: ExecutionContext): Promise<[Store, Store]> {
  if (kind === 'memory') {
    const store = new MemoryStore();
    return [store, store];
  }
  if (!REDIS_URL) throw new Error('REDIS_URL is not set: the Redis half of these tests needs a real Redis');
  const prefix = `${RUN_PREFIX}${randomUUID().slice(0, 8)}:`;
  const stores = [new RedisStore(REDIS_URL, prefix), new RedisStore(REDIS_URL, prefix)] as const;
  t.teardown(() => Promise.all(stores.map((store) => store.close())));
  await Promise.all(stores.map((store) => store.ready()));
  return [stores[0], stores[1]];
}

async function replicas(kind: StoreKind, t: ExecutionContext, overrides: Partial<Config> = {}, storeOfB?: (store: Store) => Store) {
  const provisioner = await InProcessProvisioner.create();
  const [storeA, storeB] = await storesFor(kind, t);
  const config = configWith(overrides);
  const a = new KernelManager(config, provisioner, storeA, specs, silentLogger);
  const b = new KernelManager(config, provisioner, storeOfB ? storeOfB(storeB) : storeB, specs, silentLogger);
  await a.start();
  await b.start();
  // Redis subscribes asynchronously: both replicas hear the topic before the test begins.
  await untilSubscribed(storeA);
  t.teardown(async () => {
    await b.stop(false);
    await a.stop(false);
    await provisioner.dispose();
  });
  return { a, b, provisioner, storeA, storeB };
}

async function untilSubscribed(store: Store): Promise<void> {
  let heard = false;
  const stop = await store.subscribe('kernel-events', { message: (m) => (heard ||= m === 'ping') });
  await until(async () => {
    await store.publish('kernel-events', 'ping');
    await sleep(20);
    return heard;
  });
  stop();
  // The other connection subscribed at the same time or earlier; a little slack for it.
  await sleep(50);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(10);
  }
}

async function evaluate(kernel: LiveKernel, code: string): Promise<{ reply: ExecuteReplyContent; result?: unknown }> {
  const request = kernel.message('execute_request', { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false });
  let result: unknown;
  const reply = await new Promise<ExecuteReplyContent>((resolve, reject) => {
    const future = kernel.submit('shell', request, {
      onIOPub: (msg) => {
        if (msg.header.msg_type === 'execute_result') result = (msg.content as { data: Record<string, unknown> }).data['text/plain'];
      },
      onReply: (msg) => resolve(msg.content as ExecuteReplyContent),
    });
    future.sent.catch(reject);
    void future.done.then(() => undefined, reject);
  });
  await sleep(20);
  return { reply, result };
}

const codeOf = (error: unknown) => (error instanceof DomainError ? error.code : String(error));

for (const kind of ['memory', 'redis'] as const) {
  const name = (title: string) => `[${kind}] ${title}`;

  test(name('a kernel created on A is served by B: B attaches its own transport, no second container'), async (t) => {
    const { a, b, provisioner } = await replicas(kind, t);
    const { record } = await a.create({ owner: 'tenant-a' });
    await evaluate((await a.handle(record.id)).kernel, 'globalThis.answer = 42');
    const onB = await b.handle(record.id);
    t.is(onB.owner, 'tenant-a');
    t.is((await evaluate(onB.kernel, 'answer')).result, '42', 'the same kernel process, seen through B');
    t.not(onB.kernel, (await a.handle(record.id)).kernel, 'B holds its own transport');
    t.is(provisioner.placed.size, 1);
    t.is((await b.get(record.id)).id, record.id);
  });

  test(name('a query on a kernel the replica holds (created there or attached) makes no store round trip'), async (t) => {
    let storeCalls = 0;
    const counting = (store: Store): Store =>
      new Proxy(store, {
        get(target, property, receiver) {
          const value = Reflect.get(target, property, receiver) as unknown;
          if (typeof value !== 'function') return value;
          return (...args: unknown[]) => {
            if (property !== 'subscribe' && property !== 'publish') storeCalls++;
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        },
      });
    const { a, b } = await replicas(kind, t, { flushWindowMs: 2000 }, counting);
    const queries = new QueryService(b, configWith({ flushWindowMs: 2000 }), silentLogger);
    t.teardown(() => queries.close());
    const { record } = await a.create({});
    t.is((await queries.execute(record.id, { mode: 'query', code: '1 + 1' })).status, 'finished');
    const afterAttach = storeCalls;
    t.true(afterAttach > 0, 'the first request read the record to attach');
    for (let i = 0; i < 5; i++) t.is((await queries.execute(record.id, { mode: 'query', code: `${i} * 2` })).status, 'finished');
    t.is(storeCalls, afterAttach, 'no store call on the hot path once attached');
    const own = (await b.create({})).record;
    const beforeOwn = storeCalls;
    for (let i = 0; i < 5; i++) t.is((await queries.execute(own.id, { mode: 'query', code: `${i}` })).status, 'finished');
    t.is(storeCalls, beforeOwn, 'none on a kernel created here either');
  });

  test(name('concurrent first requests on B attach once'), async (t) => {
    const { a, b, provisioner } = await replicas(kind, t);
    const { record } = await a.create({});
    let transports = 0;
    const connect = provisioner.connect.bind(provisioner);
    provisioner.connect = (ref, onBadFrame) => {
      transports++;
      return connect(ref, onBadFrame);
    };
    const handles = await Promise.all(Array.from({ length: 20 }, () => b.handle(record.id)));
    t.is(new Set(handles.map((h) => h.kernel)).size, 1);
    t.is(transports, 1);
  });

  test(name('a restart on A: B reconnects, forgets the old process, and its next query sees fresh state'), async (t) => {
    const { a, b, provisioner } = await replicas(kind, t);
    const { record } = await a.create({});
    const onB = await b.handle(record.id);
    await evaluate(onB.kernel, 'globalThis.kept = 1');
    const states: string[] = [];
    b.on('state', (id, state) => id === record.id && states.push(state));
    await a.restart(record.id);
    t.deepEqual(provisioner.restarts, [record.id]);
    await until(() => (onB as ProvisionedKernelHandle).generation === 1);
    t.true(states.includes('restarting'), `B told its clients: ${states.join(',')}`);
    const again = await b.handle(record.id);
    t.is((await evaluate(again.kernel, 'typeof kept')).result, "'undefined'", 'a fresh kernel process');
    t.is((await b.get(record.id)).generation, 1);
  });

  test(name('a replica that missed the restart event converges from the record on its next look'), async (t) => {
    // B's store hears no events: as after a subscriber reconnect that lost them.
    const deaf = (store: Store): Store => Object.assign(Object.create(store) as Store, { subscribe: async () => () => undefined });
    const { a, b } = await replicas(kind, t, {}, deaf);
    const { record } = await a.create({});
    const onB = (await b.handle(record.id)) as ProvisionedKernelHandle;
    await evaluate(onB.kernel, 'globalThis.kept = 1');
    await a.restart(record.id);
    await sleep(300);
    t.is(onB.generation, 0, 'B heard nothing');
    await b.get(record.id);
    await until(() => onB.generation === 1);
    t.is((await evaluate((await b.handle(record.id)).kernel, 'typeof kept')).result, "'undefined'");
    // And a delete it does not hear either: its next look at the record lets go.
    await a.delete(record.id);
    await t.throwsAsync(b.get(record.id));
    await until(() => b.handles().length === 0);
    t.is(codeOf(await t.throwsAsync(b.handle(record.id))), 'not_found');
  });

  test(name('a delete on B: A answers 404, and its in-flight run ends as a local delete ends it'), async (t) => {
    const { a, b, provisioner, storeA } = await replicas(kind, t, { flushWindowMs: 100 });
    const queries = new QueryService(a, configWith({ flushWindowMs: 100 }), silentLogger);
    t.teardown(() => queries.close());
    const { record } = await a.create({});
    const started = await queries.execute(record.id, { mode: 'query', code: 'await new Promise((resolve) => setTimeout(resolve, 60000))' });
    t.is(started.status, 'continued');
    const removed = new Promise<string>((resolve) => a.once('removed', (_id, reason) => resolve(reason)));
    await b.delete(record.id);
    t.is(await removed, 'deleted');
    const ended = await queries.execute(record.id, { mode: 'continue', runId: started.runId });
    t.not(ended.status, 'continued');
    t.regex(JSON.stringify(ended.console), /deleted/);
    t.is(codeOf(await t.throwsAsync(a.handle(record.id))), 'not_found');
    t.is(codeOf(await t.throwsAsync(a.get(record.id))), 'not_found');
    t.is(provisioner.placed.size, 0);
    t.is(await storeA.get('kernels', record.id), undefined);
    t.deepEqual(a.handles(), []);
  });

  test(name('two replicas deleting one kernel at once remove it once; both answer as a delete does'), async (t) => {
    const { a, b, provisioner } = await replicas(kind, t);
    const { record } = await a.create({});
    await b.handle(record.id);
    let removals = 0;
    const remove = provisioner.remove.bind(provisioner);
    provisioner.remove = async (ref) => {
      if (provisioner.placed.has(ref.containerId)) removals++;
      return remove(ref);
    };
    const outcomes = await Promise.allSettled([a.delete(record.id), b.delete(record.id)]);
    for (const outcome of outcomes) {
      if (outcome.status === 'rejected') t.is(codeOf(outcome.reason), 'not_found', 'the later one may find the kernel gone: a 404');
    }
    t.true(outcomes.some((o) => o.status === 'fulfilled'));
    t.is(removals, 1, 'its container was removed once');
    await until(() => a.handles().length === 0 && b.handles().length === 0);
  });

  test(name('a death heard by one replica only is seen by both: removed on both'), async (t) => {
    const { a, b, provisioner } = await replicas(kind, t);
    const { record } = await a.create({});
    await b.handle(record.id);
    // Only A's provisioner listener hears it (the first one registered).
    const [first] = provisioner.deathListeners;
    provisioner.deathListeners.clear();
    provisioner.deathListeners.add(first!);
    const removedOnB = new Promise<string>((resolve) => b.once('removed', (_id, reason) => resolve(reason)));
    const removedOnA = new Promise<string>((resolve) => a.once('removed', (_id, reason) => resolve(reason)));
    await provisioner.kill(record.containerId, 'out-of-memory');
    t.is(await removedOnA, 'out-of-memory');
    t.is(await removedOnB, 'out-of-memory');
    t.is(codeOf(await t.throwsAsync(b.handle(record.id))), 'not_found');
  });

  test(name('with POLYKERNEL_RESTART_DEAD_KERNELS a death heard by the replica not holding it is restarted once, and both serve the new process'), async (t) => {
    const { a, b, provisioner } = await replicas(kind, t, { restartDeadKernels: true });
    const { record } = await a.create({});
    await evaluate((await b.handle(record.id)).kernel, 'globalThis.kept = 1');
    const [first, second] = provisioner.deathListeners;
    // Heard by B only (the attached one): and then by both, which must not restart it twice.
    provisioner.deathListeners.delete(first!);
    const diedOnA = new Promise<string>((resolve) => a.once('died', (_id, reason) => resolve(reason)));
    await provisioner.kill(record.containerId, 'killed');
    t.is(await diedOnA, 'killed', 'A heard of the death through B');
    await until(async () => ((await a.get(record.id).catch(() => undefined))?.generation ?? 0) === 1);
    const generationOf = (m: KernelManager) => (m.handles()[0] as ProvisionedKernelHandle | undefined)?.generation ?? 0;
    await until(() => generationOf(a) === 1 && generationOf(b) === 1);
    t.is(provisioner.restarts.length, 1, 'restarted once');
    t.is((await evaluate((await a.handle(record.id)).kernel, 'typeof kept')).result, "'undefined'");
    t.is((await evaluate((await b.handle(record.id)).kernel, '1 + 1')).result, '2');
    provisioner.deathListeners.add(first!);
    void second;
  });

  test(name('1000 requests for unknown ids leave nothing behind, and an attached kernel unused a while is let go'), async (t) => {
    const { a, b } = await replicas(kind, t, { attachIdleMs: 1000 });
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 1000; i += 100) {
      const outcomes = await Promise.allSettled(Array.from({ length: 100 }, () => b.handle(randomUUID())));
      t.true(outcomes.every((o) => o.status === 'rejected' && codeOf(o.reason) === 'not_found'));
    }
    t.deepEqual(b.handles(), []);
    const internals = b as unknown as { lifecycle: { size: number }; attachments: { size: number; attaching: { size: number } }; deathsSeen: Set<string> };
    t.is(internals.attachments.size, 0);
    t.is(internals.attachments.attaching.size, 0);
    t.is(internals.lifecycle.size, 0);
    t.log(`heap ${Math.round((process.memoryUsage().heapUsed - before) / 1024)} KB after 1000 unknown ids`);
    const { record } = await a.create({});
    await b.handle(record.id);
    t.is(b.handles().length, 1);
    await sleep(1100);
    (b as unknown as { attachments: { sweep(): void } }).attachments.sweep();
    t.deepEqual(b.handles(), [], 'let go once unused for POLYKERNEL_ATTACH_IDLE_MS');
    t.is(a.handles().length, 1, 'the kernel itself goes on');
    t.is((await evaluate((await b.handle(record.id)).kernel, '2 + 2')).result, '4', 'and is attached again on the next request');
  });

  test(name('past POLYKERNEL_MAX_ATTACHED_KERNELS the attached kernel unused longest is let go; when all are in use the request is 503'), async (t) => {
    const { a, b } = await replicas(kind, t, { maxAttachedKernels: 2 });
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await a.create({})).record.id);
    await b.handle(ids[0]!);
    await b.handle(ids[1]!);
    await b.handle(ids[2]!);
    t.deepEqual(b.handles().map((h) => h.id).sort(), [ids[1], ids[2]].sort());
    // Both in use (something listens to every message: a channels hub).
    const stops = [ids[1]!, ids[2]!].map((id) => b.handles().find((h) => h.id === id)!.kernel.onMessage(() => undefined));
    t.is(codeOf(await t.throwsAsync(b.handle(ids[0]!))), 'unavailable');
    stops.forEach((stop) => stop());
    await t.notThrowsAsync(b.handle(ids[0]!));
    t.is(a.handles().length, 3, 'KG_MAX_KERNELS and memory of A are untouched by B');
  });
}

test.after.always('remove every key of this run from Redis', async () => {
  if (!REDIS_URL) return;
  const redis = new Redis(REDIS_URL);
  try {
    const keys = await redis.keys(`${RUN_PREFIX}*`);
    if (keys.length > 0) await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
});

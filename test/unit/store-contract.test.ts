/**
 * One contract for the Store interface, run against MemoryStore and against RedisStore on a real Redis
 * (REDIS_URL; every test gets its own key prefix under this run's prefix, all removed afterwards). Code
 * tested against the in-process store must behave the same in production with Redis.
 */
import test, { type ExecutionContext } from 'ava';
import { randomUUID } from 'node:crypto';
// Only to remove this run's keys afterwards: the store under test is not trusted to clean up
// after itself.
import { Redis } from 'ioredis';
import { DomainError } from '../../src/errors.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { RedisStore } from '../../src/store/redis-store.js';
import type { Store } from '../../src/store/store.js';

const REDIS_URL = process.env.REDIS_URL ?? '';
const RUN_PREFIX = `polykernel-test-${randomUUID().slice(0, 8)}:`;
let redisStoresMade = 0;

type StoreFactory = (t: ExecutionContext) => Promise<Store>;

const memory: StoreFactory = async (t) => {
  const store = new MemoryStore();
  t.teardown(() => store.close());
  return store;
};

const redis: StoreFactory = async (t) => {
  if (!REDIS_URL) {
    throw new Error('REDIS_URL is not set: the RedisStore half of the store contract needs a real Redis (scripts/host-setup.sh starts one; CI sets REDIS_URL)');
  }
  const store = new RedisStore(REDIS_URL, `${RUN_PREFIX}${++redisStoresMade}:`);
  t.teardown(() => store.close());
  await store.ready();
  return store;
};

interface Kernelish {
  id: string;
  lang: string;
  state?: string;
  count?: number;
  nested?: Record<string, unknown>;
  tags?: unknown[];
  [extra: string]: unknown;
}

const RICH_VALUE = {
  id: 'k-1',
  nested: { a: { b: { c: [1, { d: 'deep' }] } }, empty: {} },
  emptyArray: [],
  arrayOfArrays: [[], [1, 2], ['x']],
  zero: 0,
  negative: -42,
  float: 3.141592653589793,
  big: Number.MAX_SAFE_INTEGER,
  tiny: 1e-12,
  unicode: 'h\u00e9llo \u4e2d\u6587 \u{1F40D} \u2713 \u0000 "quoted" \\ back',
  emptyString: '',
  numericString: '123',
  jsonLookingString: '{"a":1}',
  yes: true,
  no: false,
  nothing: null,
};

function contract(kind: string, makeStore: StoreFactory): void {
  const name = (title: string) => `[${kind}] ${title}`;

  test(name('get of a missing id is undefined; put then get returns an equal record'), async (t) => {
    const store = await makeStore(t);
    t.is(await store.get('kernels', 'nope'), undefined);
    await store.put<Kernelish>('kernels', 'k-1', { id: 'k-1', lang: 'python3', count: 1 });
    t.deepEqual(await store.get('kernels', 'k-1'), { id: 'k-1', lang: 'python3', count: 1 });
  });

  test(name('nested objects, arrays (empty ones too), numbers, unicode strings, booleans and null round-trip exactly'), async (t) => {
    const store = await makeStore(t);
    await store.put('kernels', 'k-1', RICH_VALUE);
    t.deepEqual(await store.get('kernels', 'k-1'), RICH_VALUE);
    t.deepEqual(await store.list('kernels'), [RICH_VALUE]);
    t.true(await store.putIfAbsent('kernels', 'k-2', RICH_VALUE));
    t.deepEqual(await store.get('kernels', 'k-2'), RICH_VALUE);
    t.true(await store.update('kernels', 'k-2', { nested: { replaced: [[]] }, emptyArray: [0], unicode: '\u00fc' }));
    t.deepEqual(await store.get('kernels', 'k-2'), { ...RICH_VALUE, nested: { replaced: [[]] }, emptyArray: [0], unicode: '\u00fc' });
  });

  test(name('put replaces the whole record: fields absent from the new value are gone'), async (t) => {
    const store = await makeStore(t);
    await store.put('kernels', 'k-1', { id: 'k-1', lang: 'python3', state: 'idle' });
    await store.put('kernels', 'k-1', { id: 'k-1', lang: 'javascript' });
    t.deepEqual(await store.get('kernels', 'k-1'), { id: 'k-1', lang: 'javascript' });
    t.is((await store.list('kernels')).length, 1);
  });

  test(name('records read back are copies: mutating one does not change what is stored'), async (t) => {
    const store = await makeStore(t);
    const value = { id: 'k-1', lang: 'python3', tags: ['a'] };
    await store.put('kernels', 'k-1', value);
    value.tags.push('mutated-after-put');
    const read = (await store.get<Kernelish>('kernels', 'k-1'))!;
    read.tags!.push('mutated-after-get');
    read.lang = 'changed';
    t.deepEqual(await store.get('kernels', 'k-1'), { id: 'k-1', lang: 'python3', tags: ['a'] });
  });

  test(name('putIfAbsent writes only when no record exists and says whether it wrote'), async (t) => {
    const store = await makeStore(t);
    t.true(await store.putIfAbsent('tokens', 'tok', { kernelId: 'a', lang: 'python3' }));
    t.false(await store.putIfAbsent('tokens', 'tok', { kernelId: 'b', lang: 'r' }));
    t.deepEqual(await store.get('tokens', 'tok'), { kernelId: 'a', lang: 'python3' });
    t.deepEqual(await store.list('tokens'), [{ kernelId: 'a', lang: 'python3' }]);
  });

  test(name('concurrent putIfAbsent of the same id: exactly one wins and its value is stored'), async (t) => {
    const store = await makeStore(t);
    const claims = Array.from({ length: 25 }, (_, i) => ({ kernelId: `k-${i}`, lang: 'python3' }));
    const won = await Promise.all(claims.map((claim) => store.putIfAbsent('tokens', 'shared', claim)));
    t.is(won.filter(Boolean).length, 1);
    t.deepEqual(await store.get('tokens', 'shared'), claims[won.indexOf(true)]);
    t.is((await store.list('tokens')).length, 1);
  });

  test(name('update merges the given fields into the record and leaves the others'), async (t) => {
    const store = await makeStore(t);
    await store.put<Kernelish>('kernels', 'k-1', { id: 'k-1', lang: 'python3', state: 'idle', count: 1, nested: { a: 1 } });
    t.true(await store.update<Kernelish>('kernels', 'k-1', { state: 'busy', count: 2, added: [] }));
    t.deepEqual(await store.get('kernels', 'k-1'), { id: 'k-1', lang: 'python3', state: 'busy', count: 2, nested: { a: 1 }, added: [] });
    // The merge is shallow: a nested object given in the patch replaces the stored one.
    t.true(await store.update<Kernelish>('kernels', 'k-1', { nested: { b: 2 } }));
    t.deepEqual((await store.get<Kernelish>('kernels', 'k-1'))!.nested, { b: 2 });
  });

  test(name('update of a missing record answers false and creates nothing'), async (t) => {
    const store = await makeStore(t);
    t.false(await store.update<Kernelish>('kernels', 'ghost', { state: 'busy' }));
    t.false(await store.update<Kernelish>('kernels', 'ghost', {}));
    t.is(await store.get('kernels', 'ghost'), undefined);
    t.deepEqual(await store.list('kernels'), []);
  });

  test(name('update with an empty patch answers whether the record exists and changes nothing'), async (t) => {
    const store = await makeStore(t);
    await store.put('kernels', 'k-1', { id: 'k-1', lang: 'python3' });
    t.true(await store.update('kernels', 'k-1', {}));
    t.deepEqual(await store.get('kernels', 'k-1'), { id: 'k-1', lang: 'python3' });
  });

  test(name('update ignores fields set to undefined (it never deletes a field)'), async (t) => {
    const store = await makeStore(t);
    await store.put<Kernelish>('kernels', 'k-1', { id: 'k-1', lang: 'python3', state: 'idle' });
    t.true(await store.update<Kernelish>('kernels', 'k-1', { state: undefined, count: 3 }));
    t.deepEqual(await store.get('kernels', 'k-1'), { id: 'k-1', lang: 'python3', state: 'idle', count: 3 });
  });

  test(name('concurrent updates of different fields of one record all survive (no lost update)'), async (t) => {
    const store = await makeStore(t);
    await store.put('kernels', 'k-1', { id: 'k-1' });
    const fields = Array.from({ length: 30 }, (_, i) => `f${i}`);
    const results = await Promise.all(fields.map((field, i) => store.update('kernels', 'k-1', { [field]: i })));
    t.true(results.every(Boolean));
    t.deepEqual(await store.get('kernels', 'k-1'), { id: 'k-1', ...Object.fromEntries(fields.map((f, i) => [f, i])) });
  });

  test(name('delete removes the record from get and list, answers whether it existed, and frees the id'), async (t) => {
    const store = await makeStore(t);
    await store.put('kernels', 'k-1', { id: 'k-1' });
    await store.put('kernels', 'k-2', { id: 'k-2' });
    t.true(await store.delete('kernels', 'k-1'));
    t.false(await store.delete('kernels', 'k-1'));
    t.false(await store.delete('kernels', 'never-was'));
    t.is(await store.get('kernels', 'k-1'), undefined);
    t.deepEqual(await store.list('kernels'), [{ id: 'k-2' }]);
    t.true(await store.putIfAbsent('kernels', 'k-1', { id: 'k-1', again: true }));
    t.deepEqual(await store.get('kernels', 'k-1'), { id: 'k-1', again: true });
  });

  test(name('list returns every record of a namespace and only that namespace; an empty one lists []'), async (t) => {
    const store = await makeStore(t);
    t.deepEqual(await store.list('sessions'), []);
    const kernels = Array.from({ length: 12 }, (_, i) => ({ id: `k-${i}`, n: i }));
    for (const kernel of kernels) await store.put('kernels', kernel.id, kernel);
    await store.put('sessions', 'k-0', { id: 'k-0', session: true });
    await store.put('tokens', 'k-0', { kernelId: 'k-0' });
    const listed = await store.list<{ id: string; n: number }>('kernels');
    t.deepEqual([...listed].sort((a, b) => a.n - b.n), kernels);
    t.deepEqual(await store.list('sessions'), [{ id: 'k-0', session: true }]);
    t.deepEqual(await store.get('kernels', 'k-0'), { id: 'k-0', n: 0 });
    t.deepEqual(await store.list('executions'), []);
  });

  test(name('ids with separators and unicode are distinct keys'), async (t) => {
    const store = await makeStore(t);
    const ids = ['a:b', 'a', 'a:b:c', 'with space', '\u00e9t\u00e9', 'tok/1'];
    for (const id of ids) await store.put('tokens', id, { id });
    for (const id of ids) t.deepEqual(await store.get('tokens', id), { id });
    t.is((await store.list('tokens')).length, ids.length);
  });

  test(name('publish reaches every subscriber of the topic, the publishing store\'s own included, until it unsubscribes'), async (t) => {
    const store = await makeStore(t);
    const heard: string[][] = [[], []];
    const arrived = (n: number) => waitUntil(() => heard[0]!.length >= n && heard[1]!.length >= n);
    const stopFirst = await store.subscribe('kernel-events', { message: (m) => m !== 'probe' && heard[0]!.push(m) });
    const stopSecond = await store.subscribe('kernel-events', { message: (m) => m !== 'probe' && heard[1]!.push(m) });
    await subscribed(store);
    await store.publish('kernel-events', 'one');
    await arrived(1);
    stopFirst();
    await store.publish('kernel-events', 'two');
    await waitUntil(() => heard[1]!.length >= 2);
    await new Promise((resolve) => setTimeout(resolve, 100));
    t.deepEqual(heard, [['one'], ['one', 'two']]);
    stopSecond();
  });

  test(name('ping answers true while the store is reachable'), async (t) => {
    const store = await makeStore(t);
    t.true(await store.ping());
  });
}

/** Until a message published now reaches a subscription just made (Redis subscribes asynchronously). */
async function subscribed(store: Store): Promise<void> {
  let heard = false;
  const stop = await store.subscribe('kernel-events', { message: (m) => (heard ||= m === 'probe') });
  await waitUntil(async () => {
    await store.publish('kernel-events', 'probe');
    await new Promise((resolve) => setTimeout(resolve, 20));
    return heard;
  });
  stop();
}

async function waitUntil(condition: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

contract('memory', memory);
contract('redis', redis);

test('[redis] an unreachable Redis fails every operation fast with DomainError code "unavailable"', async (t) => {
  const store = new RedisStore('redis://127.0.0.1:1', `${RUN_PREFIX}unreachable:`);
  t.teardown(() => store.close());
  const operations: [string, () => Promise<unknown>][] = [
    ['get', () => store.get('kernels', 'k')],
    ['put', () => store.put('kernels', 'k', { id: 'k' })],
    ['putIfAbsent', () => store.putIfAbsent('tokens', 't', { id: 't' })],
    ['update', () => store.update('kernels', 'k', { state: 'idle' })],
    ['delete', () => store.delete('kernels', 'k')],
    ['list', () => store.list('kernels')],
  ];
  for (const [label, operation] of operations) {
    const started = Date.now();
    const error = await t.throwsAsync(operation(), { instanceOf: DomainError }, label);
    t.is((error as DomainError | undefined)?.code, 'unavailable', label);
    t.regex(error?.message ?? '', /Redis/, label);
    t.true(Date.now() - started < 3000, `${label} took ${Date.now() - started} ms`);
  }
  t.false(await store.ping());
  // A start waits for Redis instead of failing: ready() keeps waiting, saying so, until the store is closed.
  const waits: number[] = [];
  const ready = store.ready((waitedMs) => waits.push(waitedMs), 200);
  const early = await Promise.race([ready.then(() => 'ready', () => 'failed'), new Promise((resolve) => setTimeout(() => resolve('waiting'), 1000))]);
  t.is(early, 'waiting');
  t.true(waits.length >= 3, `told of the wait ${waits.length} times`);
  await store.close();
  const closed = await t.throwsAsync(ready, { instanceOf: DomainError });
  t.is((closed as DomainError | undefined)?.code, 'unavailable');
});

test('[redis] two stores on one prefix hear each other\'s messages; a store on another prefix hears none of them', async (t) => {
  if (!REDIS_URL) throw new Error('REDIS_URL is not set');
  const prefix = `${RUN_PREFIX}pubsub:`;
  const [a, b, other] = [new RedisStore(REDIS_URL, prefix), new RedisStore(REDIS_URL, prefix), new RedisStore(REDIS_URL, `${RUN_PREFIX}elsewhere:`)];
  t.teardown(() => Promise.all([a.close(), b.close(), other.close()]));
  await Promise.all([a.ready(), b.ready(), other.ready()]);
  const heardByB: string[] = [];
  const heardByOther: string[] = [];
  let gaps = 0;
  await b.subscribe('kernel-events', { message: (m) => heardByB.push(m), onGap: () => gaps++ });
  await other.subscribe('kernel-events', { message: (m) => heardByOther.push(m) });
  await subscribed(b);
  await subscribed(other);
  await a.publish('kernel-events', 'from-a');
  await waitUntil(() => heardByB.includes('from-a'));
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.false(heardByOther.includes('from-a'));
  t.true(gaps >= 1, 'the first connection of the subscriber is told as a possible gap too');
});

test.after.always('remove every key of this run from Redis', async (t) => {
  if (!REDIS_URL) return;
  const client = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await client.scan(cursor, 'MATCH', `${RUN_PREFIX}*`, 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    if (keys.length > 0) await client.del(...keys);
    t.log(`removed ${keys.length} Redis keys under ${RUN_PREFIX}`);
  } finally {
    client.disconnect();
  }
});

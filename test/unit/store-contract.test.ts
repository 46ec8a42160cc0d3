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

  test(name('update with neverLower raises those fields only, and writes the others as usual'), async (t) => {
    const store = await makeStore(t);
    await store.put('kernels', 'k-1', { id: 'k-1', lastActivity: 1000, count: 5, state: 'idle' });
    type Activity = { lastActivity: number; count: number; state: string };
    const options = { neverLower: ['lastActivity', 'count'] as const };
    t.true(await store.update<Activity>('kernels', 'k-1', { lastActivity: 900, count: 7, state: 'busy' }, options));
    t.deepEqual(await store.get('kernels', 'k-1'), { id: 'k-1', lastActivity: 1000, count: 7, state: 'busy' });
    t.true(await store.update<Activity>('kernels', 'k-1', { lastActivity: 1_700_000_000_123 }, options));
    t.is((await store.get<{ lastActivity: number }>('kernels', 'k-1'))!.lastActivity, 1_700_000_000_123);
    // A field not stored yet is written.
    t.true(await store.update('kernels', 'k-1', { added: 3 }, { neverLower: ['added'] }));
    t.is((await store.get<{ added: number }>('kernels', 'k-1'))!.added, 3);
    t.false(await store.update<Activity>('kernels', 'ghost', { lastActivity: 1 }, options));
    t.is(await store.get('kernels', 'ghost'), undefined);
  });

  test(name('concurrent neverLower updates from many writers end at the largest value, whatever their order'), async (t) => {
    const store = await makeStore(t);
    await store.put('kernels', 'k-1', { id: 'k-1', lastActivity: 0 });
    const values = Array.from({ length: 50 }, (_, i) => 1_700_000_000_000 + ((i * 37) % 50));
    await Promise.all(values.map((lastActivity) => store.update('kernels', 'k-1', { lastActivity }, { neverLower: ['lastActivity'] })));
    t.is((await store.get<{ lastActivity: number }>('kernels', 'k-1'))!.lastActivity, Math.max(...values));
  });

  test(name('deleteIf deletes only while the field holds the expected value'), async (t) => {
    const store = await makeStore(t);
    await store.put('tokens', 'tok', { kernelId: 'a', lang: 'python3' });
    t.false(await store.deleteIf('tokens', 'tok', 'kernelId', 'b'));
    t.false(await store.deleteIf('tokens', 'tok', 'lang', 'r'));
    t.deepEqual(await store.get('tokens', 'tok'), { kernelId: 'a', lang: 'python3' });
    t.true(await store.deleteIf('tokens', 'tok', 'kernelId', 'a'));
    t.is(await store.get('tokens', 'tok'), undefined);
    t.deepEqual(await store.list('tokens'), []);
    t.false(await store.deleteIf('tokens', 'tok', 'kernelId', 'a'), 'nothing left to delete');
    t.true(await store.putIfAbsent('tokens', 'tok', { kernelId: 'c' }), 'the id is free again');
  });

  test(name('claimSlot holds at most max claims; a holder renews when full; release frees a slot; 0 = no bound'), async (t) => {
    const store = await makeStore(t);
    const claimed = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((m) => store.claimSlot('kernel-slots', m, 3, 60_000)));
    t.is(claimed.filter(Boolean).length, 3);
    const holders = (await store.slots('kernel-slots')).map((c) => c.member).sort();
    t.is(holders.length, 3);
    t.true(await store.claimSlot('kernel-slots', holders[0]!, 3), 'a holder renews (here: for good) although the set is full');
    t.deepEqual((await store.slots('kernel-slots')).find((c) => c.member === holders[0]), { member: holders[0] }, 'held until released: no expiry');
    t.false(await store.claimSlot('kernel-slots', 'z', 3, 60_000));
    t.true(await store.releaseSlot('kernel-slots', holders[1]!));
    t.false(await store.releaseSlot('kernel-slots', holders[1]!));
    t.true(await store.claimSlot('kernel-slots', 'z', 3, 60_000));
    t.true(await store.claimSlot('kernel-slots', 'unbounded', 0, 60_000), 'max 0 is no bound');
    const expiring = (await store.slots('kernel-slots')).find((c) => c.member === 'z');
    t.true(expiring!.expiresAt! > Date.now() + 50_000 && expiring!.expiresAt! <= Date.now() + 61_000, `expiresAt ${expiring?.expiresAt}`);
  });

  test(name('a claim with a TTL lapses by itself: its slot is free once the TTL has passed, unless it was renewed'), async (t) => {
    const store = await makeStore(t);
    // Seconds of TTL: on a loaded machine the steps between claims take their time too.
    t.true(await store.claimSlot('kernel-slots', 'crashed', 2, 2000));
    t.true(await store.claimSlot('kernel-slots', 'renewed', 2, 2000));
    t.false(await store.claimSlot('kernel-slots', 'waiting', 2, 2000));
    t.true(await store.claimSlot('kernel-slots', 'renewed', 2));
    await new Promise((resolve) => setTimeout(resolve, 3000));
    t.deepEqual(await store.slots('kernel-slots'), [{ member: 'renewed' }]);
    t.true(await store.claimSlot('kernel-slots', 'waiting', 2, 2000));
    t.false(await store.claimSlot('kernel-slots', 'third', 2, 2000));
  });

  test(name('a lease has one holder; its epoch grows with every taking; a stale fence cannot renew, release or write'), async (t) => {
    const store = await makeStore(t);
    const first = await store.acquireLease('leader', 'replica-a', 2000);
    t.truthy(first);
    t.is(await store.acquireLease('leader', 'replica-b', 2000), undefined, 'held by another');
    t.true(await store.renewLease(first!, 2000));
    t.false(await store.renewLease({ ...first!, epoch: first!.epoch + 1 }, 2000), 'another epoch is not this lease');
    await store.put('kernels', 'k-1', { id: 'k-1' });
    t.is(await store.updateFenced('kernels', 'k-1', { cullReason: 'idle timeout' }, first!), 'written');
    t.is(await store.updateFenced('kernels', 'ghost', { cullReason: 'idle timeout' }, first!), 'missing');
    t.is(await store.get('kernels', 'ghost'), undefined);
    // The holder pauses past its lease; another takes it.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const second = await store.acquireLease('leader', 'replica-b', 5000);
    t.truthy(second);
    t.true(second!.epoch > first!.epoch);
    t.false(await store.renewLease(first!, 2000));
    t.false(await store.releaseLease(first!));
    t.is(await store.updateFenced('kernels', 'k-1', { cullReason: 'stale' }, first!), 'fenced');
    t.deepEqual(await store.get('kernels', 'k-1'), { id: 'k-1', cullReason: 'idle timeout' }, 'the stale write changed nothing');
    t.true(await store.releaseLease(second!));
    const third = await store.acquireLease('leader', 'replica-c', 2000);
    t.truthy(third, 'released: taken at once');
    t.is(await store.updateFenced('kernels', 'k-1', { cullReason: 'stale' }, second!), 'fenced', 'the released tenure is fenced');
    t.is(await store.updateFenced('kernels', 'k-1', { cullReason: 'stale' }, first!), 'fenced');
    t.is(await store.updateFenced('kernels', 'k-1', {}, third!), 'written');
  });

  test(name('a lease whose holder lets it lapse is fenced even if nobody took it since'), async (t) => {
    const store = await makeStore(t);
    const fence = (await store.acquireLease('leader', 'replica-a', 1000))!;
    await store.put('kernels', 'k-1', { id: 'k-1' });
    await new Promise((resolve) => setTimeout(resolve, 2000));
    t.is(await store.updateFenced('kernels', 'k-1', { cullReason: 'late' }, fence), 'fenced');
    t.false(await store.renewLease(fence, 1000), 'a lapsed lease is not extended: it must be taken again, with a new epoch');
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
    ['deleteIf', () => store.deleteIf('tokens', 't', 'kernelId', 'k')],
    ['claimSlot', () => store.claimSlot('kernel-slots', 'k', 4, 1000)],
    ['slots', () => store.slots('kernel-slots')],
    ['acquireLease', () => store.acquireLease('leader', 'me', 1000)],
    ['updateFenced', () => store.updateFenced('kernels', 'k', { state: 'idle' }, { lease: 'leader', holder: 'me', epoch: 1 })],
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

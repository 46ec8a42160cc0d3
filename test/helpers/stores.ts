/**
 * Both stores for tests that must hold for each: the in-process MemoryStore, and RedisStore on a real
 * Redis (REDIS_URL) under a key prefix of this test run, so that parallel test files and other runs never
 * see each other's keys. `removeRunKeys` removes every key of the run afterwards; `countRunKeys` lets a
 * test check that what it did left nothing behind in Redis.
 */
import type { ExecutionContext } from 'ava';
import { randomUUID } from 'node:crypto';
// Only to count and remove this run's keys: the store under test is not trusted to clean up after itself.
import { Redis } from 'ioredis';
import { MemoryStore } from '../../src/store/memory-store.js';
import { RedisStore } from '../../src/store/redis-store.js';
import type { Store } from '../../src/store/store.js';

export const REDIS_URL = process.env.REDIS_URL ?? '';
export type StoreKind = 'memory' | 'redis';
export const STORE_KINDS: readonly StoreKind[] = ['memory', 'redis'];

/**
 * Stores that share their data, as replicas share one Redis: `open()` gives another client of the same
 * data (another RedisStore on the same prefix; the same MemoryStore, the in-process store having no
 * second client). `prefix` is where the Redis keys live.
 */
export interface SharedStore {
  kind: StoreKind;
  prefix: string;
  open(): Promise<Store>;
}

export function runPrefix(name: string): string {
  return `polykernel-test-${name}-${randomUUID().slice(0, 8)}:`;
}

let made = 0;

/** A fresh shared store of this kind for one test; every client it opens is closed at the test's end. */
export function sharedStore(t: ExecutionContext, kind: StoreKind, runKeyPrefix: string): SharedStore {
  const prefix = `${runKeyPrefix}${++made}:`;
  if (kind === 'memory') {
    const store = new MemoryStore();
    t.teardown(() => store.close());
    return { kind, prefix, open: async () => store };
  }
  if (!REDIS_URL) throw new Error('REDIS_URL is not set: the Redis half of this test needs a real Redis (CI sets REDIS_URL)');
  return {
    kind,
    prefix,
    open: async () => {
      const store = new RedisStore(REDIS_URL, prefix);
      t.teardown(() => store.close());
      await store.ready();
      return store;
    },
  };
}

async function scanKeys(client: Redis, pattern: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

async function withClient<T>(use: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    return await use(client);
  } finally {
    client.disconnect();
  }
}

/** The Redis keys under `prefix`, sorted (a test compares them before and after). */
export function redisKeys(prefix: string): Promise<string[]> {
  return withClient(async (client) => (await scanKeys(client, `${prefix}*`)).sort());
}

/** Removes every key under `prefix`; answers how many there were. */
export async function removeRunKeys(prefix: string): Promise<number> {
  if (!REDIS_URL) return 0;
  return withClient(async (client) => {
    const keys = await scanKeys(client, `${prefix}*`);
    if (keys.length > 0) await client.del(...keys);
    return keys.length;
  });
}

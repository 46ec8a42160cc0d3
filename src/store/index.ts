import type { Config } from '../config/index.js';
import { MemoryStore } from './memory-store.js';
import { RedisStore } from './redis-store.js';
import type { Store } from './store.js';

export type { Namespace, Store } from './store.js';

/** Redis when REDIS_URL is set, else the in-process store. */
export async function createStore(config: Pick<Config, 'redisUrl' | 'redisPrefix'>): Promise<Store> {
  if (!config.redisUrl) return new MemoryStore();
  const store = new RedisStore(config.redisUrl, config.redisPrefix);
  await store.ready();
  return store;
}

import type { Config } from '../config/index.js';
import type { Logger } from '../logger.js';
import { MemoryStore } from './memory-store.js';
import { RedisStore } from './redis-store.js';
import type { Store } from './store.js';

export type { Fence, LeaseName, Namespace, SlotClaim, SlotSet, Store, UpdateOptions } from './store.js';

/**
 * Redis when REDIS_URL is set, else the in-process store. Resolves once Redis answers, waiting as long as
 * it takes (a Redis that starts after the service, or comes back from a failover, is not a failed start);
 * `opened` receives the store at once, so that a start cut short while it waits still closes it.
 */
export async function createStore(
  config: Pick<Config, 'redisUrl' | 'redisPrefix'>,
  log?: Logger,
  opened?: (store: Store) => void,
): Promise<Store> {
  if (!config.redisUrl) return new MemoryStore();
  const store = new RedisStore(config.redisUrl, config.redisPrefix);
  opened?.(store);
  await store.ready((waitedMs) => log?.warn('Waiting for Redis to answer', { waitedS: Math.round(waitedMs / 1000) }));
  return store;
}

/**
 * Judge0's submissions outlive a service in Redis for their TTL (that is the point); a test removes what
 * its instance left there, so the shared Redis does not fill with test records.
 */
import { RedisStore } from '../../src/store/redis-store.js';

export async function removeSubmissions(redisUrl: string, instance: string): Promise<void> {
  if (!redisUrl) return;
  const store = new RedisStore(redisUrl, `${instance}:`);
  await store.ready();
  try {
    for (const ns of ['submissions', 'submission-index', 'pending-callbacks'] as const) {
      for (const record of await store.list<{ token: string }>(ns)) await store.delete(ns, record.token);
    }
  } finally {
    await store.close();
  }
}

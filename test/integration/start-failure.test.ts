/**
 * A start that fails halfway (here: a record in Redis that cannot be read, met once the listener, the
 * store, the engine and the kernel layer have started) closes what it opened: no Redis connection, timer,
 * listening socket or engine stream keeps the process alive, and the kernels of the instance are kept for
 * the next start to adopt.
 */
import { randomUUID } from 'node:crypto';
import test from 'ava';
import { Redis } from 'ioredis';
import { redisUrl, startTestService } from '../helpers/service.js';
import { eventually } from '../helpers/wait.js';

/** Handles that keep a Node process alive, by kind. */
function activeHandles(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1;
  return counts;
}

test('a start that fails halfway closes the listener, the store, the engine stream and every timer it opened', async (t) => {
  t.truthy(redisUrl, 'the Redis store is what a leak would keep open');
  const instance = `test-${randomUUID().slice(0, 8)}`;
  const redis = new Redis(redisUrl);
  // The executions' index names a record that is not a hash: reading it fails the start (WRONGTYPE).
  await redis.sadd(`${instance}:executions`, 'broken');
  await redis.set(`${instance}:executions:broken`, 'not a hash');
  const before = activeHandles();
  try {
    const error = await t.throwsAsync(startTestService({ instance, redisPrefix: `${instance}:` }, 'redis'));
    t.regex(String(error), /Redis|WRONGTYPE/);
    const same = () => {
      const after = activeHandles();
      return ['TCPSocketWrap', 'TCPServerWrap', 'Timeout', 'PipeWrap'].every((kind) => (after[kind] ?? 0) <= (before[kind] ?? 0));
    };
    t.true(await eventually(same, 10_000), `handles before ${JSON.stringify(before)}, after ${JSON.stringify(activeHandles())}`);
  } finally {
    await redis.del(`${instance}:executions`, `${instance}:executions:broken`);
    redis.disconnect();
  }
});

/**
 * A start that fails halfway (here: its port is taken, after the store, the engine and every part have
 * started) closes what it opened: no Redis connection, timer or engine stream keeps the process alive, and
 * the kernels of the instance are kept for the next start to adopt.
 */
import net from 'node:net';
import test from 'ava';
import { redisUrl, startTestService } from '../helpers/service.js';
import { eventually } from '../helpers/wait.js';

/** Handles that keep a Node process alive, by kind. */
function activeHandles(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1;
  return counts;
}

test('a start that fails at listen closes the store, the engine stream and every timer it opened', async (t) => {
  t.truthy(redisUrl, 'the Redis store is what a leak would keep open');
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
  const port = (blocker.address() as net.AddressInfo).port;
  const before = activeHandles();
  const error = await t.throwsAsync(startTestService({ port }, 'redis'));
  t.regex(String(error), /EADDRINUSE/);
  const same = () => {
    const after = activeHandles();
    return ['TCPSocketWrap', 'Timeout', 'PipeWrap'].every((kind) => (after[kind] ?? 0) <= (before[kind] ?? 0));
  };
  t.true(await eventually(same, 10_000), `handles before ${JSON.stringify(before)}, after ${JSON.stringify(activeHandles())}`);
  blocker.close();
});

/**
 * Two real services (real Docker kernels, real Redis) sharing one Redis prefix, as gateway replicas do:
 * KG_MAX_KERNELS counts both replicas' kernels; one clientSessionToken gives one kernel whichever replica
 * is asked; the leader culls an idle kernel exactly once, wherever it runs; a clean stop of both leaves no
 * key in Redis. Both start before any kernel exists: attaching to a kernel another replica started is not
 * this test's subject.
 */
import test from 'ava';
import { randomUUID } from 'node:crypto';
import { containersOfInstance } from '../helpers/docker.js';
import { startTestService, type TestService } from '../helpers/service.js';
import { redisKeys, REDIS_URL } from '../helpers/stores.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test.serial('two replicas on one Redis: a cluster-wide kernel limit, one kernel per token, each idle kernel culled once, no key left', async (t) => {
  if (!REDIS_URL) throw new Error('REDIS_URL is not set: this test needs a real Redis');
  const redisPrefix = `test-replicas-${randomUUID().slice(0, 8)}:`;
  const overrides = { redisPrefix, maxKernels: 2, idleTimeoutMs: 4000, statsIntervalMs: 500, leaderLeaseMs: 2000 };
  const replicas: TestService[] = [];
  try {
    replicas.push(await startTestService(overrides, 'redis'));
    replicas.push(await startTestService(overrides, 'redis'));
    const [a, b] = replicas as [TestService, TestService];
    const removals: [string, string, string][] = [];
    for (const [name, svc] of [['a', a], ['b', b]] as const) svc.service.kernels.on('removed', (id, reason) => removals.push([name, id, reason]));

    // The limit is both replicas' together.
    const creates = await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 ? b : a).call('POST', '/v1/kernel/create', { lang: 'python3' })));
    const statuses = creates.map((r) => r.status).sort();
    t.is(statuses.filter((s) => s === 201).length, 2, `statuses ${statuses}`);
    t.is(statuses.filter((s) => s === 402).length, 4, `statuses ${statuses}`);
    await Promise.all(replicas.map((svc) => svc.service.kernels.settled()));
    const containers = replicas.reduce((sum, svc) => sum + containersOfInstance(svc.config.instance).length, 0);
    t.is(containers, 2, 'no container beyond the limit on either replica');
    // Both idle: the leader culls each once, whichever replica runs it.
    const deadline = Date.now() + 30_000;
    while (removals.length < 2 && Date.now() < deadline) await sleep(250);
    await sleep(2000);
    const made = creates.filter((r) => r.status === 201).map((r) => r.body.kernelId as string);
    t.deepEqual(removals.map(([, id, reason]) => [id, reason]).sort(), made.map((id) => [id, 'idle timeout']).sort(), 'each idle kernel removed once');
    t.log(`removed by: ${removals.map(([name]) => name).join(', ')}`);

    // One kernel on each replica (the first started leads): the follower's is culled on the leader's order.
    const onEach = [(await a.call('POST', '/v1/kernel/create', { lang: 'python3' })).body.kernelId, (await b.call('POST', '/v1/kernel/create', { lang: 'python3' })).body.kernelId];
    t.true(b.service.kernels.handles().some((h) => h.id === onEach[1]), 'the second runs on the follower');
    removals.length = 0;
    const deadline2 = Date.now() + 30_000;
    while (removals.length < 2 && Date.now() < deadline2) await sleep(250);
    await sleep(2000);
    t.deepEqual(removals.sort(), [['a', onEach[0], 'idle timeout'], ['b', onEach[1], 'idle timeout']].sort(), 'each removed once, by its own replica');

    // Room again: one token asked of both replicas at once is one kernel.
    const tokenCreates = await Promise.all(
      Array.from({ length: 6 }, (_, i) => (i % 2 ? b : a).call('POST', '/v1/kernel/create', { lang: 'python3', clientSessionToken: 'shared-repl' })),
    );
    t.deepEqual([...new Set(tokenCreates.map((r) => r.status))].sort(), [200, 201]);
    t.is(tokenCreates.filter((r) => r.status === 201).length, 1);
    t.is(new Set(tokenCreates.map((r) => r.body.kernelId)).size, 1);
    const kernelId = tokenCreates[0]!.body.kernelId as string;
    const owner = a.service.kernels.handles().some((h) => h.id === kernelId) ? a : b;
    t.is((await owner.call('DELETE', `/v1/kernel/${kernelId}`)).status, 204);
  } finally {
    for (const svc of replicas.reverse()) await svc.stop();
  }
  t.deepEqual(await redisKeys(redisPrefix), [], 'no key of the replicas is left in Redis');
});

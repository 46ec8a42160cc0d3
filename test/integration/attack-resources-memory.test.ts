/**
 * The host memory budget: the memory caps of live, starting and warm-pool kernels together never exceed
 * POLYKERNEL_MEMORY_BUDGET_KB. Creates past it are refused with a 503 that says what to do, concurrent
 * creates in a loop never overshoot it (measured on the engine: the sum of the containers' memory caps),
 * and every path that gives a kernel up (delete, failed start, culling) gives its memory back.
 */
import { execFileSync } from 'node:child_process';
import test from 'ava';
import { LABELS } from '../../src/runtime/runtime.js';
import { startTestService, type TestService } from '../helpers/service.js';
import { DOCKER } from '../helpers/docker.js';
import { createKernel } from '../helpers/v1-client.js';
import { eventually } from '../helpers/wait.js';

const MB = 1024;
const CAP_KB = 128 * MB;

/** Sum of the memory caps (KB) of this service's containers as the engine has them. */
function engineCapsKB(svc: TestService): number {
  // A container removed between ps and inspect fails the inspect: measure again.
  for (let attempt = 0; ; attempt++) {
    try {
      return engineCapsOnce(svc);
    } catch (error) {
      if (attempt >= 5) throw error;
    }
  }
}

function engineCapsOnce(svc: TestService): number {
  const ids = execFileSync(DOCKER, ['ps', '-q', '--filter', `label=${LABELS.instance}=${svc.config.instance}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n').filter(Boolean);
  if (ids.length === 0) return 0;
  const caps = execFileSync(DOCKER, ['inspect', '-f', '{{.HostConfig.Memory}}', ...ids], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n').filter(Boolean);
  return caps.reduce((sum, bytes) => sum + Number(bytes) / 1024, 0);
}

test.serial('creates past the memory budget are refused with 503; concurrent creates in a loop never overshoot it', async (t) => {
  t.timeout(240_000);
  // Room for 4 kernels of 128 MB, one of them the warm pool's.
  const budgetKB = 4 * CAP_KB;
  const svc = await startTestService({ memoryBudgetKB: budgetKB, defaultMaxMemKB: CAP_KB, poolSizes: { python3: 1 } });
  try {
    t.true(await svc.service.kernels.pool.whenFull(60_000), 'the warm pool filled');
    let peakKB = 0;
    const watch = setInterval(() => {
      try {
        peakKB = Math.max(peakKB, engineCapsKB(svc));
      } catch {
        // A container went away between ps and inspect: the next round measures again.
      }
    }, 300);
    const rounds: { created: number; refused: number }[] = [];
    try {
      for (let round = 0; round < 3; round++) {
        const answers = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            svc.call('POST', i % 2 ? '/v1/kernel/create' : '/api/kernels', i % 2 ? { lang: 'python3' } : { name: 'python3' }),
          ),
        );
        const created = answers.filter((a) => a.status === 201);
        const refused = answers.filter((a) => a.status === 503);
        rounds.push({ created: created.length, refused: refused.length });
        t.is(created.length + refused.length, answers.length, JSON.stringify(answers.map((a) => [a.status, a.body])));
        t.true(created.length <= 4, `round ${round}: ${created.length} kernels created within a budget for 4`);
        t.true(created.length >= 3, `round ${round}: the budget is all available again (${created.length} created)`);
        for (const answer of refused) {
          const message = answer.body.detail ?? answer.body.message;
          t.regex(message, /POLYKERNEL_MEMORY_BUDGET_KB/, 'the refusal names the option');
        }
        peakKB = Math.max(peakKB, engineCapsKB(svc));
        t.true(engineCapsKB(svc) <= budgetKB);
        await Promise.all(
          created.map((a) => (a.body.kernelId ? svc.call('DELETE', `/v1/kernel/${a.body.kernelId}`) : svc.call('DELETE', `/api/kernels/${a.body.id}`))),
        );
        await svc.service.kernels.settled();
        await svc.service.kernels.pool.whenFull(60_000);
      }
    } finally {
      clearInterval(watch);
    }
    t.log(`rounds (created/refused of 10): ${rounds.map((r) => `${r.created}/${r.refused}`).join(', ')}; peak sum of caps on the engine ${peakKB / MB} MB of a ${budgetKB / MB} MB budget`);
    t.true(peakKB <= budgetKB, `peak ${peakKB} KB <= budget ${budgetKB} KB`);

    // A cap larger than the whole budget can never fit: 406, as any limit above the server's caps.
    const huge = await svc.call('POST', '/v1/kernel/create', { lang: 'python3', resourceLimits: { maxMem: budgetKB + MB } });
    t.is(huge.status, 406, JSON.stringify(huge.body));

    // Failed starts give their reservation back: a cap too small for ipykernel dies while starting.
    const tooSmall = await Promise.all(Array.from({ length: 4 }, () => svc.call('POST', '/v1/kernel/create', { lang: 'python3', resourceLimits: { maxMem: 16 * MB } })));
    t.true(tooSmall.every((a) => a.status >= 400), JSON.stringify(tooSmall.map((a) => a.status)));
    await svc.service.kernels.settled();
    // The whole budget is available again: kernels are created until the budget refuses one, and then
    // they and the warm pool hold all of it (the pool's kernel may have been handed out and not yet
    // replaced, so count both).
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const created = await svc.call('POST', '/v1/kernel/create', { lang: 'python3' });
      if (created.status !== 201) {
        t.is(created.status, 503, JSON.stringify(created.body));
        break;
      }
      ids.push(created.body.kernelId);
    }
    const pool = svc.service.kernels.pool.status().python3!;
    t.is(ids.length + pool.ready + pool.starting, 4, `after failed starts the whole budget is available again (${ids.length} created, pool ${JSON.stringify(pool)})`);
    for (const id of ids) await svc.call('DELETE', `/v1/kernel/${id}`);
  } finally {
    await svc.stop();
  }
});

test.serial('a culled kernel gives its memory back', async (t) => {
  t.timeout(120_000);
  const svc = await startTestService({ memoryBudgetKB: 2 * CAP_KB, defaultMaxMemKB: CAP_KB, idleTimeoutMs: 8000, statsIntervalMs: 250 });
  try {
    const a = await createKernel(svc.call, { lang: 'python3' });
    await createKernel(svc.call, { lang: 'python3' });
    t.is((await svc.call('POST', '/v1/kernel/create', { lang: 'python3' })).status, 503);
    t.true(await eventually(async () => (await svc.call('GET', `/v1/kernel/${a}`)).status === 404, 30_000));
    t.true(
      await eventually(async () => {
        const again = await svc.call('POST', '/v1/kernel/create', { lang: 'python3' });
        return again.status === 201;
      }, 30_000, 500),
    );
  } finally {
    await svc.stop();
  }
});

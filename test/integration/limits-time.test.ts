/**
 * The time limits of issue #6 with short values: the query timeout, the idle timeout and the CPU credit.
 * The usage sampler runs every 200 ms here; every wait polls with a generous deadline.
 */
import test from 'ava';
import { startTestService, type TestService } from '../helpers/service.js';
import { containersOfKernel } from '../helpers/docker.js';
import { batch, createKernel, kernelGone, query } from '../helpers/v1-client.js';
import { sleep } from '../helpers/wait.js';

let svc: TestService;

test.before(async () => {
  // 4 s idle timeout: wide enough that a kernel queried every ~0.1 s is never idle that long, even when
  // a loaded CI machine makes single queries take a second or more.
  svc = await startTestService({ statsIntervalMs: 200, idleTimeoutMs: 4000, flushWindowMs: 20_000 });
});

test.after.always(async () => {
  await svc?.stop();
});

test.serial('timeout: a query past it ends with exec-timeout and the kernel is destroyed', async (t) => {
  const id = await createKernel(svc.call, { lang: 'python3', resourceLimits: { timeout: 1000 } });
  const started = Date.now();
  const outcome = await query(svc.call, id, 'import time\ntime.sleep(60)');
  t.is(outcome.status, 'exec-timeout');
  t.true(Date.now() - started < 15_000, 'ends about when the timeout says, not when the code does');
  t.true(await kernelGone(svc.call, id, 20_000));
  t.regex((await svc.call('GET', `/v1/kernel/${id}`)).body.detail, /query timeout/);
  await svc.service.kernels.settled();
  t.is(containersOfKernel(id), '');
});

test.serial('timeout: a batch step past it ends with exec-timeout; the step is killed, the kernel answers', async (t) => {
  const id = await createKernel(svc.call, { lang: 'python3', resourceLimits: { timeout: 1000 } });
  const started = Date.now();
  const outcome = await batch(svc.call, id, 'sleep 60');
  t.is(outcome.status, 'exec-timeout');
  t.true(Date.now() - started < 15_000);
  t.is((await query(svc.call, id, 'print("alive")')).text, 'alive\n');
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

test.serial('idle timeout: an untouched kernel is destroyed; one in use or busy is kept', async (t) => {
  // Each kernel is put to use as soon as it exists: on a loaded machine creating the next one can take
  // longer than the idle timeout.
  const used = await createKernel(svc.call, { lang: 'python3' });
  let touching = true;
  const touches = (async () => {
    const statuses: string[] = [];
    while (touching) {
      statuses.push((await query(svc.call, used, 'pass')).status);
      await sleep(100);
    }
    return statuses;
  })();
  const busy = await createKernel(svc.call, { lang: 'python3' });
  // busy: one query longer than the idle timeout (the sampler sees it busy throughout).
  const longQuery = query(svc.call, busy, 'import time\ntime.sleep(8)\nprint("done")');
  const idle = await createKernel(svc.call, { lang: 'python3' });
  t.true(await kernelGone(svc.call, idle, 20_000), 'the untouched kernel is gone');
  t.regex((await svc.call('GET', `/v1/kernel/${idle}`)).body.detail, /idle timeout/);
  t.is((await svc.call('GET', `/v1/kernel/${used}`)).status, 200, 'the kernel in use is kept');
  t.is((await longQuery).text, 'done\n', 'the busy kernel was kept until its query ended');
  touching = false;
  const statuses = await touches;
  t.true(statuses.length > 0 && statuses.every((status) => status === 'finished'), statuses.join(','));
  // Once nobody touches them, they go too.
  t.true(await kernelGone(svc.call, used, 20_000));
  t.true(await kernelGone(svc.call, busy, 20_000));
});

// Under runsc the credit counts the sandbox's own processes too (sentry, gofer): its start alone costs
// 3-7 s of CPU (0.8-1 s under runc), hence the larger credit. The query timeout leaves a busy loop
// time to burn the rest even when the loop gets a fraction of a core on a loaded machine.
for (const [runtime, creditMs] of [['runc', 4000], ['runsc', 12_000]] as const) {
  test.serial(`${runtime}: CPU credit: a busy loop past maxCpuCredit destroys the kernel, and the run says why`, async (t) => {
    t.timeout(180_000);
    const local = await startTestService({ containerRuntime: runtime, statsIntervalMs: 200, maxCpuCreditMs: creditMs, flushWindowMs: 150_000 });
    try {
      const id = await createKernel(local.call, { lang: 'python3', resourceLimits: { timeout: 150_000 } });
      await sleep(600);
      const before = (await local.call('GET', `/v1/kernel/${id}`)).body;
      t.log(`CPU credit used by the start: ${before.cpuCreditUsed} ms of ${before.maxCpuCredit}`);
      t.true(before.cpuCreditUsed < creditMs);
      const outcome = await query(local.call, id, 'while True: pass');
      t.is(outcome.status, 'finished');
      t.regex(outcome.text, /\[kernel died: CPU credit exhausted\]/);
      const after = await local.call('GET', `/v1/kernel/${id}`);
      t.is(after.status, 404);
      t.regex(after.body.detail, /CPU credit exhausted/);
    } finally {
      await local.stop();
    }
  });
}

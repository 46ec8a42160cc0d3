/**
 * Attack: v1 runs a client abandons. Each query answers "continued" (its kernel is busy with the ones
 * before it), then prints close to POLYKERNEL_MAX_OUTPUT_BYTES that nobody comes to take. Round after
 * round the service must not keep those runs and their output: its RSS (its own process) stays bounded,
 * and a late "continue" of a discarded run hears why.
 *
 * Also: a query that ends in exec-timeout answers only once its kernel is gone, so a GET right after it
 * no longer shows the kernel (busy).
 */
import test from 'ava';
import { startServiceProcess, type ServiceProcess } from '../helpers/service-process.js';

const ROUNDS = 3;
const QUERIES_PER_ROUND = 400;
const PRINTED_CHARS = 900_000;
/** 1.2 GB of output is produced; keeping a bounded number of runs costs a few tens of MB. */
const MAX_RSS_GROWTH_KB = 150 * 1024;

let svc: ServiceProcess;

test.before(async () => {
  svc = await startServiceProcess({
    label: 'attack-runs',
    env: { POLYKERNEL_FLUSH_WINDOW_MS: '50', POLYKERNEL_MAX_RUNS_PER_KERNEL: '16' },
  });
});

test.after.always(async () => {
  await svc?.stop();
});

test.serial(`${ROUNDS} rounds of ${QUERIES_PER_ROUND} abandoned "continued" queries: the service's RSS stays bounded`, async (t) => {
  t.timeout(180_000);
  const { kernelId } = await svc.http.ok('POST', '/v1/kernel/create', { lang: 'python3', resourceLimits: { timeout: 120_000 } });
  // Warm up: the first query pays for imports and the kernel's own buffers.
  await svc.http.ok('POST', `/v1/kernel/${kernelId}`, { mode: 'query', code: `print("x" * ${PRINTED_CHARS})` });
  const baseline = svc.rssKB();
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, svc.rssKB())), 100);
  let lastRoundRunId = '';
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const answers = await Promise.all(
        Array.from({ length: QUERIES_PER_ROUND }, () =>
          svc.http.call('POST', `/v1/kernel/${kernelId}`, { mode: 'query', code: `print("x" * ${PRINTED_CHARS})` }),
        ),
      );
      // A run pushed out by the ones started after it (past POLYKERNEL_MAX_RUNS_PER_KERNEL) before its
      // first answer is told so (404, "discarded"); a loaded machine answers more of them that way.
      const discarded = answers.filter((a) => a.status === 404 && /was discarded: more than \d+ runs/.test(JSON.stringify(a.body)));
      const continued = answers.filter((a) => a.status === 200 && a.body.result.status === 'continued');
      const others = answers.filter((a) => a.status !== 200 && !discarded.includes(a));
      t.deepEqual(others.map((a) => `${a.status} ${JSON.stringify(a.body).slice(0, 200)}`), [], 'every answer is a run or says it was discarded');
      lastRoundRunId = continued[0]?.body.result.runId;
      t.log(`round ${round + 1}: ${continued.length} of ${QUERIES_PER_ROUND} answered continued, ${discarded.length} discarded; RSS ${svc.rssKB()} KB`);
      // The kernel holds at most POLYKERNEL_MAX_RUNS_PER_KERNEL of them at once however many are left.
      t.true(continued.length > 0, 'runs were left "continued", holding output');
      // The kernel works through the queue (their output arrives for runs nobody continues).
      const last = await svc.http.ok('POST', `/v1/kernel/${kernelId}`, { mode: 'query', code: 'print("drained")' });
      let result = last.result;
      while (result.status === 'continued') {
        result = (await svc.http.ok('POST', `/v1/kernel/${kernelId}`, { mode: 'continue', runId: result.runId })).result;
      }
      t.is(result.status, 'finished');
    }
  } finally {
    clearInterval(sampler);
  }
  const growth = peak - baseline;
  t.log(`RSS baseline ${baseline} KB, peak ${peak} KB, growth ${growth} KB`);
  t.true(growth < MAX_RSS_GROWTH_KB, `the service's RSS grew ${growth} KB`);
  // An abandoned run of the last round was discarded; continuing it says why instead of returning output.
  const late = await svc.http.call('POST', `/v1/kernel/${kernelId}`, { mode: 'continue', runId: lastRoundRunId });
  t.is(late.status, 404);
  t.regex(JSON.stringify(late.body), /discarded/);
  // The kernel is fine. It may still be working through the abandoned cells queued before this one (a
  // loaded machine), so the check is continued until it finishes.
  let { result } = await svc.http.ok('POST', `/v1/kernel/${kernelId}`, { mode: 'query', code: 'print(6 * 7)' });
  const consoleItems = [...result.console];
  for (let i = 0; i < 60 && result.status === 'continued'; i++) {
    ({ result } = await svc.http.ok('POST', `/v1/kernel/${kernelId}`, { mode: 'continue', runId: result.runId }));
    consoleItems.push(...result.console);
  }
  t.is(result.status, 'finished');
  t.deepEqual(consoleItems, [['stdout', '42\n']]);
});

test.serial('exec-timeout answers once the kernel is gone: a GET right after never shows it busy (3 times)', async (t) => {
  t.timeout(120_000);
  for (let i = 0; i < 3; i++) {
    const { kernelId } = await svc.http.ok('POST', '/v1/kernel/create', { lang: 'python3', resourceLimits: { timeout: 1500 + i * 300 } });
    let { result } = await svc.http.ok('POST', `/v1/kernel/${kernelId}`, { mode: 'query', code: 'while True: pass' });
    while (result.status === 'continued') {
      result = (await svc.http.ok('POST', `/v1/kernel/${kernelId}`, { mode: 'continue', runId: result.runId })).result;
    }
    t.is(result.status, 'exec-timeout');
    const after = await svc.http.call('GET', `/v1/kernel/${kernelId}`);
    t.log(`try ${i + 1}: GET after exec-timeout answered ${after.status} ${JSON.stringify(after.body).slice(0, 120)}`);
    t.is(after.status, 404, `GET after exec-timeout answered ${after.status}: ${JSON.stringify(after.body)}`);
  }
});

/**
 * Issue #6, load, CI-sized: the load run of test/load/load.ts (`npm run load` does 50 kernels and 2,000
 * executions) with 10 kernels and 200 executions. No error, no leaked container, socket directory or
 * store key, and the service's memory back near where it started.
 */
import test from 'ava';
import { runLoad } from '../load/load.js';

test('10 kernels x 200 executions: no error, nothing leaked, memory back near its start', async (t) => {
  t.timeout(300_000);
  const figures = await runLoad({ kernels: 10, executions: 200, createConcurrency: 2, timeoutMs: 240_000, log: (line) => t.log(line) });
  const { executePhaseMs, executionsPerSecond, executeMs, rssMB, heapUsedMB } = figures;
  t.log(JSON.stringify({ executePhaseMs, executionsPerSecond, executeMs, rssMB, heapUsedMB }));
  t.is(figures.errors, 0, figures.firstErrors.join('\n'));
  t.deepEqual(figures.leaks, { containers: 0, socketDirs: 0, storeKeys: figures.store === 'redis' ? 0 : null, kernelsListed: 0 });
  // "Near": after a full GC the V8 heap is back within a few MB (a leak of kernels' connections or runs
  // would show as tens), and so is the resident set, which the allocator gives back more lazily.
  const heapGrowth = heapUsedMB.afterLoad - heapUsedMB.beforeLoad;
  t.true(heapGrowth < 5, `heap grew ${heapGrowth.toFixed(1)} MB (${heapUsedMB.beforeLoad} -> ${heapUsedMB.afterLoad})`);
  const rssGrowth = rssMB.afterLoad - rssMB.beforeLoad;
  t.true(rssGrowth < 30, `RSS grew ${rssGrowth.toFixed(1)} MB (${rssMB.beforeLoad} -> ${rssMB.afterLoad})`);
});

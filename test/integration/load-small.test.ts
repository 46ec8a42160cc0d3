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
  t.log(JSON.stringify({ executePhaseMs: figures.executePhaseMs, executionsPerSecond: figures.executionsPerSecond, executeMs: figures.executeMs, rssMB: figures.rssMB }));
  t.is(figures.errors, 0, figures.firstErrors.join('\n'));
  t.deepEqual(figures.leaks, { containers: 0, socketDirs: 0, storeKeys: figures.store === 'redis' ? 0 : null, kernelsListed: 0 });
  // "Near": what 10 kernels and 200 executions leave in V8's heap and malloc arenas after a full GC is a
  // few MB; a leak of the kernels' connections or runs would show as tens.
  const growth = figures.rssMB.afterLoad - figures.rssMB.beforeLoad;
  t.true(growth < 25, `RSS grew ${growth.toFixed(1)} MB (${figures.rssMB.beforeLoad} -> ${figures.rssMB.afterLoad})`);
});

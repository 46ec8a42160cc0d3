/**
 * WarmPool's bookkeeping with fake launch/discard hooks (the real kernels are in
 * test/integration/warm-pool.test.ts): fill to target, hand out oldest first, refill after the delay,
 * never hand a kernel out twice, give back, forget the dead, drain.
 */
import test from 'ava';
import { createLogger } from '../../src/logger.js';
import type { LiveKernel } from '../../src/kernels/live-kernel.js';
import { WarmPool, type LaunchedKernel } from '../../src/kernels/warm-pool.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function fakePool(sizes: Record<string, number>, refillDelayMs = 0) {
  let launched = 0;
  const discarded: string[] = [];
  const pool = new WarmPool(
    sizes,
    {
      async launch(lang) {
        const n = ++launched;
        return { id: `k${n}`, lang, containerId: `c${n}`, connDir: `/d${n}`, key: `key${n}` } as unknown as LaunchedKernel & { kernel: LiveKernel };
      },
      async discard(kernel) {
        discarded.push(kernel.containerId);
      },
    },
    createLogger('silent'),
    refillDelayMs,
  );
  return { pool, discarded, launches: () => launched };
}

test('fills every pool to its target and reports it', async (t) => {
  const { pool } = fakePool({ python3: 2, lua: 1 });
  pool.fill();
  t.true(await pool.whenFull(1000));
  t.deepEqual(pool.status(), { python3: { ready: 2, starting: 0, target: 2 }, lua: { ready: 1, starting: 0, target: 1 } });
});

test('hands out the oldest kernel once, and refills only after the delay', async (t) => {
  const { pool, launches } = fakePool({ python3: 2 }, 100);
  pool.fill();
  await pool.whenFull(1000);
  const first = pool.take('python3');
  const second = pool.take('python3');
  t.is(first?.containerId, 'c1');
  t.is(second?.containerId, 'c2');
  t.is(pool.take('python3'), undefined, 'an empty pool makes the caller start cold');
  await sleep(30);
  t.is(launches(), 2, 'no replacement starts before the delay');
  t.true(await pool.whenFull(1000));
  t.is(launches(), 4);
  const ids = [pool.take('python3')?.containerId, pool.take('python3')?.containerId];
  t.deepEqual(ids, ['c3', 'c4'], 'handed-out containers never come back');
});

test('a kernel given back is handed out next; a dead one is discarded and replaced', async (t) => {
  const { pool, discarded } = fakePool({ python3: 2 });
  pool.fill();
  await pool.whenFull(1000);
  const taken = pool.take('python3')!;
  pool.giveBack(taken);
  t.is(pool.take('python3')?.containerId, taken.containerId);
  await pool.whenFull(1000);
  t.true(pool.forget('c2'));
  t.false(pool.forget('not-pooled'));
  t.deepEqual(discarded, ['c2']);
  t.true(await pool.whenFull(1000));
});

test('drain discards every ready kernel and stops refilling', async (t) => {
  const { pool, discarded, launches } = fakePool({ python3: 2 });
  pool.fill();
  await pool.whenFull(1000);
  await pool.drain();
  t.deepEqual(discarded.sort(), ['c1', 'c2']);
  t.is(pool.take('python3'), undefined);
  await sleep(20);
  t.is(launches(), 2);
});

import test from 'ava';
import { KeyedMutex } from '../../src/kernels/keyed-mutex.js';

const tick = (ms = 1) => new Promise((resolve) => setTimeout(resolve, ms));

test('operations on one key never overlap and run in arrival order, failures included', async (t) => {
  const mutex = new KeyedMutex();
  let running = 0;
  let most = 0;
  const order: number[] = [];
  const results = await Promise.allSettled(
    Array.from({ length: 20 }, (_, i) =>
      mutex.run('k', async () => {
        running++;
        most = Math.max(most, running);
        await tick(i % 3);
        order.push(i);
        running--;
        if (i % 5 === 0) throw new Error(`op ${i}`);
        return i;
      }),
    ),
  );
  t.is(most, 1);
  t.deepEqual(order, Array.from({ length: 20 }, (_, i) => i));
  t.is(results.filter((r) => r.status === 'rejected').length, 4, 'a failure is its caller\'s, the queue goes on');
  await tick();
  t.is(mutex.size, 0, 'no entry is kept once the key is idle');
});

test('different keys run in parallel', async (t) => {
  const mutex = new KeyedMutex();
  let running = 0;
  let most = 0;
  await Promise.all(
    ['a', 'b', 'c'].map((key) =>
      mutex.run(key, async () => {
        running++;
        most = Math.max(most, running);
        await tick(5);
        running--;
      }),
    ),
  );
  t.is(most, 3);
});

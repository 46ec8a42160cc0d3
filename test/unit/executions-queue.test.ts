/** The execution queue (issue #5): at most `limit` at once, first in first out, withdrawable. */
import test from 'ava';
import { WorkQueue } from '../../src/executions/queue.js';

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

test('runs at most `limit` tasks at once, in submission order', async (t) => {
  const queue = new WorkQueue(2);
  const started: string[] = [];
  const release = new Map<string, () => void>();
  let peak = 0;
  for (const id of ['a', 'b', 'c', 'd', 'e']) {
    queue.push(id, () => {
      started.push(id);
      peak = Math.max(peak, queue.runningCount);
      return new Promise<void>((resolve) => release.set(id, resolve));
    });
  }
  await tick();
  t.deepEqual(started, ['a', 'b']);
  t.is(queue.waitingCount, 3);
  t.is(queue.position('d'), 2);
  release.get('b')!();
  await tick();
  t.deepEqual(started, ['a', 'b', 'c']);
  for (const id of ['a', 'c']) release.get(id)!();
  await tick();
  for (const id of ['d', 'e']) release.get(id)!();
  await tick();
  t.deepEqual(started, ['a', 'b', 'c', 'd', 'e']);
  t.is(peak, 2);
  t.is(queue.runningCount, 0);
});

test('a waiting task can be withdrawn; a running one cannot; a failing task frees its slot', async (t) => {
  const errors: string[] = [];
  const queue = new WorkQueue(1, (id) => errors.push(id));
  const ran: string[] = [];
  queue.push('x', async () => {
    ran.push('x');
    throw new Error('fails');
  });
  queue.push('y', async () => void ran.push('y'));
  queue.push('z', async () => void ran.push('z'));
  t.false(queue.withdraw('x'));
  t.true(queue.withdraw('y'));
  t.false(queue.withdraw('nope'));
  await tick();
  t.deepEqual(ran, ['x', 'z']);
  t.deepEqual(errors, ['x']);
  t.throws(() => new WorkQueue(0));
});

/**
 * The memory budget's bookkeeping: reservations fit or are refused whole, resizing a key checks only the
 * increase, releases are idempotent, and a burst of reservations never holds more than the budget.
 */
import test from 'ava';
import { DomainError } from '../../src/errors.js';
import { MemoryBudget } from '../../src/kernels/memory-budget.js';

const codeOf = (fn: () => void) => {
  try {
    fn();
    return undefined;
  } catch (error) {
    return (error as DomainError).code;
  }
};

test('reservations fit until the budget is used; the next is 503 (unavailable) and changes nothing', (t) => {
  const budget = new MemoryBudget(1000);
  budget.reserve('a', 400);
  budget.reserve('b', 600);
  t.is(budget.usedKB, 1000);
  t.is(codeOf(() => budget.reserve('c', 1)), 'unavailable');
  t.is(budget.usedKB, 1000);
  t.false(budget.has('c'));
});

test('a cap larger than the whole budget is 406 (limit_exceeded): it can never fit', (t) => {
  t.is(codeOf(() => new MemoryBudget(1000).reserve('a', 1001)), 'limit_exceeded');
});

test('re-reserving a key resizes it: shrinking always fits, growing checks only the increase', (t) => {
  const budget = new MemoryBudget(1000);
  budget.reserve('pooled', 256);
  budget.reserve('other', 500);
  budget.reserve('pooled', 500);
  t.is(budget.usedKB, 1000);
  t.is(codeOf(() => budget.reserve('pooled', 501)), 'unavailable');
  t.is(budget.usedKB, 1000, 'a refused resize keeps the old reservation');
  budget.reserve('pooled', 100);
  t.is(budget.usedKB, 600);
});

test('release gives the memory back once; releasing twice or an unknown key is a no-op', (t) => {
  const budget = new MemoryBudget(1000);
  budget.reserve('a', 700);
  budget.release('a');
  budget.release('a');
  budget.release('never');
  t.is(budget.usedKB, 0);
  budget.reserve('b', 1000);
  t.is(budget.usedKB, 1000);
});

test('hold records a kernel whatever the budget (adoption); creates are refused until it goes', (t) => {
  const budget = new MemoryBudget(1000);
  budget.hold('adopted', 1500);
  t.is(budget.usedKB, 1500);
  t.is(codeOf(() => budget.reserve('new', 1)), 'unavailable');
  budget.release('adopted');
  budget.reserve('new', 1000);
  t.pass();
});

test('a budget of 0 refuses nothing but still counts', (t) => {
  const budget = new MemoryBudget(0);
  for (let i = 0; i < 100; i++) budget.reserve(`k${i}`, 1_000_000);
  t.is(budget.usedKB, 100_000_000);
});

test('a burst of reservations and releases in random order never holds more than the budget', (t) => {
  const budget = new MemoryBudget(10_000);
  const held = new Map<string, number>();
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < 5000; i++) {
    const key = `k${Math.floor(random() * 40)}`;
    if (random() < 0.4) {
      budget.release(key);
      held.delete(key);
    } else {
      const cap = 16 + Math.floor(random() * 3000);
      if (codeOf(() => budget.reserve(key, cap)) === undefined) held.set(key, cap);
    }
    const sum = [...held.values()].reduce((a, b) => a + b, 0);
    if (budget.usedKB !== sum || sum > 10_000) return t.fail(`step ${i}: used ${budget.usedKB}, expected ${sum}`);
  }
  t.pass();
});

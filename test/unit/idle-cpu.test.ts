/**
 * The idle-CPU window: only CPU used while unattended counts, it slides out after the window, a first
 * sample judges no past, a counter that went back starts over, and 0 means no budget.
 */
import test from 'ava';
import { IdleCpuBudget } from '../../src/kernels/idle-cpu.js';

test('CPU used while unattended adds up within the window and slides out of it', (t) => {
  const budget = new IdleCpuBudget(1000, 10_000);
  t.is(budget.sample('k', 0, 5000, false), 0, 'the first sample judges no past');
  t.is(budget.sample('k', 1000, 5600, false), 600);
  t.is(budget.sample('k', 2000, 6200, false), 1200);
  t.regex(budget.verdict(1200)!, /POLYKERNEL_IDLE_CPU_MS=1000/);
  t.is(budget.verdict(1000), undefined, 'exactly the budget is allowed');
  t.is(budget.sample('k', 11_500, 6200, false), 600, 'the first idle second left the window');
  t.is(budget.sample('k', 12_500, 6200, false), 0);
});

test('CPU used while attended (an execution in progress, a recent request) never counts', (t) => {
  const budget = new IdleCpuBudget(1000, 10_000);
  budget.sample('k', 0, 0, true);
  for (let at = 1000; at <= 20_000; at += 1000) t.is(budget.sample('k', at, at, true), 0);
  t.is(budget.sample('k', 21_000, 20_900, false), 900);
});

test('a counter that went back (restart in a fresh cgroup) starts over from its new value', (t) => {
  const budget = new IdleCpuBudget(1000, 10_000);
  budget.sample('k', 0, 9000, false);
  t.is(budget.sample('k', 1000, 300, false), 300);
});

test('a budget of 0 never decides; retain forgets kernels that are gone', (t) => {
  const budget = new IdleCpuBudget(0, 10_000);
  budget.sample('k', 0, 0, false);
  t.is(budget.verdict(budget.sample('k', 1000, 1_000_000, false)), undefined);
  budget.retain(new Set());
  t.is(budget.sample('k', 2000, 5_000_000, false), 0, 'forgotten: the next sample is a first sight');
});

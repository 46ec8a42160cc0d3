/**
 * The table of v1 runs waiting for "continue" (query.ts QueryRuns): abandoned runs are discarded after the
 * TTL, past the per-kernel cap, past the total of buffered output, and soon after their kernel is removed;
 * a late "continue" of a discarded run hears why.
 */
import test from 'ava';
import type { DomainError } from '../../src/errors.js';
import { QueryRuns, type Run, type RunResult } from '../../src/runs/query.js';

class FakeRun implements Run {
  discarded = false;
  aborted?: string;
  constructor(readonly runId: string, public bufferedBytes = 0) {}
  next(): Promise<RunResult> {
    return Promise.resolve({ runId: this.runId, status: 'continued', exitCode: null, console: [], options: {} });
  }
  sendInput(): Promise<void> {
    return Promise.resolve();
  }
  abort(reason: string): void {
    this.aborted = reason;
  }
  discard(): void {
    this.discarded = true;
    this.bufferedBytes = 0;
  }
}

const setup = (limits: Partial<{ ttlMs: number; maxPerKernel: number; maxBufferedBytes: number }> = {}) => {
  const clock = { now: 0 };
  const runs = new QueryRuns({ ttlMs: 1000, maxPerKernel: 3, maxBufferedBytes: 1000, ...limits }, () => clock.now);
  return { clock, runs };
};

const notFoundMessage = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    return (error as DomainError).message;
  }
  return 'no error';
};

test('a run not continued within the TTL is discarded; one continued meanwhile is kept', (t) => {
  const { clock, runs } = setup();
  const idle = new FakeRun('idle');
  const busy = new FakeRun('busy');
  runs.add('k', idle);
  runs.add('k', busy);
  clock.now = 600;
  runs.get('k', 'busy');
  clock.now = 1000;
  runs.sweep();
  t.true(idle.discarded);
  t.false(busy.discarded);
  t.regex(notFoundMessage(() => runs.get('k', 'idle')), /discarded: not continued within 1000 ms/);
  t.is(runs.get('k', 'busy'), busy);
});

test('past the per-kernel cap the run least recently continued is discarded, other kernels untouched', (t) => {
  const { clock, runs } = setup();
  const made = ['a', 'b', 'c'].map((id) => new FakeRun(id));
  const other = new FakeRun('x');
  runs.add('other', other);
  for (const run of made) {
    clock.now++;
    runs.add('k', run);
  }
  runs.get('k', 'a');
  runs.add('k', new FakeRun('d'));
  t.deepEqual(made.map((run) => run.discarded), [false, true, false]);
  t.false(other.discarded);
  t.is(runs.size, 4);
  for (let i = 0; i < 100; i++) runs.add('k', new FakeRun(`n${i}`));
  t.is(runs.size, 4, 'never more than the cap per kernel');
});

test('past the total of buffered output the runs least recently continued are discarded', (t) => {
  const { clock, runs } = setup({ maxPerKernel: 100 });
  const first = new FakeRun('first', 400);
  const second = new FakeRun('second', 400);
  runs.add('k1', first);
  clock.now = 1;
  runs.add('k2', second);
  clock.now = 2;
  const third = new FakeRun('third', 400);
  runs.add('k1', third);
  t.true(first.discarded);
  t.false(second.discarded);
  t.false(third.discarded);
  // Output that arrives later is caught by the sweep.
  second.bufferedBytes = 900;
  runs.sweep();
  t.true(second.discarded);
  t.false(third.discarded);
});

test('the runs of a removed kernel are aborted at once and discarded after a grace, continued or not', (t) => {
  const { clock, runs } = setup({ ttlMs: 600_000 });
  const run = new FakeRun('r');
  runs.add('k', run);
  runs.abortKernel('k', 'deleted', true);
  t.is(run.aborted, 'deleted');
  clock.now = 20_000;
  runs.get('k', 'r');
  runs.sweep();
  t.false(run.discarded, 'within the grace its client can still hear why');
  clock.now = 30_000;
  runs.sweep();
  t.true(run.discarded);
  t.regex(notFoundMessage(() => runs.get('k', 'r')), /its kernel was removed/);
});

test('a run that died with its kernel restarted in place is aborted but kept until continued', (t) => {
  const { clock, runs } = setup({ ttlMs: 600_000 });
  const run = new FakeRun('r');
  runs.add('k', run);
  runs.abortKernel('k', 'out of memory');
  clock.now = 100_000;
  runs.sweep();
  t.false(run.discarded);
  runs.settle('k', { runId: 'r', status: 'finished', exitCode: 137, console: [], options: {} });
  t.is(runs.size, 0);
});

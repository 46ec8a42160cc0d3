/**
 * OOM notices against a fake kernel handle: the first run of a kernel takes its count as the baseline, a
 * run that ends after new kills gets one stderr notice, a kernel death says it already, and a forgotten
 * kernel (restarted, removed) counts again from its next run.
 */
import test from 'ava';
import { OomNotices } from '../../src/runs/oom-notice.js';
import type { RunResult } from '../../src/runs/query.js';

function kernel(kills: number | undefined) {
  return { id: 'k-1', limits: { maxMemKB: 65536, timeoutMs: 1000, idleTimeoutMs: 0, maxCpuCreditMs: 0 }, kills, oomKills: async function () { return this.kills; } };
}

const finished = (...console: RunResult['console']): RunResult => ({ runId: 'r', status: 'finished', exitCode: 0, console, options: {} });
const NOTICE = ['stderr', '\n[out of memory: a process of this kernel was killed by its memory cap (maxMem 65536 KB)]\n'];

test('kills there before the first run are not reported; new ones are, once', async (t) => {
  const notices = new OomNotices();
  const handle = kernel(2);
  await notices.begin(handle);
  const quiet = finished();
  await notices.end(handle, quiet);
  t.deepEqual(quiet.console, []);
  handle.kills = 3;
  const killed = finished(['stdout', 'Killed\n']);
  await notices.end(handle, killed);
  t.deepEqual(killed.console, [['stdout', 'Killed\n'], NOTICE]);
  const after = finished();
  await notices.end(handle, after);
  t.deepEqual(after.console, [], 'the same kill is reported once');
});

test('a run that says the kernel died gets no second notice; a result still running gets none', async (t) => {
  const notices = new OomNotices();
  const handle = kernel(0);
  await notices.begin(handle);
  handle.kills = 1;
  const continued: RunResult = { ...finished(), status: 'continued', exitCode: null };
  await notices.end(handle, continued);
  t.deepEqual(continued.console, []);
  const died = finished(['stderr', '\n[kernel died: out-of-memory]\n']);
  await notices.end(handle, died);
  t.is(died.console.length, 1);
});

test('a kernel whose kills cannot be seen gets no notices; a forgotten one takes a new baseline', async (t) => {
  const notices = new OomNotices();
  const blind = kernel(undefined);
  await notices.begin(blind);
  const result = finished();
  await notices.end(blind, result);
  t.deepEqual(result.console, []);

  const restarted = kernel(5);
  await notices.begin(restarted);
  notices.forget('k-1');
  restarted.kills = 0;
  await notices.begin(restarted);
  restarted.kills = 1;
  const fresh = finished();
  await notices.end(restarted, fresh);
  t.deepEqual(fresh.console, [NOTICE]);
});

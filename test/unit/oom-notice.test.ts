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

/** A kernel whose messages carry its count (a gateway's, through its node agent): `asked` counts the calls. */
function carryingKernel(seen: number | undefined, asked: number) {
  return {
    id: 'k-2',
    limits: { maxMemKB: 65536, timeoutMs: 1000, idleTimeoutMs: 0, maxCpuCreditMs: 0 },
    seen,
    asked,
    calls: 0,
    oomKillsSeen() {
      return this.seen;
    },
    async oomKills() {
      this.calls++;
      return this.asked;
    },
  };
}

test('a query that ended on a kernel message takes the count its messages carried, with no call', async (t) => {
  const notices = new OomNotices();
  const handle = carryingKernel(0, 0);
  await notices.begin(handle);
  t.is(handle.calls, 1, 'the baseline is asked for once');
  handle.seen = 1;
  const killed = finished();
  await notices.end(handle, killed, true);
  t.deepEqual(killed.console, [NOTICE]);
  t.is(handle.calls, 1, 'no call at the end of the query');
  const quiet = finished();
  await notices.end(handle, quiet, true);
  t.deepEqual(quiet.console, []);
  t.is(handle.calls, 1);
});

test('a batch run or a timeout asks for the count (nothing carried it), and so does a kernel whose messages carry none', async (t) => {
  const notices = new OomNotices();
  const handle = carryingKernel(0, 0);
  await notices.begin(handle);
  // A batch step killed: the kernel sent nothing since, so the carried count is stale.
  handle.asked = 1;
  const batchRun = finished();
  await notices.end(handle, batchRun, false);
  t.deepEqual(batchRun.console, [NOTICE]);
  t.is(handle.calls, 2);
  handle.asked = 2;
  const timedOut: RunResult = { ...finished(), status: 'exec-timeout', exitCode: null };
  await notices.end(handle, timedOut, true);
  t.deepEqual(timedOut.console, [NOTICE]);
  t.is(handle.calls, 3);
  handle.seen = undefined;
  handle.asked = 3;
  const uncarried = finished();
  await notices.end(handle, uncarried, true);
  t.deepEqual(uncarried.console, [NOTICE]);
  t.is(handle.calls, 4);
});

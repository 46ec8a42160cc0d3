/**
 * `POST /v1/kernel/:id/interrupt` on a batch run, against a real Docker engine and store: the running exec
 * step is stopped inside the container (SIGINT to its processes, SIGKILL to one that ignores it), the
 * steps still to come are skipped, `clean` still runs, and the run ends `finished` with exit code 130, as
 * an interrupted query does; the kernel keeps its variables and runs the next request. The Jupyter
 * interrupt route reaches batch runs the same way.
 */
import test from 'ava';
import { startTestService, type TestService } from '../helpers/service.js';
import { createKernel, runToEnd, type RunOutcome } from '../helpers/v1-client.js';
import { eventually, sleep } from '../helpers/wait.js';

let svc: TestService;
let kernel: string;

test.before(async () => {
  // A short flush window: the run is seen going (continued) before the interrupt.
  svc = await startTestService({ flushWindowMs: 500 });
  kernel = await createKernel(svc.call);
});

test.after.always(async () => {
  await svc?.stop();
});

/** Starts a batch run and returns its runId once its output says the step runs. */
async function startBatch(options: Record<string, unknown>, marker: string): Promise<{ runId: string; seen: string }> {
  let answer = await svc.call('POST', `/v1/kernel/${kernel}`, { mode: 'batch', options });
  let seen = '';
  for (let i = 0; i < 100; i++) {
    if (answer.status !== 200) throw new Error(`batch answered ${answer.status}: ${JSON.stringify(answer.body)}`);
    const result = answer.body.result;
    seen += result.console.map(([, text]: [string, string]) => text).join('');
    if (seen.includes(marker)) return { runId: result.runId, seen };
    if (result.status === 'finished') throw new Error(`batch finished before "${marker}": ${seen}`);
    answer = await svc.call('POST', `/v1/kernel/${kernel}`, { mode: 'continue', runId: result.runId });
  }
  throw new Error(`no "${marker}" in ${seen}`);
}

/** Continues a run to its end. */
const finish = (runId: string): Promise<RunOutcome> => runToEnd(svc.call, kernel, { mode: 'continue', runId });

/** Whether a process whose command line contains `text` runs in the kernel's container. */
async function running(text: string): Promise<boolean> {
  const ps = await runToEnd(svc.call, kernel, { mode: 'batch', options: { exec: 'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\000" " "' } });
  return ps.text.includes(text);
}

test.serial('an interrupt ends a running exec step: finished, exit code 130, later output never comes, clean runs', async (t) => {
  t.timeout(120_000);
  t.is((await runToEnd(svc.call, kernel, { mode: 'query', code: 'kept = 41' })).status, 'finished');
  const { runId, seen } = await startBatch({ exec: 'echo started; sleep 60; echo never', clean: 'echo cleaned > cleaned.txt' }, 'started');
  const started = Date.now();
  const interrupt = await svc.call('POST', `/v1/kernel/${kernel}/interrupt`);
  t.is(interrupt.status, 204);
  const end = await finish(runId);
  t.is(end.status, 'finished');
  t.is(end.exitCode, 130);
  t.false((seen + end.text).includes('never'));
  t.regex(end.text, /\[interrupted\]/);
  t.true(Date.now() - started < 15_000, `${Date.now() - started} ms from the interrupt to the end`);
  t.false(await running('sleep 60'), 'the step\'s sleep is gone');
  // clean ran; the kernel kept its variables and runs the next query.
  t.is((await runToEnd(svc.call, kernel, { mode: 'batch', options: { exec: 'cat cleaned.txt' } })).text, 'cleaned\n');
  const next = await runToEnd(svc.call, kernel, { mode: 'query', code: 'print(kept + 1)' });
  t.is(next.text, '42\n');
});

test.serial('a step that ignores SIGINT is killed after the grace', async (t) => {
  t.timeout(120_000);
  const { runId } = await startBatch({ exec: "trap '' INT; echo stubborn; sleep 60; echo never" }, 'stubborn');
  t.is((await svc.call('POST', `/v1/kernel/${kernel}/interrupt`)).status, 204);
  const end = await finish(runId);
  t.is(end.status, 'finished');
  t.is(end.exitCode, 130);
  t.false(end.text.includes('never'));
  t.true(await eventually(async () => !(await running('sleep 60')), 10_000, 300), 'the step was killed');
});

test.serial('an interrupt during the build skips the exec step', async (t) => {
  t.timeout(120_000);
  const { runId } = await startBatch({ build: 'echo building; sleep 60', exec: 'echo executed' }, 'building');
  t.is((await svc.call('POST', `/v1/kernel/${kernel}/interrupt`)).status, 204);
  const end = await finish(runId);
  t.is(end.status, 'finished');
  t.is(end.exitCode, 130);
  t.false(end.text.includes('executed'));
  t.false(end.results.some((r) => r.status === 'build-finished'));
});

test.serial('the Jupyter interrupt route stops a batch run too', async (t) => {
  t.timeout(120_000);
  const { runId } = await startBatch({ exec: 'echo looping; while true; do sleep 1; done' }, 'looping');
  t.is((await svc.call('POST', `/api/kernels/${kernel}/interrupt`)).status, 204);
  const end = await finish(runId);
  t.is(end.status, 'finished');
  t.is(end.exitCode, 130);
  await sleep(200);
  t.is((await runToEnd(svc.call, kernel, { mode: 'batch', options: { exec: 'echo after' } })).text, 'after\n');
});

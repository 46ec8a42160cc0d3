/**
 * Batch interrupt racing the batch's clean step (src/runs/batch.ts): `clean` is what leaves the work
 * directory as after any run, so an interrupt that arrives while it runs (the exec step already over) must
 * not stop it — else a client's interrupt timed after its program leaves the work directory uncleaned.
 */
import test from 'ava';
import { startTestService, type TestService } from '../helpers/service.js';
import { createKernel, runToEnd } from '../helpers/v1-client.js';
import { sleep } from '../helpers/wait.js';

let svc: TestService;

test.before(async () => {
  svc = await startTestService({ flushWindowMs: 20_000 });
});

test.after.always(async () => {
  await svc?.stop();
});

test('an interrupt that arrives during the clean step does not stop it: the work directory is cleaned, and the run ends as its exec did', async (t) => {
  t.timeout(120_000);
  const id = await createKernel(svc.call);
  const results: string[] = [];
  for (let round = 0; round < 4; round++) {
    // exec ends at once and leaves a file; clean takes a while and removes it, then says it ran to its end.
    const run = runToEnd(svc.call, id, {
      mode: 'batch',
      options: { exec: 'echo run > left.txt; echo exec-done', clean: 'sleep 1.5; rm -f left.txt; touch clean-ran' },
    });
    // Into the clean step: exec is over by then on a loaded machine too (it is two builtins).
    await sleep(900);
    const interrupt = await svc.call('POST', `/v1/kernel/${id}/interrupt`);
    t.is(interrupt.status, 204);
    const end = await run;
    const after = await runToEnd(svc.call, id, { mode: 'batch', options: { exec: 'ls; rm -f clean-ran' } });
    results.push(`round ${round}: ${end.status} exit ${end.exitCode} ${JSON.stringify(end.text)} | work dir: ${JSON.stringify(after.text)}`);
  }
  for (const line of results) t.log(line);
  for (const line of results) {
    t.regex(line, /clean-ran/, 'the clean step ran to its end');
    t.notRegex(line, /left\.txt/, 'what the run left was cleaned');
    t.notRegex(line, /\[clean exited/, 'the clean step was not stopped');
  }
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

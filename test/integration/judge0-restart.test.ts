/**
 * A restart loses no submission: the service runs as its own process (Redis store), ten submissions are
 * queued, the process is killed (SIGKILL: no shutdown of any kind; or SIGTERM, a graceful stop that aborts
 * the runs under way) while some are finished, one or two are running and the rest wait; a new process
 * of the same instance runs every unfinished one, and none that had finished runs again (its finished_at
 * and output are unchanged).
 */
import test from 'ava';
import { containersOfInstance } from '../helpers/docker.js';
import { redisUrl } from '../helpers/service.js';
import { startServiceProcess, type ServiceProcess } from '../helpers/service-process.js';
import { removeSubmissions } from './judge0-cleanup.js';
import { poll, PYTHON } from './judge0-helpers.js';

const ENV = { REDIS_URL: redisUrl, POLYKERNEL_JUDGE0_WORKERS: '2' };

for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
  test(`queued and processing submissions run after a ${signal} of the service; finished ones are not run again`, async (t) => {
    if (!redisUrl) return t.fail('REDIS_URL is not set: a restart needs a store that outlives the process');
    t.timeout(480_000);
    let first: ServiceProcess | undefined;
    let second: ServiceProcess | undefined;
    let instance = '';
    try {
      first = await startServiceProcess({ label: 'judge0-restart', env: ENV });
      instance = first.instance;
      const tokens: string[] = [];
      for (let i = 0; i < 10; i++) {
        const answer = await first.http.call('POST', '/submissions', { language_id: PYTHON, source_code: `import time\ntime.sleep(1.5)\nprint(${i})` });
        t.is(answer.status, 201, JSON.stringify(answer.body));
        tokens.push(answer.body.token);
      }
      // Kill it once at least one has finished and at least one still waits.
      const finishedBefore = new Map<string, { finished_at: string; stdout: string }>();
      const deadline = Date.now() + 240_000;
      for (;;) {
        const batch = await first.http.call('GET', `/submissions/batch?tokens=${tokens.join(',')}&fields=token,status_id,finished_at,stdout`);
        const done = batch.body.submissions.filter((s: { status_id: number }) => s.status_id > 2);
        if (done.length >= 1) {
          for (const s of done) finishedBefore.set(s.token, s);
          break;
        }
        if (Date.now() > deadline) throw new Error('nothing finished before the kill');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      first.signal(signal);
      await first.stop();
      first = undefined;
      t.true(finishedBefore.size < 10, 'some were still unfinished at the kill');

      second = await startServiceProcess({ label: 'judge0-restart', instance, env: ENV });
      for (const [i, token] of tokens.entries()) {
        const r = await poll(second.http.call.bind(second.http), token, '?fields=token,status,stdout,finished_at', 240_000);
        t.deepEqual(r.status, { id: 3, description: 'Accepted' }, token);
        t.is(r.stdout, `${i}\n`);
        const before = finishedBefore.get(token);
        if (before) t.is(r.finished_at, before.finished_at, 'a finished submission is never run again');
      }
      await second.stop();
      second = undefined;
      t.deepEqual(containersOfInstance(instance), [], 'no sandbox of the instance is left');
    } finally {
      await first?.stop();
      await second?.stop();
      if (instance) await removeSubmissions(redisUrl, instance);
    }
  });
}

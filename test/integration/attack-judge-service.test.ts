/**
 * Strangers sending the judging APIs anything, on a real service process: a flood of Piston executes
 * with big inputs fills the judging line (503 past it) without growing the service's memory beyond the
 * line's bound, and the line drains; /connect sockets that never say what to run are closed, and ones
 * that go away mid-compile leave no sandbox behind.
 */
import test from 'ava';
import { containersOfInstance, docker } from '../helpers/docker.js';
import { openPiston } from '../helpers/piston-ws.js';
import { startServiceProcess, type ServiceProcess } from '../helpers/service-process.js';

const QUEUE = 20;
let svc: ServiceProcess;

test.before(async () => {
  svc = await startServiceProcess({
    label: 'attack-judge',
    // debug: a failure shows what the service did with each sandbox.
    env: { POLYKERNEL_JUDGE_CONCURRENCY: '1', POLYKERNEL_JUDGE_QUEUE_SIZE: String(QUEUE), POLYKERNEL_LOG_LEVEL: 'debug' },
  });
});

test.after.always(async () => {
  await svc?.stop();
});

const until = async (check: () => boolean, ms: number) => {
  for (const end = Date.now() + ms; Date.now() < end && !check(); ) await new Promise((resolve) => setTimeout(resolve, 100));
};

test.serial('1000 Piston executes of 0.5 MB each: 503 past the line, the service\'s RSS bounded, the line drains', async (t) => {
  t.timeout(300_000);
  const stdin = 'x'.repeat(500_000);
  const body = { language: 'python3', version: '*', files: [{ content: 'import sys, time\nsys.stdin.read()\ntime.sleep(1)\nprint("done")' }], stdin };
  const warm = await svc.http.call('POST', '/api/v2/execute', body);
  t.is(warm.status, 200, JSON.stringify(warm.body).slice(0, 300));
  const baseline = svc.rssKB();
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, svc.rssKB())), 50);
  const statuses = new Map<number, number>();
  const pending: Promise<void>[] = [];
  try {
    for (let wave = 0; wave < 10; wave++) {
      const answers = await Promise.all(
        Array.from({ length: 100 }, () => {
          const call = svc.http.call('POST', '/api/v2/execute', body);
          const status = call.then((answer) => {
            statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
            if (answer.status === 200) t.is(answer.body.run.stdout, 'done\n');
            else t.regex(answer.body.message, /queue is full/);
          });
          pending.push(status);
          // A wave waits for the refusals only: the accepted ones wait in the line meanwhile.
          return Promise.race([status, new Promise((resolve) => setTimeout(resolve, 3000))]);
        }),
      );
      t.is(answers.length, 100);
    }
    await Promise.all(pending);
  } finally {
    clearInterval(sampler);
  }
  const growth = peak - baseline;
  t.log(`statuses ${JSON.stringify([...statuses])}; RSS baseline ${baseline} KB, peak ${peak} KB, growth ${growth} KB`);
  t.deepEqual([...statuses.keys()].sort(), [200, 503]);
  t.true(statuses.get(503)! > 500, 'most were refused at once');
  // 500 MB were sent; the line holds at most 21 of them.
  t.true(growth < 250 * 1024, `the service's RSS grew ${growth} KB`);
  const after = await svc.http.call('POST', '/api/v2/execute', { ...body, stdin: '' });
  t.is(after.status, 200);
});

test.serial('180 /connect sockets (under the per-address cap of 256) that never send init are closed (4001); ones that go mid-compile leave no sandbox', async (t) => {
  t.timeout(180_000);
  const baseline = svc.rssKB();
  const sockets = await Promise.all(Array.from({ length: 180 }, () => openPiston(svc.url)));
  const codes = await Promise.all(sockets.map((socket) => Promise.race([socket.closed.then((c) => c.code), new Promise<number>((resolve) => setTimeout(() => resolve(-1), 30_000))])));
  t.deepEqual([...new Set(codes)], [4001]);
  t.log(`RSS with 180 idle sockets: ${baseline} -> ${svc.rssKB()} KB`);
  // Ten clients start a C compile and go away at once.
  for (let i = 0; i < 10; i++) {
    const socket = await openPiston(svc.url);
    socket.send({ type: 'init', language: 'c', version: '*', files: [{ content: '#include <unistd.h>\nint main(void){sleep(60);return 0;}' }] });
    if (i % 2) await socket.next('runtime').catch(() => undefined);
    socket.ws.terminate();
  }
  // Each goes at the latest when its run's wall-time limit ends it; a loaded machine makes them slowly.
  await until(() => containersOfInstance(svc.instance).length === 0, 120_000);
  const left = containersOfInstance(svc.instance);
  if (left.length) t.log(`left: ${docker('inspect', '--format', '{{.Id}} {{.State.Status}} {{.State.StartedAt}} {{.State.FinishedAt}}', ...left)}\nservice log:\n${svc.stderr()}`);
  t.deepEqual(left, [], 'no sandbox left once the clients went');
});

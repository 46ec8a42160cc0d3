/**
 * Kernels that keep going after their query: a thread that prints forever (its output must not count as
 * activity, so the idle culler still removes the kernel), and detached CPU burners in a kernel that
 * reports idle (stopped by the idle-CPU budget, also when the burner hides in short-lived processes that
 * exit before a sampler could see them). A query longer than the idle timeout is not culled the moment it
 * ends: idle time counts from the end of the last client request.
 */
import test from 'ava';
import { startTestService } from '../helpers/service.js';
import { createKernel, kernelGone, query } from '../helpers/v1-client.js';
import { eventually, sleep } from '../helpers/wait.js';

test.serial('a kernel printing in a detached thread is culled after the idle timeout', async (t) => {
  t.timeout(120_000);
  const svc = await startTestService({ statsIntervalMs: 250, idleTimeoutMs: 3000, flushWindowMs: 20_000 });
  try {
    const printer = await createKernel(svc.call, { lang: 'python3' });
    const started = await query(
      svc.call,
      printer,
      'import threading, time\n' +
        'def chatter():\n' +
        '    while True:\n' +
        '        print("tick", flush=True)\n' +
        '        time.sleep(0.1)\n' +
        'threading.Thread(target=chatter, daemon=True).start()\nprint("started")',
    );
    t.regex(started.text, /started/);
    const from = Date.now();
    const culled = await kernelGone(svc.call, printer, 25_000, 250);
    t.log(`printing kernel ${culled ? `culled after ${Date.now() - from} ms` : 'still alive after 25 s'}`);
    t.true(culled, 'the printing kernel is culled');
    t.regex((await svc.call('GET', `/v1/kernel/${printer}`)).body.detail, /idle timeout/);

    // A query that runs longer than the idle timeout: idle counts from its end, not its start.
    const worker = await createKernel(svc.call, { lang: 'python3' });
    t.is((await query(svc.call, worker, 'import time\ntime.sleep(5)\nprint("done")')).text, 'done\n');
    await sleep(1000);
    t.is((await svc.call('GET', `/v1/kernel/${worker}`)).status, 200, 'not culled right after a long query ended');
    t.true(await kernelGone(svc.call, worker, 20_000, 250), 'and culled once idle for the timeout');
  } finally {
    await svc.stop();
  }
});

// Burners started by a query that returned at once. The kernel's query timeout is 2 s; the budget lets a
// kernel use 1.5 s of CPU per 10 s once no request of a client has been in progress for that long.
const BURNERS: [name: string, code: string][] = [
  ['a detached process', 'import subprocess, sys\nsubprocess.Popen([sys.executable, "-c", "while True: pass"])\nprint("started")'],
  [
    'short-lived processes, each gone before the next sample',
    'import subprocess, sys, threading\n' +
      'def respawn():\n' +
      '    while True:\n' +
      '        subprocess.run([sys.executable, "-c", "import time\\nt = time.time()\\nwhile time.time() - t < 0.15: pass"])\n' +
      'threading.Thread(target=respawn, daemon=True).start()\nprint("started")',
  ],
];

for (const [name, code] of BURNERS) {
  test.serial(`a CPU burner in an idle kernel is stopped by the idle-CPU budget: ${name}`, async (t) => {
    t.timeout(120_000);
    const svc = await startTestService({ statsIntervalMs: 500, idleCpuMs: 1500, idleCpuWindowMs: 10_000 } as never);
    try {
      const id = await createKernel(svc.call, { lang: 'python3', resourceLimits: { timeout: 2000 } });
      t.regex((await query(svc.call, id, code)).text, /started/);
      const from = Date.now();
      let cpuSeen = 0;
      const stopped = await eventually(async () => {
        const info = await svc.call('GET', `/v1/kernel/${id}`);
        if (info.status === 200) cpuSeen = info.body.cpuCreditUsed;
        return info.status === 404;
      }, 40_000, 500);
      t.log(`${name}: ${stopped ? `stopped after ${Date.now() - from} ms` : 'still running after 40 s'}; CPU credit last seen ${cpuSeen} ms`);
      t.true(stopped, 'the burner is stopped');
      const detail = (await svc.call('GET', `/v1/kernel/${id}`)).body.detail;
      t.regex(detail, /CPU/);
      t.regex(detail, /POLYKERNEL_IDLE_CPU_MS/, 'the reason names the option');
      // A kernel that only sits idle keeps running.
      const calm = await createKernel(svc.call, { lang: 'python3', resourceLimits: { timeout: 2000 } });
      await sleep(12_000);
      t.is((await query(svc.call, calm, 'print("calm")')).text, 'calm\n');
    } finally {
      await svc.stop();
    }
  });
}

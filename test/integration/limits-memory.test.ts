/**
 * maxMem (issue #6): a program that allocates past it is killed by the kernel's memory cap, the v1 API
 * reports it, Jupyter clients see the kernel die, and the host and the other kernels are unaffected.
 * Under runc and runsc (where any OOM kill takes the whole sandbox down: the host kills the sentry).
 */
import test from 'ava';
import { startTestService, type TestService } from '../helpers/service.js';
import { JupyterWs } from '../helpers/jupyter-ws.js';
import { containersOfKernel } from '../helpers/docker.js';
import type { Call } from '../helpers/http-client.js';
import { batch, createKernel, query } from '../helpers/v1-client.js';
import { eventually } from '../helpers/wait.js';
import { channelsUrl } from '../helpers/jupyter-client.js';

const RUNTIMES = ['runc', 'runsc'] as const;
/** Enough for an idle ipykernel under either runtime (runsc's sentry adds about 50 MB), far below 512 MB. */
const MAX_MEM_KB = 192 * 1024;
const ALLOCATE_512MB = 'x = b"\\x01" * (512 * 2**20)\nprint("still here")';

const services = new Map<string, TestService>();
const callOf = (runtime: string): Call => services.get(runtime)!.call;

test.before(async () => {
  for (const runtime of RUNTIMES) services.set(runtime, await startTestService({ containerRuntime: runtime, flushWindowMs: 20_000 }));
});

test.after.always(async () => {
  for (const svc of services.values()) await svc.stop();
});

/** The text of every stderr item of a run. */
const stderrOf = (console: [string, unknown][]) => console.filter(([kind]) => kind === 'stderr').map(([, text]) => text).join('');

for (const runtime of RUNTIMES) {
  test.serial(`${runtime}: a query allocating past maxMem kills the kernel; v1 reports out of memory; the others live on`, async (t) => {
    const svc = services.get(runtime)!;
    const call = callOf(runtime);
    const bystander = await createKernel(call, { lang: 'python3' });
    const victim = await createKernel(call, { lang: 'python3', resourceLimits: { maxMem: MAX_MEM_KB } });
    await query(call, victim, 'print("warm")');
    const outcome = await query(call, victim, ALLOCATE_512MB);
    t.is(outcome.status, 'finished');
    t.is(outcome.exitCode, 137);
    t.regex(stderrOf(outcome.console), /\[kernel died: out-of-memory\]/);
    t.notRegex(outcome.text, /still here/);
    // Documented: the kernel is gone; GET answers 404 and says why.
    const gone = await call('GET', `/v1/kernel/${victim}`);
    t.is(gone.status, 404);
    t.regex(gone.body.detail, /gone \(out-of-memory\)/);
    await svc.service.kernels.settled();
    t.is(containersOfKernel(victim), '');
    t.is((await query(call, bystander, 'print(6 * 7)')).text, '42\n', 'the other kernel still answers');
    await call('DELETE', `/v1/kernel/${bystander}`);
  });
}

test.serial('runc: a subprocess past maxMem is killed; the kernel lives on and the run says out of memory', async (t) => {
  const call = callOf('runc');
  const id = await createKernel(call, { lang: 'python3', resourceLimits: { maxMem: MAX_MEM_KB } });
  const outcome = await query(
    call,
    id,
    `import subprocess\nr = subprocess.run(["python3", "-c", ${JSON.stringify(ALLOCATE_512MB)}])\nprint("child exit", r.returncode)`,
  );
  t.is(outcome.status, 'finished');
  t.regex(outcome.text, /child exit -9/);
  t.regex(stderrOf(outcome.console), /\[out of memory: a process of this kernel was killed by its memory cap \(maxMem 196608 KB\)\]/);
  const next = await query(call, id, 'print("alive")');
  t.is(next.text, 'alive\n', 'the kernel answers, and a run without an OOM kill carries no notice');
  await call('DELETE', `/v1/kernel/${id}`);
});

test.serial('runc: a batch step past maxMem is killed (137); the kernel lives on and the run says out of memory', async (t) => {
  const call = callOf('runc');
  const id = await createKernel(call, { lang: 'python3', resourceLimits: { maxMem: MAX_MEM_KB } });
  // Every image has coreutils: tail -c keeps the last N bytes in memory.
  const outcome = await batch(call, id, 'head -c 600M /dev/zero | tail -c 600M > /dev/null');
  t.is(outcome.status, 'finished');
  t.not(outcome.exitCode, 0);
  t.regex(stderrOf(outcome.console), /\[out of memory: a process of this kernel was killed/);
  t.is((await query(call, id, 'print("alive")')).text, 'alive\n');
  await call('DELETE', `/v1/kernel/${id}`);
});

test.serial('runc: a Jupyter client sees execution_state "dead", then the socket closes with the reason', async (t) => {
  const svc = services.get('runc')!;
  const created = await svc.call('POST', '/api/kernels', { name: 'python3' });
  t.is(created.status, 201);
  const id = created.body.id as string;
  const ws = await JupyterWs.open(channelsUrl(svc.url, id));
  try {
    // The default cap (POLYKERNEL_DEFAULT_MAX_MEM_KB, 256 MB): allocate well past it.
    const msgId = ws.send('shell', 'execute_request', {
      code: 'x = b"\\x01" * (1024 * 2**20)',
      silent: false,
      store_history: true,
      user_expressions: {},
      allow_stdin: false,
      stop_on_error: true,
    });
    const dead = await ws.next((m) => m.header.msg_type === 'status' && m.content.execution_state === 'dead', 30_000, 'a dead status');
    t.is(dead.channel, 'iopub');
    t.true(await eventually(() => ws.closed !== undefined, 10_000), 'the socket closes');
    t.regex(ws.closed!.reason, /out-of-memory/);
    t.falsy(ws.received.find((m) => m.parent_header.msg_id === msgId && m.header.msg_type === 'execute_reply' && m.content.status === 'ok'));
  } finally {
    await ws.close();
  }
  t.is((await svc.call('GET', `/api/kernels/${id}`)).status, 404);
});

test.serial('runc, POLYKERNEL_RESTART_DEAD_KERNELS: the dead kernel restarts in place; v1 and Jupyter clients carry on', async (t) => {
  const svc = await startTestService({ restartDeadKernels: true, flushWindowMs: 20_000 });
  try {
    const id = await createKernel(svc.call, { lang: 'python3', resourceLimits: { maxMem: MAX_MEM_KB } });
    await query(svc.call, id, 'before = 1');
    const ws = await JupyterWs.open(channelsUrl(svc.url, id));
    try {
      const outcome = await query(svc.call, id, ALLOCATE_512MB);
      t.is(outcome.exitCode, 137);
      t.regex(stderrOf(outcome.console), /\[kernel died: out-of-memory\]/);
      await ws.next((m) => m.header.msg_type === 'status' && m.content.execution_state === 'restarting', 30_000, 'a restarting status');
      // The same kernel id answers again, as a fresh kernel (its globals are gone).
      t.true(await eventually(async () => (await svc.call('GET', `/v1/kernel/${id}`)).body?.state === 'idle', 30_000));
      t.is((await query(svc.call, id, 'print("before" in globals())')).text, 'False\n');
      const { stdout } = await ws.execute('print(6 * 7)');
      t.is(stdout, '42\n', 'the Jupyter client carries on over the same socket');
      t.is(ws.closed, undefined);
    } finally {
      await ws.close();
    }
    await svc.call('DELETE', `/v1/kernel/${id}`);
  } finally {
    await svc.stop();
  }
});

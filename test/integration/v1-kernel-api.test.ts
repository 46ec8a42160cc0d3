/**
 * The v1 kernel API against a real Docker engine and store: the curl flow of the README, REPL
 * continuity by clientSessionToken, input, restart, limits and errors.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connectionDirOf } from '../../src/kernels/conn-dir.js';
import { startTestService, type TestService } from '../helpers/service.js';
import { createKernel } from '../helpers/v1-client.js';
import { sleep } from '../helpers/wait.js';
import { containersOfKernel } from '../helpers/docker.js';

let svc: TestService;

test.before(async () => {
  // A long flush window: every query here answers once, finished, however loaded the machine is.
  svc = await startTestService({ flushWindowMs: 60_000 });
});

test.after.always(async () => {
  await svc?.stop();
});

test('create, run print(6*7), delete: 42 comes back and the container is gone', async (t) => {
  const id = await createKernel(svc.call, { lang: 'python3', clientSessionToken: 'demo-42' });
  t.regex(id, /^[0-9a-f-]{36}$/);
  const { status, body } = await svc.call('POST', `/v1/kernel/${id}`, { mode: 'query', code: 'print(6*7)' });
  t.is(status, 200);
  t.is(body.result.status, 'finished');
  t.is(body.result.exitCode, 0);
  t.deepEqual(body.result.console, [['stdout', '42\n']]);
  t.truthy(containersOfKernel(id));
  const deleted = await svc.call('DELETE', `/v1/kernel/${id}`);
  t.is(deleted.status, 204);
  const connDir = connectionDirOf(svc.config.stateDir, svc.config.instance, id);
  t.false(existsSync(connDir), 'the socket directory is gone when DELETE answers');
  // The container is force-removed in the background (see KernelManager.destroy).
  await svc.service.kernels.settled();
  t.is(containersOfKernel(id), '');
  t.is((await svc.call('GET', `/v1/kernel/${id}`)).status, 404);
});

test('the kernel container is sandboxed: no network, read-only root, non-root, capped memory', async (t) => {
  const id = await createKernel(svc.call, { lang: 'python3', resourceLimits: { maxMem: 131072, timeout: 10000 } });
  const code = [
    'import os, socket, subprocess',
    'print("uid", os.getuid())',
    'try:',
    '    socket.create_connection(("1.1.1.1", 53), timeout=2); print("net ok")',
    'except OSError as e: print("net blocked")',
    'try:',
    '    open("/etc/x", "w"); print("rootfs writable")',
    'except OSError: print("rootfs read-only")',
    'open("/home/work/f", "w").write("ok"); print("workdir writable")',
    'print("ifaces", sorted(os.listdir("/sys/class/net")))',
  ].join('\n');
  const { body } = await svc.call('POST', `/v1/kernel/${id}`, { mode: 'query', code });
  const out = body.result.console.map((item: [string, string]) => item[1]).join('');
  t.regex(out, /uid 1000/);
  t.regex(out, /net blocked/);
  t.regex(out, /rootfs read-only/);
  t.regex(out, /workdir writable/);
  t.regex(out, /ifaces \['lo'\]/);
  const containerId = containersOfKernel(id);
  const hostConfig = JSON.parse(
    execFileSync('/usr/bin/docker', ['inspect', '--format', '{{json .HostConfig}}', containerId], { encoding: 'utf8' }),
  );
  t.is(hostConfig.NetworkMode, 'none');
  t.is(hostConfig.Memory, 131072 * 1024);
  t.is(hostConfig.MemorySwap, 131072 * 1024);
  t.true(hostConfig.ReadonlyRootfs);
  t.deepEqual(hostConfig.CapDrop, ['ALL']);
  t.true(hostConfig.PidsLimit > 0);
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

test('the same clientSessionToken continues the same kernel; after delete it starts a new one', async (t) => {
  const first = await svc.call('POST', '/v1/kernel/create', { lang: 'python3', clientSessionToken: 'repl-1' });
  t.is(first.status, 201);
  await svc.call('POST', `/v1/kernel/${first.body.kernelId}`, { mode: 'query', code: 'counter = 41' });
  const again = await svc.call('POST', '/v1/kernel/create', { lang: 'python', clientSessionToken: 'repl-1' });
  t.is(again.status, 200);
  t.is(again.body.kernelId, first.body.kernelId);
  const { body } = await svc.call('POST', `/v1/kernel/${again.body.kernelId}`, { mode: 'query', code: 'print(counter + 1)' });
  t.deepEqual(body.result.console, [['stdout', '42\n']]);
  const otherLang = await svc.call('POST', '/v1/kernel/create', { lang: 'nosuchlang', clientSessionToken: 'repl-1' });
  t.is(otherLang.status, 400);
  await svc.call('DELETE', `/v1/kernel/${first.body.kernelId}`);
  const fresh = await svc.call('POST', '/v1/kernel/create', { lang: 'python3', clientSessionToken: 'repl-1' });
  t.is(fresh.status, 201, 'a token whose kernel was deleted starts a new kernel');
  t.not(fresh.body.kernelId, first.body.kernelId);
  await svc.call('DELETE', `/v1/kernel/${fresh.body.kernelId}`);
});

test('input(): waiting-input, then the answer through mode "input"', async (t) => {
  const id = await createKernel(svc.call);
  const asked = await svc.call('POST', `/v1/kernel/${id}`, {
    mode: 'query',
    runId: 'ask-1',
    code: 'name = input("name? ")\nprint("hello", name)',
  });
  t.is(asked.body.result.status, 'waiting-input');
  t.deepEqual(asked.body.result.console, [['stdout', 'name? ']]);
  const answered = await svc.call('POST', `/v1/kernel/${id}`, { mode: 'input', runId: 'ask-1', code: 'Ada' });
  t.is(answered.body.result.status, 'finished');
  t.deepEqual(answered.body.result.console, [['stdout', 'hello Ada\n']]);
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

test('a raising query finishes with exitCode 1 and the traceback on stderr', async (t) => {
  const id = await createKernel(svc.call);
  const { body } = await svc.call('POST', `/v1/kernel/${id}`, { mode: 'query', code: '1/0' });
  t.is(body.result.status, 'finished');
  t.is(body.result.exitCode, 1);
  t.is(body.result.console[0][0], 'stderr');
  t.regex(body.result.console[0][1], /ZeroDivisionError/);
  t.notRegex(body.result.console[0][1], /\x1b\[/, 'ANSI colour codes are stripped');
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

test('a query never makes the kernel refuse the next: one sent while a failing one runs still runs', async (t) => {
  const id = await createKernel(svc.call);
  // The second reaches the kernel while the first is running, so it waits in the kernel's queue when the
  // first fails: with stop_on_error the kernel would answer it "aborted" without running it.
  const failing = svc.call('POST', `/v1/kernel/${id}`, { mode: 'query', code: 'import time\ntime.sleep(1)\n1/0' });
  await sleep(300);
  const next = await svc.call('POST', `/v1/kernel/${id}`, { mode: 'query', code: 'print("ran")' });
  t.is((await failing).body.result.exitCode, 1);
  t.is(next.body.result.status, 'finished');
  t.deepEqual(next.body.result.console, [['stdout', 'ran\n']], JSON.stringify(next.body.result));
  t.is(next.body.result.exitCode, 0);
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

test('a long query answers "continued" with output so far, then "continue" finishes it', async (t) => {
  const local = await startTestService({ flushWindowMs: 1000 });
  try {
    const { body: created } = await local.call('POST', '/v1/kernel/create', { lang: 'python3' });
    const id = created.kernelId;
    const first = await local.call('POST', `/v1/kernel/${id}`, {
      mode: 'query',
      code: 'import time\nprint("a", flush=True)\ntime.sleep(4)\nprint("b")',
    });
    // The code runs for 4 s, so the first answer comes at the 1 s flush window, unfinished.
    t.is(first.body.result.status, 'continued');
    t.is(first.body.result.exitCode, null);
    let result = first.body.result;
    const outputs: string[] = result.console.map((item: [string, string]) => item[1]);
    let answers = 1;
    while (result.status === 'continued') {
      result = (await local.call('POST', `/v1/kernel/${id}`, { mode: 'continue', runId: first.body.result.runId })).body.result;
      outputs.push(...result.console.map((item: [string, string]) => item[1]));
      answers++;
    }
    t.is(result.status, 'finished');
    t.is(result.exitCode, 0);
    t.true(answers >= 3, `answers: ${answers}`);
    t.is(outputs.join(''), 'a\nb\n', 'each answer carries only what is new, in order');
    const again = await local.call('POST', `/v1/kernel/${id}`, { mode: 'continue', runId: first.body.result.runId });
    t.is(again.status, 404, 'a finished run cannot be continued');
  } finally {
    await local.stop();
  }
});

test('a query past the kernel timeout ends with exec-timeout and destroys the kernel', async (t) => {
  const id = await createKernel(svc.call, { lang: 'python3', resourceLimits: { timeout: 1000 } });
  const { body } = await svc.call('POST', `/v1/kernel/${id}`, { mode: 'query', code: 'import time\ntime.sleep(30)' });
  t.is(body.result.status, 'exec-timeout');
  // Destruction runs right after the timeout fires.
  for (let i = 0; i < 50 && (await svc.call('GET', `/v1/kernel/${id}`)).status !== 404; i++) await sleep(100);
  t.is((await svc.call('GET', `/v1/kernel/${id}`)).status, 404);
  await svc.service.kernels.settled();
  t.is(containersOfKernel(id), '');
});

test('GET reports the seed\'s info fields; PATCH resets globals but keeps age and CPU credit', async (t) => {
  const id = await createKernel(svc.call, { lang: 'python3', resourceLimits: { maxMem: 262144, timeout: 20000 } });
  await svc.call('POST', `/v1/kernel/${id}`, { mode: 'query', code: 'x = sum(i*i for i in range(3_000_000))' });
  // Let the usage sampler see the kernel at least once.
  await sleep(svc.config.statsIntervalMs + 500);
  const before = (await svc.call('GET', `/v1/kernel/${id}`)).body;
  t.is(before.lang, 'python3');
  t.is(before.queryTimeout, 20000);
  t.is(before.numQueriesExecuted, 1);
  t.true(before.age >= before.idle);
  t.true(before.memoryUsed > 1000, `memoryUsed ${before.memoryUsed} KB`);
  t.true(before.cpuCreditUsed > 0, `cpuCreditUsed ${before.cpuCreditUsed} ms`);
  for (const field of ['idleTimeout', 'maxCpuCredit']) t.is(typeof before[field], 'number');
  const patched = await svc.call('PATCH', `/v1/kernel/${id}`);
  t.is(patched.status, 204);
  const { body } = await svc.call('POST', `/v1/kernel/${id}`, { mode: 'query', code: 'print("x" in globals())' });
  t.deepEqual(body.result.console, [['stdout', 'False\n']]);
  await sleep(svc.config.statsIntervalMs + 500);
  const after = (await svc.call('GET', `/v1/kernel/${id}`)).body;
  t.true(after.age > before.age);
  t.true(after.cpuCreditUsed >= before.cpuCreditUsed, `${after.cpuCreditUsed} >= ${before.cpuCreditUsed}`);
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

test('bad input gets a clear 4xx JSON problem, never a 500', async (t) => {
  const cases: [string, string, unknown, number, RegExp][] = [
    ['POST', '/v1/kernel/create', '{"lang":', 400, /not valid JSON/],
    ['POST', '/v1/kernel/create', {}, 400, /lang is required/],
    ['POST', '/v1/kernel/create', { lang: 42 }, 400, /lang must be a string/],
    ['POST', '/v1/kernel/create', { lang: 'cobol' }, 400, /unknown lang "cobol"; available: .*python3/],
    ['POST', '/v1/kernel/create', { lang: 'python3', resourceLimits: { maxMem: 'lots' } }, 400, /resourceLimits.maxMem must be a whole number/],
    ['POST', '/v1/kernel/create', { lang: 'python3', resourceLimits: { maxMem: 1e9 } }, 406, /exceeds this server's limit/],
    ['POST', '/v1/kernel/create', { lang: 'python3', resourceLimits: { timeout: 1e9 } }, 406, /exceeds this server's limit/],
    ['POST', '/v1/kernel/create', { lang: 'python3', extra: 1 }, 400, /unknown field "extra"/],
    ['GET', '/v1/kernel/not-a-uuid', undefined, 400, /not a kernel id/],
    ['GET', '/v1/kernel/00000000-0000-4000-8000-000000000000', undefined, 404, /no kernel/],
    ['DELETE', '/v1/kernel/00000000-0000-4000-8000-000000000000', undefined, 404, /no kernel/],
    ['PATCH', '/v1/kernel/00000000-0000-4000-8000-000000000000', undefined, 404, /no kernel/],
    ['POST', '/v1/kernel/00000000-0000-4000-8000-000000000000', { mode: 'query', code: '1' }, 404, /no kernel/],
    ['POST', '/v1/kernel/00000000-0000-4000-8000-000000000000', { mode: 'sing' }, 400, /mode must be one of/],
    ['POST', '/v1/kernel/create', 'x'.repeat(2 * 1024 * 1024), 413, /larger than/],
  ];
  for (const [method, route, body, status, message] of cases) {
    const response = await svc.call(method, route, body);
    t.is(response.status, status, `${method} ${route} ${JSON.stringify(body)?.slice(0, 60)}`);
    t.regex(response.body.detail, message);
    t.is(response.body.status, status);
  }
});

test('KG_AUTH_TOKEN: requests without the token get 401; header or ?token= pass', async (t) => {
  const secured = await startTestService({ authToken: 's3cret' });
  try {
    const none = await secured.call('GET', '/v1/kernel/00000000-0000-4000-8000-000000000000');
    t.is(none.status, 401);
    t.regex(none.body.detail, /authentication required/);
    const wrong = await secured.call('GET', '/v1/kernel/00000000-0000-4000-8000-000000000000', undefined, { authorization: 'token nope' });
    t.is(wrong.status, 401);
    for (const headers of [{ authorization: 'token s3cret' }, { authorization: 'Bearer s3cret' }]) {
      t.is((await secured.call('GET', '/v1/kernel/00000000-0000-4000-8000-000000000000', undefined, headers)).status, 404);
    }
    t.is((await secured.call('GET', '/v1/kernel/00000000-0000-4000-8000-000000000000?token=s3cret')).status, 404);
  } finally {
    await secured.stop();
  }
});

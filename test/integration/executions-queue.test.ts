/**
 * /api/executions beyond the original (issue #5), with Redis: ten executions submitted at once under a
 * limit of two all complete (queued, never more than two at a time), and execution records outlive a
 * restart of the service, where the ones it cut off (running, queued, or left by a crash) are marked
 * `error: interrupted by restart`.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RedisStore } from '../../src/store/redis-store.js';
import { redisUrl, startTestService, type TestService } from '../helpers/service.js';
import { sleep } from '../helpers/wait.js';
import { containersOfInstance } from '../helpers/docker.js';

const instance = `test-exec-${randomUUID().slice(0, 8)}`;
const redisPrefix = `${instance}:`;
let svc: TestService | undefined;
let base: string;
let root: string;

const start = () => startTestService({ notebookRoot: root, maxConcurrentExecutions: 2, instance, redisPrefix }, 'redis');

test.before(async () => {
  if (!redisUrl) throw new Error('REDIS_URL is not set: these tests need Redis');
  base = await mkdtemp(path.join(os.tmpdir(), 'pk-execq-'));
  root = path.join(base, 'root');
  await cp(path.resolve('test/fixtures/notebooks'), root, { recursive: true });
  await chmod(root, 0o755);
  svc = await start();
});

test.after.always(async () => {
  await svc?.stop();
  await rm(base, { recursive: true, force: true });
});

async function form(method: string, route: string, fields?: Record<string, string>, headers: Record<string, string> = {}) {
  const response = await fetch(svc!.url + route, { method, headers, body: fields ? new URLSearchParams(fields) : undefined });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : '' };
}

const get = async (id: string) => (await form('GET', `/api/executions/${id}`)).body.execution;
const finished = (execution: any) => execution.status === 'completed' || execution.status.startsWith('error:');

async function waitFor(ids: string[], done: (execution: any) => boolean, timeoutMs = 120_000): Promise<any[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const executions = await Promise.all(ids.map(get));
    if (executions.every(done)) return executions;
    const ended = executions.find((e) => finished(e) && !done(e));
    if (ended) throw new Error(`execution ${ended.exec_id} ended as "${ended.status}"`);
    if (Date.now() > deadline) throw new Error(`not there yet: ${executions.map((e) => e.status).join(', ')}`);
    await sleep(250);
  }
}

test.serial('ten executions submitted at once with a limit of two all complete, never more than two at a time', async (t) => {
  const began = Date.now();
  const replies = await Promise.all(
    Array.from({ length: 10 }, (_, i) => form('POST', '/api/executions', { notebook: 'quick.ipynb', x: String(i) })),
  );
  t.deepEqual(replies.map((r) => r.status), Array(10).fill(202));
  t.true(replies.every((r) => r.body.execution.status === 'initializing'));
  const ids = replies.map((r) => r.body.execution.exec_id as string);
  const early = await Promise.all(ids.map(get));
  t.true(early.filter((e) => e.started_at !== null).length <= 2);

  const done = await waitFor(ids, finished);
  const elapsed = Date.now() - began;
  t.log(`10 executions, limit 2: ${elapsed} ms`);
  t.true(done.every((e) => e.status === 'completed'), done.map((e) => e.status).join(', '));
  // At no instant did more than two run: count the [started_at, completed_at] intervals over each start.
  for (const e of done) {
    const overlapping = done.filter((o) => o.started_at <= e.started_at && e.started_at < o.completed_at);
    t.true(overlapping.length <= 2, `${overlapping.length} ran at ${e.started_at}`);
  }
  const outputs = done.map((e) => e.output_path as string).sort();
  t.is(new Set(outputs).size, 10);
  t.true(outputs.every((p) => /^quick-Executed\d+\.ipynb$/.test(p)));
  const files = outputs.map((p) => path.join(root, p));
  execFileSync('/usr/bin/python3', ['-c', 'import nbformat,sys\nfor f in sys.argv[1:]: nbformat.validate(nbformat.read(f, as_version=4))', ...files], { stdio: 'pipe' });
  // Each run got its own parameter value.
  const printed = done.map((e) => JSON.parse(readFileSync(path.join(root, e.output_path), 'utf8')).cells.at(-1).outputs[0].text);
  t.deepEqual(new Set(printed), new Set(Array.from({ length: 10 }, (_, i) => `x = ${i}\n`)));
});

test.serial('records outlive a restart; executions cut off by it are marked "error: interrupted by restart"', async (t) => {
  const completed = (await form('GET', '/api/executions')).body.executions;
  t.is(completed.length, 10);
  // One after another, so that the queue's order is this order: the third waits.
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push((await form('POST', '/api/executions', { notebook: 'slow.ipynb' })).body.execution.exec_id);
  const running = await waitFor(ids.slice(0, 2), (e) => e.progress === '2/3');
  t.true(running.every((e) => e.status === 'executing'));
  t.is((await get(ids[2]!)).status, 'initializing');
  await svc!.stop();
  svc = undefined;

  // A crash leaves records behind that nobody finished: one of this instance, one of another instance.
  const store = new RedisStore(redisUrl, redisPrefix);
  await store.ready();
  const crashed = { ...completed[0], exec_id: randomUUID(), status: 'executing', completed_at: null, instance, created_at: Date.now() / 1000, kernel_id: null };
  const foreign = { ...crashed, exec_id: randomUUID(), instance: 'another-instance' };
  await store.put('executions', crashed.exec_id, crashed);
  await store.put('executions', foreign.exec_id, foreign);
  await store.close();

  svc = await start();
  const after = new Map(((await form('GET', '/api/executions')).body.executions as any[]).map((e) => [e.exec_id, e]));
  t.is(after.size, 15);
  for (const e of completed) t.is(after.get(e.exec_id).status, 'completed');
  for (const id of [...ids, crashed.exec_id]) {
    t.is(after.get(id).status, 'error: interrupted by restart', id);
    t.is(typeof after.get(id).completed_at, 'number');
  }
  t.is(after.get(foreign.exec_id).status, 'executing');
  // The two that ran wrote what they had; the queued one never started.
  t.truthy(after.get(ids[0]).output_path);
  t.is(after.get(ids[2]).output_path, null);
  t.is(after.get(ids[2]).started_at, null);
  t.deepEqual(containersOfInstance(instance), []);

  const deleted = await form('DELETE', '/api/executions', undefined, { 'x-response-encoding': 'chunked' });
  t.is(deleted.status, 202);
  t.deepEqual((await form('GET', '/api/executions')).body.executions, []);
});

/**
 * Judge0's API through HTTP (createApp, the real middleware and routes) on a fake engine: what each route
 * answers, Judge0's error bodies, the fields filter, base64 both ways, batches, paging, delete, the
 * X-Auth-Token / X-Auth-User headers, and a full queue. The real engine is behind the integration tests
 * (test/integration/judge0-*.test.ts); this pins the API's own behaviour.
 */
import test from 'ava';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config/index.js';
import { createJudge0Runtime } from '../../src/api/judge0/runtime.js';
import type { KernelManager } from '../../src/kernels/kernel-manager.js';
import { silentLogger } from '../../src/logger.js';
import type { QueryService } from '../../src/runs/query-service.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { jsonCall } from '../helpers/http-client.js';
import { accepted, deferred, FakeJudge, result, run, type Judging } from '../helpers/fake-judge.js';
import { KeysFile } from '../helpers/tenant-keys.js';

async function serve(t: { teardown: (fn: () => unknown) => void }, judging: Judging = (s) => accepted(s.tests[0]!.stdin), config: Partial<Config> = {}) {
  const cfg = loadConfig({}, { instance: 'unit', ...config });
  const store = new MemoryStore();
  const judge = new FakeJudge(judging);
  const judge0 = createJudge0Runtime({ config: cfg, store, engine: judge, log: silentLogger });
  await judge0.start();
  const app = createApp({ config: cfg, log: silentLogger, kernels: {} as KernelManager, queries: {} as QueryService, store, judge, judge0 });
  const server = http.createServer(app.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.teardown(async () => {
    await judge0.stop();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url, call: jsonCall(url), judge, judge0 };
}

const PY = 71;

test('POST /submissions answers 201 {token}; GET answers the 8 default fields; wait=true answers the result', async (t) => {
  const { call } = await serve(t);
  const created = await call('POST', '/submissions', { source_code: 'print(input())', language_id: PY, stdin: 'world' });
  t.is(created.status, 201);
  t.deepEqual(Object.keys(created.body), ['token']);
  let got = await call('GET', `/submissions/${created.body.token}`);
  for (let i = 0; i < 100 && got.body.status.id <= 2; i++) got = await call('GET', `/submissions/${created.body.token}`);
  t.is(got.status, 200);
  t.deepEqual(Object.keys(got.body), ['stdout', 'time', 'memory', 'stderr', 'token', 'compile_output', 'message', 'status']);
  t.is(got.body.stdout, 'world');
  t.deepEqual(got.body.status, { id: 3, description: 'Accepted' });
  const waited = await call('POST', '/submissions?wait=true&fields=stdout,status_id,language_id', { source_code: 'x', language_id: '71', stdin: 'now' });
  t.is(waited.status, 201);
  t.deepEqual(waited.body, { language_id: 71, stdout: 'now', status_id: 3 });
});

test('422 per field as Judge0; 400 for invalid fields; 404 for an unknown token; errors are {"error"}', async (t) => {
  const { call } = await serve(t);
  const missing = await call('POST', '/submissions', { source_code: 'x' });
  t.is(missing.status, 422);
  t.deepEqual(missing.body, { language_id: ["can't be blank"] });
  const capped = await call('POST', '/submissions', { source_code: 'x', language_id: PY, cpu_time_limit: 100 });
  t.deepEqual(capped.body, { cpu_time_limit: ['must be less than or equal to 15'] });
  const fields = await call('GET', '/submissions/8531f293-1585-4d36-a34c-73726792e6c9?fields=stdout,nope');
  t.is(fields.status, 400);
  t.deepEqual(fields.body, { error: 'invalid fields: [nope]' });
  const unknown = await call('GET', '/submissions/8531f293-1585-4d36-a34c-73726792e6c9');
  t.is(unknown.status, 404);
  t.regex(unknown.body.error, /doesn't exist/);
  t.is((await call('GET', '/submissions/not-a-token')).status, 404);
  const bad = await call('POST', '/submissions', '{"source_code": ');
  t.is(bad.status, 400);
  t.regex(bad.body.error, /not valid JSON/);
  const big = await call('POST', '/submissions', { source_code: 'x'.repeat(2 * 1024 * 1024), language_id: PY });
  t.is(big.status, 413);
  t.regex(big.body.error, /larger than/);
});

test('base64: round trip of bytes; raw output that is not UTF-8 is Judge0\'s 400, and with wait its 201 {token, error}', async (t) => {
  const { call } = await serve(t, () => accepted(Buffer.from([0xfe, 0xff, 0x0a])));
  const created = await call('POST', '/submissions?base64_encoded=true&wait=true', { source_code: Buffer.from('print(1)').toString('base64'), language_id: PY });
  t.is(created.status, 201);
  t.deepEqual([...Buffer.from(created.body.stdout, 'base64')], [0xfe, 0xff, 0x0a]);
  t.is(created.body.stdout, '/v8K\n');
  const raw = await call('GET', `/submissions/${created.body.token}`);
  t.is(raw.status, 400);
  t.deepEqual(raw.body, { error: 'some attributes for this submission cannot be converted to UTF-8, use base64_encoded=true query parameter' });
  const waited = await call('POST', '/submissions?wait=true', { source_code: 'print(1)', language_id: PY });
  t.is(waited.status, 201);
  t.deepEqual(Object.keys(waited.body).sort(), ['error', 'token']);
});

test('batch: tokens and errors in order, 20 at most; GET by tokens with null for unknown ones', async (t) => {
  const { call } = await serve(t);
  const created = await call('POST', '/submissions/batch', { submissions: [
    { language_id: PY, source_code: 'a', stdin: 'one' },
    { language_id: 123456789, source_code: 'b' },
    { language_id: PY, source_code: '' },
  ] });
  t.is(created.status, 201);
  t.truthy(created.body[0].token);
  t.deepEqual(created.body[1], { language_id: ["language with id 123456789 doesn't exist"] });
  t.deepEqual(created.body[2], { source_code: ["can't be blank"] });
  const none = await call('POST', '/submissions/batch', { submissions: [{ source_code: 'x' }] });
  t.is(none.status, 422);
  const tooMany = await call('POST', '/submissions/batch', { submissions: Array(21).fill({ language_id: PY, source_code: 'x' }) });
  t.is(tooMany.status, 400);
  t.deepEqual(tooMany.body, { error: 'number of submissions in a batch should be less than or equal to 20' });
  t.deepEqual((await call('POST', '/submissions/batch', { submissions: [] })).body, { error: 'there should be at least one submission in a batch' });
  const tokens = [created.body[0].token, '8531f293-1585-4d36-a34c-73726792e6c9'].join(',');
  let got = await call('GET', `/submissions/batch?tokens=${tokens}&fields=token,stdout,status_id`);
  for (let i = 0; i < 100 && got.body.submissions[0].status_id <= 2; i++) got = await call('GET', `/submissions/batch?tokens=${tokens}&fields=token,stdout,status_id`);
  t.deepEqual(got.body, { submissions: [{ stdout: 'one', status_id: 3, token: created.body[0].token }, null] });
});

test('GET /submissions pages newest first with Judge0\'s meta; bad page numbers are 400', async (t) => {
  const { call } = await serve(t);
  const tokens: string[] = [];
  for (let i = 0; i < 5; i++) tokens.push((await call('POST', '/submissions?wait=true', { language_id: PY, source_code: `${i}` })).body.token);
  const page = await call('GET', '/submissions?page=2&per_page=2&fields=token');
  t.is(page.status, 200);
  t.deepEqual(page.body.meta, { current_page: 2, next_page: 3, prev_page: 1, total_pages: 3, total_count: 5 });
  t.deepEqual(page.body.submissions, [{ token: tokens[2] }, { token: tokens[1] }]);
  t.deepEqual((await call('GET', '/submissions?page=-4')).body, { error: 'invalid page: -4' });
  t.deepEqual((await call('GET', '/submissions?per_page=-2')).body, { error: 'invalid per_page: -2' });
});

test('DELETE: refused unless enabled; then only finished ones, answered in Base64', async (t) => {
  const off = await serve(t);
  const token = (await off.call('POST', '/submissions?wait=true', { language_id: PY, source_code: 'x', stdin: 'gone' })).body.token;
  t.deepEqual((await off.call('DELETE', `/submissions/${token}`)).body, { error: 'delete not allowed' });
  const gate = deferred<void>();
  const on = await serve(t, async (s) => {
    if (s.tests[0]!.stdin.toString() === 'hold') await gate.promise;
    return accepted(s.tests[0]!.stdin);
  }, { judge0EnableSubmissionDelete: true, judge0Workers: 1 });
  const done = (await on.call('POST', '/submissions?wait=true', { language_id: PY, source_code: 'x', stdin: 'gone' })).body.token;
  const held = (await on.call('POST', '/submissions', { language_id: PY, source_code: 'x', stdin: 'hold' })).body.token;
  const queued = (await on.call('POST', '/submissions', { language_id: PY, source_code: 'x', stdin: 'q' })).body.token;
  const deleted = await on.call('DELETE', `/submissions/${done}`);
  t.is(deleted.status, 200);
  t.is(deleted.body.stdout, 'Z29uZQ==\n');
  t.is((await on.call('GET', `/submissions/${done}`)).status, 404);
  t.deepEqual((await on.call('DELETE', `/submissions/${queued}`)).body, { error: 'submission cannot be deleted because its status is 1 (In Queue)' });
  t.deepEqual((await on.call('DELETE', `/submissions/${held}`)).body, { error: 'submission cannot be deleted because its status is 2 (Processing)' });
  gate.resolve();
});

test('a full queue is 503 {"error": "queue is full"}, as Judge0', async (t) => {
  const { call, judge } = await serve(t, () => new Promise(() => undefined), { judge0Workers: 1, judge0MaxQueueSize: 1 });
  await call('POST', '/submissions', { language_id: PY, source_code: 'x' });
  for (let i = 0; i < 100 && judge.judged.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  t.is((await call('POST', '/submissions', { language_id: PY, source_code: 'x' })).status, 201);
  const full = await call('POST', '/submissions', { language_id: PY, source_code: 'x' });
  t.is(full.status, 503);
  t.deepEqual(full.body, { error: 'queue is full' });
  const workers = await call('GET', '/workers');
  t.like(workers.body[0], { size: 1, available: 1, working: 1, idle: 0 });
});

test('wait=true is refused when the server does not allow it', async (t) => {
  const { call } = await serve(t, undefined, { judge0EnableWait: false });
  const answer = await call('POST', '/submissions?wait=true', { language_id: PY, source_code: 'x' });
  t.is(answer.status, 400);
  t.deepEqual(answer.body, { error: 'wait not allowed' });
});

test('X-Auth-Token authenticates as Judge0\'s header; X-Auth-User authorizes listing', async (t) => {
  const { call } = await serve(t, undefined, { authToken: 'admin-secret-token', judge0AuthzToken: 'authz-secret' });
  t.is((await call('GET', '/languages')).status, 401);
  t.is((await call('GET', '/languages', undefined, { 'X-Auth-Token': 'wrong' })).status, 401);
  const ok = await call('GET', '/languages', undefined, { 'X-Auth-Token': 'admin-secret-token' });
  t.is(ok.status, 200);
  t.deepEqual(ok.body, [{ id: 50, name: 'C (gcc 12.2.0)' }, { id: 71, name: 'Python (3.11.2)' }]);
  t.is((await call('POST', '/authenticate', undefined, { 'X-Auth-Token': 'admin-secret-token' })).status, 200);
  t.is((await call('POST', '/authorize', undefined, { 'X-Auth-Token': 'admin-secret-token', 'X-Auth-User': 'nope' })).status, 200); // the admin token is everything
  t.is((await call('GET', '/submissions?X-Auth-Token=admin-secret-token', undefined, { 'X-Auth-User': 'authz-secret' })).status, 200);
});

test('in the open mode with an authorization token set, listing needs X-Auth-User (403 without)', async (t) => {
  const { call } = await serve(t, undefined, { judge0AuthzToken: 'authz-secret' });
  t.is((await call('GET', '/submissions')).status, 403);
  t.is((await call('GET', '/submissions', undefined, { 'X-Auth-User': 'authz-secret' })).status, 200);
  t.is((await call('POST', '/authorize')).status, 403);
});

test('languages, statuses, config_info, about, version, system_info', async (t) => {
  const { call, url } = await serve(t);
  t.deepEqual((await call('GET', '/languages/71')).body, { id: 71, name: 'Python (3.11.2)', is_archived: false, source_file: 'main.py', compile_cmd: null, run_cmd: 'python3 main.py' });
  t.is((await call('GET', '/languages/4')).status, 404);
  t.deepEqual((await call('GET', '/languages/all')).body[0], { id: 50, name: 'C (gcc 12.2.0)', is_archived: false });
  const statuses = (await call('GET', '/statuses')).body;
  t.is(statuses.length, 16);
  t.deepEqual(statuses[2], { id: 3, description: 'Accepted' });
  const info = (await call('GET', '/config_info')).body;
  t.like(info, { cpu_time_limit: 5, max_cpu_time_limit: 15, memory_limit: 128000, max_submission_batch_size: 20, enable_wait_result: true, allow_enable_network: false });
  t.truthy((await call('GET', '/about')).body.version);
  const version = await fetch(`${url}/version`);
  t.regex(await version.text(), /^\d+\.\d+\.\d+/);
  t.truthy((await call('GET', '/system_info')).body['CPU(s)']);
});

test('test_cases: one submission, a result per test; the deciding one speaks for it', async (t) => {
  const { call, judge } = await serve(t, (s) => result(s.tests.map((test, i) => run({ verdict: i === 1 ? 'wrong_answer' : 'accepted', stdout: test.stdin }))));
  const answer = await call('POST', '/submissions?wait=true', { language_id: PY, source_code: 'x', test_cases: [{ stdin: 'a', expected_output: 'a' }, { stdin: 'b', expected_output: 'c' }, { stdin: 'd' }] });
  t.is(judge.judged.length, 1);
  t.is(judge.judged[0]!.tests.length, 3);
  t.deepEqual(answer.body.status, { id: 4, description: 'Wrong Answer' });
  t.is(answer.body.stdout, 'b');
  t.deepEqual(answer.body.test_results.map((r: { status: { id: number } }) => r.status.id), [3, 4, 3]);
  t.is(answer.body.compilations, 0, 'in the default fields of a submission with test_cases');
});

test('tenants: a key sees only its own submissions, by token, in a batch and in the list', async (t) => {
  const keys = await KeysFile.create([{ id: 'alice', key: 'alice-key-0123456789' }, { id: 'bob', key: 'bob-key-0123456789ab' }]);
  t.teardown(() => keys.remove());
  const { call } = await serve(t, undefined, { apiKeysFile: keys.file });
  const alice = { 'X-Auth-Token': 'alice-key-0123456789' };
  const bob = { 'X-Auth-Token': 'bob-key-0123456789ab' };
  const token = (await call('POST', '/submissions?wait=true', { language_id: PY, source_code: 'x', stdin: 'secret' }, alice)).body.token;
  t.is((await call('GET', `/submissions/${token}`, undefined, alice)).body.stdout, 'secret');
  const foreign = await call('GET', `/submissions/${token}`, undefined, bob);
  t.is(foreign.status, 404);
  t.deepEqual((await call('GET', `/submissions/batch?tokens=${token}`, undefined, bob)).body, { submissions: [null] });
  t.is((await call('GET', '/submissions', undefined, bob)).body.meta.total_count, 0);
  t.is((await call('GET', '/submissions', undefined, alice)).body.meta.total_count, 1);
});

/**
 * Judge0's API on the real judge engine (real Docker sandboxes, real Redis), through HTTP as a Judge0
 * client speaks it: A+B in every language (one batch), the classic verdicts, wait=true and polling, a
 * batch of 20, a callback to a loopback listener that fails its first try, Base64 both ways with output
 * that is not UTF-8, many test cases compiled once, and bad inputs that are 4xx and say what to fix.
 */
import test from 'ava';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { redisUrl, startTestService, type TestService } from '../helpers/service.js';
import { removeSubmissions } from './judge0-cleanup.js';
import { A_PLUS_B, C, C_PROGRAMS, poll, PYTHON } from './judge0-helpers.js';

let svc: TestService;

test.before(async () => {
  svc = await startTestService({ judge0CallbackHosts: ['127.0.0.1'], judge0CallbackBackoffMs: 200, judge0Workers: 2 });
  const languages = await svc.call('GET', '/languages');
  if (languages.status !== 200) throw new Error(`GET /languages answered ${languages.status}: is the judge engine wired into the service (src/main.ts)?`);
});

test.after.always(async () => {
  await svc?.stop();
  if (svc) await removeSubmissions(redisUrl, svc.config.instance);
});

const submitAndWait = async (body: Record<string, unknown>, query = '') => {
  const answer = await svc.call('POST', `/submissions?wait=true${query}`, body);
  if (answer.status !== 201) throw new Error(`POST answered ${answer.status}: ${JSON.stringify(answer.body)}`);
  return answer.body.status.id <= 2 ? poll(svc.call, answer.body.token, query.replace(/^&/, '?')) : answer.body;
};

test.serial('GET /languages lists Judge0 ids with our versions; A+B is accepted in every language (one batch)', async (t) => {
  t.timeout(600_000);
  const languages = (await svc.call('GET', '/languages')).body as { id: number; name: string }[];
  const ids = languages.map((l) => l.id).sort((a, b) => a - b);
  t.deepEqual(ids, Object.keys(A_PLUS_B).map(Number).sort((a, b) => a - b));
  const c = languages.find((l) => l.id === C)!;
  t.regex(c.name, /^C \(.*\d+\.\d+/);
  const entries = Object.entries(A_PLUS_B);
  const created = await svc.call('POST', '/submissions/batch', {
    submissions: entries.map(([id, { source }]) => ({ language_id: Number(id), source_code: source, stdin: '20 22\n', expected_output: '42\n' })),
  });
  t.is(created.status, 201);
  const results = await Promise.all(created.body.map((item: { token: string }) => poll(svc.call, item.token, '', 480_000)));
  entries.forEach(([id, { name }], i) => {
    const r = results[i];
    t.deepEqual(r.status, { id: 3, description: 'Accepted' }, `${name} (${id}): ${JSON.stringify(r)}`);
    t.is(r.stdout, '42\n', name);
    t.regex(r.time, /^\d+\.\d+$/, name);
    t.true(Number.isInteger(r.memory) && r.memory > 0, name);
  });
});

test('wrong answer, with the program\'s output', async (t) => {
  const r = await submitAndWait({ language_id: PYTHON, source_code: 'print(int(input()) * 2)', stdin: '21', expected_output: '43' });
  t.deepEqual(r.status, { id: 4, description: 'Wrong Answer' });
  t.is(r.stdout, '42\n');
});

test('an endless loop is Time Limit Exceeded, and time says it ran about the limit', async (t) => {
  const r = await submitAndWait({ language_id: C, source_code: C_PROGRAMS.endless, cpu_time_limit: 1, cpu_extra_time: 0.5 }, '&fields=status,time,wall_time,message');
  t.deepEqual(r.status, { id: 5, description: 'Time Limit Exceeded' });
  t.true(Number(r.time) >= 1, r.time);
  t.regex(r.message, /^Time limit exceeded/);
});

test('a 1 GB allocation is Memory Limit Exceeded (15)', async (t) => {
  const r = await submitAndWait({ language_id: C, source_code: C_PROGRAMS.gigabyte, memory_limit: 65536 });
  t.deepEqual(r.status, { id: 15, description: 'Memory Limit Exceeded' });
});

test('a null dereference is SIGSEGV (7), exit_signal 11', async (t) => {
  const r = await submitAndWait({ language_id: C, source_code: C_PROGRAMS.nullDeref }, '&fields=status,exit_signal,message');
  t.deepEqual(r.status, { id: 7, description: 'Runtime Error (SIGSEGV)' });
  t.is(r.exit_signal, 11);
  t.is(r.message, 'Caught fatal signal 11');
});

test('a division by zero is SIGFPE (9)', async (t) => {
  const r = await submitAndWait({ language_id: C, source_code: C_PROGRAMS.divideByZero });
  t.deepEqual(r.status, { id: 9, description: 'Runtime Error (SIGFPE)' });
});

test('a non-zero exit is NZEC (11) with its exit code', async (t) => {
  const r = await submitAndWait({ language_id: PYTHON, source_code: 'import sys\nprint("bye", file=sys.stderr)\nsys.exit(3)' }, '&fields=status,exit_code,stderr,message');
  t.deepEqual(r.status, { id: 11, description: 'Runtime Error (NZEC)' });
  t.is(r.exit_code, 3);
  t.is(r.stderr, 'bye\n');
  t.is(r.message, 'Exited with error status 3');
});

test('a compile error is Compilation Error (6) with the compiler\'s output', async (t) => {
  const r = await submitAndWait({ language_id: C, source_code: C_PROGRAMS.compileError });
  t.deepEqual(r.status, { id: 6, description: 'Compilation Error' });
  t.regex(r.compile_output, /error/);
  t.is(r.stdout, null);
  t.is(r.time, null);
});

test('output past the cap is Output Limit Exceeded (16), with the output before the cut', async (t) => {
  const r = await submitAndWait({ language_id: C, source_code: C_PROGRAMS.flood });
  t.deepEqual(r.status, { id: 16, description: 'Output Limit Exceeded' });
  t.true(r.stdout.length > 1000);
  t.true(r.stdout.startsWith('xxxxxxxx'));
});

test('polling: In Queue / Processing, then the result; wait=true gives the same', async (t) => {
  const created = await svc.call('POST', '/submissions', { language_id: PYTHON, source_code: 'import time\ntime.sleep(0.5)\nprint("late")' });
  t.is(created.status, 201);
  t.deepEqual(Object.keys(created.body), ['token']);
  const first = await svc.call('GET', `/submissions/${created.body.token}?fields=status`);
  t.true([1, 2, 3].includes(first.body.status.id));
  const done = await poll(svc.call, created.body.token, '?fields=*');
  t.is(done.stdout, 'late\n');
  t.is(done.language_id, PYTHON);
  t.truthy(done.created_at);
  t.truthy(done.finished_at);
  t.true(Date.parse(done.finished_at) >= Date.parse(done.created_at));
  t.true(Number(done.wall_time) >= 0.5);
});

test('a batch of 20, read back with GET /submissions/batch', async (t) => {
  t.timeout(300_000);
  const created = await svc.call('POST', '/submissions/batch', {
    submissions: Array.from({ length: 20 }, (_, i) => ({ language_id: PYTHON, source_code: `print(${i} * ${i})` })),
  });
  t.is(created.status, 201);
  const tokens = created.body.map((item: { token: string }) => item.token);
  t.is(new Set(tokens).size, 20);
  const deadline = Date.now() + 240_000;
  let answer;
  do {
    await new Promise((resolve) => setTimeout(resolve, 250));
    answer = await svc.call('GET', `/submissions/batch?tokens=${tokens.join(',')}&fields=token,stdout,status_id`);
    t.is(answer.status, 200);
  } while (answer.body.submissions.some((s: { status_id: number }) => s.status_id <= 2) && Date.now() < deadline);
  answer.body.submissions.forEach((s: { token: string; stdout: string; status_id: number }, i: number) => {
    t.is(s.token, tokens[i]);
    t.is(s.status_id, 3);
    t.is(s.stdout, `${i * i}\n`);
  });
});

test('a callback to a loopback listener: a PUT of the result, retried after the listener failed once', async (t) => {
  const hits: { method: string; body: any }[] = [];
  const listener = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      hits.push({ method: req.method!, body: JSON.parse(body) });
      res.writeHead(hits.length === 1 ? 503 : 200).end();
    });
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => listener.close(() => resolve())));
  const url = `http://127.0.0.1:${(listener.address() as AddressInfo).port}/judged`;
  const created = await svc.call('POST', '/submissions', { language_id: PYTHON, source_code: 'print("called back")', callback_url: url });
  t.is(created.status, 201);
  const deadline = Date.now() + 120_000;
  while (hits.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  t.is(hits.length, 2);
  t.is(hits[1]!.method, 'PUT');
  t.is(hits[1]!.body.token, created.body.token);
  t.deepEqual(hits[1]!.body.status, { id: 3, description: 'Accepted' });
  // Judge0 sends the callback Base64 encoded.
  t.is(Buffer.from(hits[1]!.body.stdout, 'base64').toString(), 'called back\n');
  await new Promise((resolve) => setTimeout(resolve, 1000));
  t.is(hits.length, 2, 'no try after a delivered one');
});

test('Base64 both ways; output that is not UTF-8 needs base64_encoded=true', async (t) => {
  const source = 'import sys\nsys.stdout.buffer.write(bytes([0xfe, 0xff, 0x00, 0x41]) + sys.stdin.buffer.read())';
  const stdin = Buffer.from([0x80, 0x0a]);
  const created = await svc.call('POST', '/submissions?base64_encoded=true&wait=true', {
    language_id: PYTHON,
    source_code: Buffer.from(source).toString('base64'),
    stdin: stdin.toString('base64'),
  });
  t.is(created.status, 201);
  const token = created.body.token;
  const done = created.body.status.id <= 2 ? await poll(svc.call, token, '?base64_encoded=true') : created.body;
  t.deepEqual([...Buffer.from(done.stdout, 'base64')], [0xfe, 0xff, 0x00, 0x41, 0x80, 0x0a]);
  t.true(done.stdout.endsWith('\n'), 'encoded as Ruby\'s encode64');
  const raw = await svc.call('GET', `/submissions/${token}`);
  t.is(raw.status, 400);
  t.deepEqual(raw.body, { error: 'some attributes for this submission cannot be converted to UTF-8, use base64_encoded=true query parameter' });
  const waitedRaw = await svc.call('POST', '/submissions?wait=true', { language_id: PYTHON, source_code: 'import sys\nsys.stdout.buffer.write(b"\\xfe")' });
  t.is(waitedRaw.status, 201);
  if (waitedRaw.body.error) t.regex(waitedRaw.body.error, /base64_encoded=true/);
  else t.true(waitedRaw.body.status.id <= 2, 'only an unfinished submission renders without the error');
});

test('50 test cases of one C program: compiled once, a result per test', async (t) => {
  const cases = Array.from({ length: 50 }, (_, i) => ({ stdin: `${i} ${i}\n`, expected_output: i === 37 ? 'wrong\n' : `${2 * i}\n` }));
  const r = await submitAndWait({ language_id: C, source_code: A_PLUS_B[C]!.source, test_cases: cases }, '&fields=status,stdout,test_results,compilations');
  t.is(r.compilations, 1);
  t.is(r.test_results.length, 50);
  t.deepEqual(r.status, { id: 4, description: 'Wrong Answer' });
  t.is(r.stdout, '74\n');
  r.test_results.forEach((test: { status: { id: number }; stdout: string }, i: number) => {
    t.is(test.status.id, i === 37 ? 4 : 3);
    t.is(test.stdout, `${2 * i}\n`);
  });
});

test('bad inputs are 4xx that say what to fix', async (t) => {
  const cases: [string, string, unknown, number, RegExp][] = [
    ['POST', '/submissions', { source_code: 'x' }, 422, /language_id.*can't be blank/],
    ['POST', '/submissions', { language_id: 9999, source_code: 'x' }, 422, /language with id 9999 doesn't exist/],
    ['POST', '/submissions', { language_id: PYTHON }, 422, /source_code.*can't be blank/],
    ['POST', '/submissions', { language_id: PYTHON, source_code: 'x', cpu_time_limit: 100 }, 422, /cpu_time_limit.*less than or equal to 15/],
    ['POST', '/submissions', { language_id: PYTHON, source_code: 'x', memory_limit: 10_000_000 }, 422, /memory_limit.*less than or equal to/],
    ['POST', '/submissions', { language_id: PYTHON, source_code: 'x', enable_network: true }, 422, /no network/],
    ['POST', '/submissions', { language_id: PYTHON, source_code: 'x', callback_url: 'http://169.254.169.254/' }, 422, /callback_url.*not allowed/],
    ['POST', '/submissions', { language_id: PYTHON, source_code: 'x', additional_files: 'bm90IGEgemlw' }, 422, /additional_files.*not a zip/],
    ['POST', '/submissions', { language_id: PYTHON, source_code: 'x', number_of_runs: 1000 }, 422, /number_of_runs/],
    ['POST', '/submissions', '{"language_id": ', 400, /not valid JSON/],
    ['POST', '/submissions?fields=bogus', { language_id: PYTHON, source_code: 'x' }, 400, /invalid fields: \[bogus\]/],
    ['POST', '/submissions?base64_encoded=true', { language_id: PYTHON, source_code: '!!!' }, 422, /Base64/],
    ['POST', '/submissions/batch', { submissions: [] }, 400, /at least one submission/],
    ['GET', '/submissions/batch', undefined, 400, /at least one submission/],
    ['GET', '/submissions/00000000-0000-0000-0000-000000000000', undefined, 404, /doesn't exist/],
    ['GET', '/submissions?page=0', undefined, 400, /invalid page: 0/],
    ['DELETE', '/submissions/00000000-0000-0000-0000-000000000000', undefined, 400, /delete not allowed/],
    ['GET', '/languages/1', undefined, 404, /language with id 1 doesn't exist/],
  ];
  for (const [method, route, body, status, message] of cases) {
    const answer = await svc.call(method, route, body);
    t.is(answer.status, status, `${method} ${route} ${JSON.stringify(body)}: ${JSON.stringify(answer.body)}`);
    t.regex(JSON.stringify(answer.body), message, `${method} ${route}`);
  }
});

/**
 * Piston's REST API on the real judge engine (real Docker sandboxes), through the npm package
 * piston-client, unchanged, and through raw HTTP: A+B in C and Python, a compile error (the compile stage,
 * repeated as `run` as Piston answers), a timeout that keeps the unflushed output before it (piston#180),
 * an output flood stopped with a status that says so (piston#301), SIGSEGV, base64 and hex files, several
 * files, the runtimes list, a client that hangs up ending its run, and every bad input a 4xx with
 * Piston's `{message}`.
 */
import http from 'node:http';
import test from 'ava';
import piston from 'piston-client';
import { containersOfInstance } from '../helpers/docker.js';
import { startTestService, type TestService } from '../helpers/service.js';
import { eventually } from '../helpers/wait.js';

let svc: TestService;
let client: ReturnType<typeof piston>;

test.before(async () => {
  svc = await startTestService({ authToken: 'piston-test-token' });
  // piston-client takes only a server URL: the token travels as its password (HTTP Basic).
  client = piston({ server: svc.url.replace('http://', 'http://piston:piston-test-token@') });
});

test.after.always(async () => {
  await svc?.stop();
});

const AUTH = { authorization: 'token piston-test-token' };
const execute = (body: unknown) => svc.call('POST', '/api/v2/execute', body, AUTH);

const C_APLUSB = '#include <stdio.h>\nint main(void) { long a, b; if (scanf("%ld %ld", &a, &b) != 2) return 2; printf("%ld\\n", a + b); return 0; }\n';
const PY_APLUSB = 'a, b = map(int, input().split())\nprint(a + b)\n';

test('runtimes: Piston\'s names, semver versions and aliases, readable by piston-client', async (t) => {
  const runtimes = (await client.runtimes()) as Array<{ language: string; version: string; aliases: string[] }>;
  t.true(Array.isArray(runtimes), JSON.stringify(runtimes));
  const python = runtimes.find((rt) => rt.language === 'python');
  const c = runtimes.find((rt) => rt.language === 'c');
  t.truthy(python, JSON.stringify(runtimes));
  t.truthy(c, JSON.stringify(runtimes));
  t.regex(python!.version, /^3\.\d+\.\d+$/);
  t.regex(c!.version, /^\d+\.\d+\.\d+$/);
  t.true(python!.aliases.includes('py'));
  t.true(python!.aliases.includes('python3'));
  for (const rt of runtimes) t.deepEqual(Object.keys(rt).filter((key) => !['language', 'version', 'aliases', 'runtime'].includes(key)), []);
});

test('A+B in Python through piston-client', async (t) => {
  const result = await client.execute('python', PY_APLUSB, { stdin: '2 3', args: [] });
  t.is(result.language, 'python', JSON.stringify(result));
  t.is(result.run.stdout, '5\n');
  t.is(result.run.output, '5\n');
  t.is(result.run.code, 0);
  t.is(result.run.signal, null);
  t.is(result.run.status, null);
  t.is(result.run.message, null);
  t.true(result.run.cpu_time >= 0 && result.run.wall_time > 0 && result.run.memory > 0, JSON.stringify(result.run));
  t.false('compile' in result);
});

test('A+B in C through piston-client: a compile stage, then the run', async (t) => {
  const result = await client.execute('c', C_APLUSB, { stdin: '40 2\n' });
  t.is(result.compile?.code, 0, JSON.stringify(result));
  t.is(result.run.stdout, '42\n', JSON.stringify(result));
  t.is(result.run.code, 0);
});

test('a compile error: compile.code is not 0, its stderr says why, and nothing ran (run repeats the compile stage, as Piston)', async (t) => {
  const { status, body } = await execute({ language: 'c', version: '*', files: [{ name: 'main.c', content: 'int main(void) { return undeclared_thing; }\n' }] });
  t.is(status, 200, JSON.stringify(body));
  t.not(body.compile.code, 0);
  t.regex(body.compile.stderr, /undeclared_thing/);
  t.is(body.compile.status, 'RE');
  t.deepEqual(body.run, body.compile);
});

test('a timeout keeps the output printed (and not flushed) before it, and says TO', async (t) => {
  const { status, body } = await execute({
    language: 'python',
    version: '*',
    files: [{ content: 'import time\nprint("before the timeout")\ntime.sleep(60)\n' }],
    run_timeout: 1500,
  });
  t.is(status, 200, JSON.stringify(body));
  t.is(body.run.status, 'TO', JSON.stringify(body.run));
  t.is(body.run.signal, 'SIGKILL');
  t.is(body.run.code, null);
  t.regex(body.run.message, /Time limit exceeded/);
  t.is(body.run.stdout, 'before the timeout\n');
});

test('a CPU-bound loop is stopped at run_cpu_time with TO "Time limit exceeded"', async (t) => {
  const { body } = await execute({ language: 'c', version: '*', files: [{ content: 'int main(void) { volatile unsigned long i = 0; for (;;) i++; }\n' }], run_cpu_time: 1000, run_timeout: 10000 });
  t.is(body.run.status, 'TO', JSON.stringify(body.run));
  t.is(body.run.message, 'Time limit exceeded');
  t.true(body.run.cpu_time >= 500, JSON.stringify(body.run));
});

test('an output flood is stopped at the cap with status OL and the output before it kept', async (t) => {
  const { status, body } = await execute({ language: 'python', version: '*', files: [{ content: 'while True:\n    print("y" * 1000)\n' }] });
  t.is(status, 200, JSON.stringify(body).slice(0, 500));
  t.is(body.run.status, 'OL', JSON.stringify({ ...body.run, stdout: body.run.stdout.length, output: undefined }));
  t.is(body.run.message, 'stdout length exceeded');
  t.is(body.run.signal, 'SIGKILL');
  t.true(body.run.stdout.length > 1000);
  t.true(body.run.stdout.length <= svc.config.judgeLimits.maxOutputBytes);
  t.true(body.run.stdout.startsWith('y'.repeat(1000) + '\n'));
});

test('a null dereference is SIGSEGV: status SG, "Caught fatal signal 11", code null', async (t) => {
  const { body } = await execute({ language: 'c', version: '*', files: [{ content: '#include <stdio.h>\nint main(void) { printf("start\\n"); fflush(stdout); volatile int *p = 0; *p = 1; return 0; }\n' }] });
  t.is(body.run.signal, 'SIGSEGV', JSON.stringify(body.run));
  t.is(body.run.status, 'SG');
  t.is(body.run.message, 'Caught fatal signal 11');
  t.is(body.run.code, null);
  t.is(body.run.stdout, 'start\n');
});

test('a division by zero is SIGFPE; 1 GB against a 64 MB run_memory_limit is killed and says why', async (t) => {
  const fpe = await execute({ language: 'c', version: '*', files: [{ content: 'int main(int argc, char **argv) { volatile int zero = argc - 1; return 7919 / zero; }\n' }], args: [] });
  t.is(fpe.body.run.signal, 'SIGFPE', JSON.stringify(fpe.body.run));
  t.is(fpe.body.run.message, 'Caught fatal signal 8');
  const big = await execute({
    language: 'c',
    version: '*',
    files: [{ content: '#include <stdlib.h>\nint main(void) { size_t n = 1UL << 30; volatile char *p = malloc(n); if (!p) return 3; for (size_t i = 0; i < n; i += 4096) p[i] = 1; return 0; }\n' }],
    run_memory_limit: 64 * 1024 * 1024,
  });
  t.is(big.body.run.status, 'SG', JSON.stringify(big.body.run));
  t.is(big.body.run.signal, 'SIGKILL');
  t.regex(big.body.run.message, /^Memory limit exceeded/);
  // It got as far as the limit before the kill (the peak may pass it by the sandbox's headroom).
  t.true(big.body.run.memory >= 60 * 1024 * 1024, JSON.stringify(big.body.run));
});

test('a non-zero exit is RE "Exited with error status N"; args reach the program', async (t) => {
  const { body } = await execute({ language: 'python', version: '3', files: [{ content: 'import sys\nprint(sys.argv[1:])\nsys.exit(3)\n' }], args: ['a b', '--x'] });
  t.is(body.run.stdout, "['a b', '--x']\n", JSON.stringify(body.run));
  t.is(body.run.code, 3);
  t.is(body.run.status, 'RE');
  t.is(body.run.message, 'Exited with error status 3');
});

test('base64 and hex files are written byte for byte beside the main file', async (t) => {
  const bytes = Buffer.from([0, 1, 2, 0xfe, 0xff]);
  const { body } = await execute({
    language: 'python',
    version: '*',
    files: [
      { name: 'data.bin', content: bytes.toString('base64'), encoding: 'base64' },
      { name: 'main.py', content: 'print(open("data.bin", "rb").read().hex(), open("more.bin", "rb").read().hex())\n' },
      { name: 'more.bin', content: 'cafe', encoding: 'hex' },
    ],
  });
  t.is(body.run.stdout, '000102feff cafe\n', JSON.stringify(body.run));
});

test('several files: a Python module and a C header beside the main file', async (t) => {
  const py = await execute({ language: 'py', version: '*', files: [{ name: 'main.py', content: 'from helper import twice\nprint(twice(21))\n' }, { name: 'helper.py', content: 'def twice(x):\n    return 2 * x\n' }] });
  t.is(py.body.run.stdout, '42\n', JSON.stringify(py.body));
  const c = await execute({
    language: 'c',
    version: '*',
    files: [
      { name: 'main.c', content: '#include <stdio.h>\n#include "lib/twice.h"\nint main(void) { printf("%d\\n", twice(21)); return 0; }\n' },
      { name: 'lib/twice.h', content: 'static inline int twice(int x) { return 2 * x; }\n' },
    ],
  });
  t.is(c.body.run.stdout, '42\n', JSON.stringify(c.body));
});

test('bad input: a 4xx with Piston\'s {message}, for Piston\'s checks and this server\'s', async (t) => {
  const cases: Array<[unknown, number, RegExp]> = [
    [{ language: 'html', version: '5.0.0', files: [{ content: 'x' }] }, 400, /^html-5\.0\.0 runtime is unknown$/],
    [{ language: 'python', version: '9.x', files: [{ content: 'x' }] }, 400, /^python-9\.x runtime is unknown$/],
    [{ version: '*', files: [] }, 400, /^language is required as a string$/],
    [{ language: 'python', files: [] }, 400, /^version is required as a string$/],
    [{ language: 'python', version: '*' }, 400, /^files is required as an array$/],
    [{ language: 'python', version: '*', files: [{}] }, 400, /^files\[0\]\.content is required as a string$/],
    [{ language: 'python', version: '*', files: [{ content: 'AA==', encoding: 'base64' }] }, 400, /^files must include at least one utf8 encoded file$/],
    [{ language: 'python', version: '*', files: [{ content: 'x' }, { content: '!!', encoding: 'base64' }] }, 400, /not valid base64/],
    [{ language: 'python', version: '*', files: [{ name: '../../etc/x', content: 'x' }] }, 400, /tries to escape parent directory/],
    [{ language: 'python', version: '*', files: [{ content: 'x' }], run_timeout: 10_000_000 }, 400, /^run_timeout 10000000 ms is above this server's limit of run_timeout \d+ ms$/],
    [{ language: 'python', version: '*', files: [{ content: 'x' }], run_memory_limit: 1e12 }, 400, /run_memory_limit .* bytes is above this server's limit/],
    [{ language: 'python', version: '*', files: [{ content: 'x' }], run_timeout: -1 }, 400, /^run_timeout must be non-negative$/],
    [{ language: 'python', version: '*', files: [{ content: 'x' }], run_cpu_time: '1' }, 400, /^If specified, run_cpu_time must be a number$/],
    [{ language: 'python', version: '*', files: [{ content: 'x' }], stdin: 1 }, 400, /stdin must be a string/],
    [{ language: 'python', version: '*', files: [{ name: '.hidden', content: 'x' }] }, 400, /file name/],
    ['{"language": "python", ', 400, /not valid JSON/],
  ];
  for (const [body, status, message] of cases) {
    const answer = await execute(body);
    t.is(answer.status, status, JSON.stringify(body));
    t.deepEqual(Object.keys(answer.body ?? {}), ['message'], JSON.stringify(answer.body));
    t.regex(answer.body.message, message, JSON.stringify(body));
  }
  const unauthenticated = await svc.call('POST', '/api/v2/execute', { language: 'python', version: '*', files: [{ content: 'print(1)' }] });
  t.is(unauthenticated.status, 401);
  t.deepEqual(Object.keys(unauthenticated.body), ['message']);
});

test('a client that hangs up before its answer ends the run: its sandbox is gone well before the run\'s limit', async (t) => {
  const before = new Set(containersOfInstance(svc.config.instance));
  const request = http.request(`${svc.url}/api/v2/execute`, { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' } });
  request.on('error', () => undefined);
  request.end(JSON.stringify({ language: 'python', version: '*', files: [{ content: 'import time\ntime.sleep(60)\n' }], run_timeout: 20000 }));
  let sandboxes: string[] = [];
  t.true(await eventually(() => (sandboxes = containersOfInstance(svc.config.instance).filter((id) => !before.has(id))).length > 0, 15_000), 'a sandbox was made');
  request.destroy();
  t.true(await eventually(() => sandboxes.every((id) => !containersOfInstance(svc.config.instance).includes(id)), 10_000), 'the sandbox is removed');
});

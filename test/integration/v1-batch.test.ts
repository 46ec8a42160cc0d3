/**
 * v1 batch mode (issue #4) against a real Docker engine and store: files written into the kernel's work
 * directory, build and exec run beside the kernel, statuses build-finished then finished, stdin from
 * options.stdin, 127 for a failed build, a runtime error's exit code, exec-timeout, continue, the output
 * limit, and the 400s for bad files and options. The same conformance cases run for C when its image exists.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { startTestService, type TestService } from '../helpers/service.js';
import { createKernel, runOrThrow } from '../helpers/v1-client.js';

let svc: TestService;
/** One python kernel for the cases that fit its default 15 s budget; they run one after the other. */
let python: string;

test.before(async () => {
  svc = await startTestService({ flushWindowMs: 1000, maxOutputBytes: 4096 });
  python = await createKernel(svc.call, { lang: 'python3' });
});

test.after.always(async () => {
  await svc?.stop();
});

type Item = [string, string];
interface Result {
  runId: string;
  status: string;
  exitCode: number | null;
  console: Item[];
}

interface Batch {
  results: Result[];
  statuses: string[];
  /** statuses without the "continued" answers of a long step. */
  boundaries: string[];
  final: Result;
  stdout: string;
  stderr: string;
}

/** Runs a batch request and continues it to its end, as a Backend.AI client does. */
async function batch(kernelId: string, options: Record<string, unknown>): Promise<Batch> {
  const results = (await runOrThrow(svc.call, kernelId, { mode: 'batch', options })).results as Result[];
  const items = results.flatMap((result) => result.console);
  const join = (stream: string) => items.filter((item) => item[0] === stream).map((item) => item[1]).join('');
  const statuses = results.map((r) => r.status);
  // A loaded machine can make a step outlast the flush window: "continued" answers are not boundaries.
  const boundaries = statuses.filter((status) => status !== 'continued');
  return { results, statuses, boundaries, final: results.at(-1)!, stdout: join('stdout'), stderr: join('stderr') };
}

async function query(kernelId: string, code: string): Promise<string> {
  const { console: items } = await runOrThrow(svc.call, kernelId, { mode: 'query', code });
  return items.map((item) => item[1]).join('');
}

function imageLabels(image: string): Record<string, string> | undefined {
  try {
    return JSON.parse(execFileSync('/usr/bin/docker', ['image', 'inspect', '--format', '{{json .Config.Labels}}', image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) ?? {};
  } catch {
    return undefined;
  }
}

const MAIN_PY = [
  'import sys',
  'from pkg.helper import greet',
  'name = sys.stdin.readline().strip()',
  'print(greet(name))',
  'print(sum(int(x) for x in sys.stdin.read().split()))',
].join('\n');

test.serial('python: files with a helper module, build "*" (none) and exec "*", stdin from options.stdin: build-finished, then finished 0', async (t) => {
  const run = await batch(python, {
    files: [
      { name: 'main.py', content: MAIN_PY },
      { name: 'pkg/helper.py', content: 'def greet(name):\n    return f"hello {name}"\n' },
    ],
    // images/python: build "" (none), exec "python3 main.py".
    build: '*',
    exec: '*',
    stdin: 'Ada\n1 2 3\n',
    clean: 'rm -rf pkg',
  });
  t.is(run.boundaries[0], 'build-finished', 'build-finished is a response of its own');
  t.deepEqual(run.results[0]!.console, [], 'no build step, no build output');
  t.is(run.final.status, 'finished');
  t.is(run.final.exitCode, 0);
  t.is(run.stdout, 'hello Ada\n6\n');
  t.is(run.stderr, '');
  t.true(run.statuses.slice(1, -1).every((status) => status === 'continued'));
  // The files are in the kernel's own work directory; clean ran before "finished" was reported.
  t.is(await query(python, 'import os; print(sorted(os.listdir(".")))'), "['main.py']\n");
});

test.serial('python: a failing build (py_compile on a syntax error) finishes with 127 and the compiler output, without build-finished', async (t) => {
  const run = await batch(python, {
    files: [{ name: 'main.py', content: 'print("unclosed"\n' }],
    build: 'python3 -m py_compile main.py',
    exec: 'python3 main.py',
  });
  t.deepEqual(run.statuses.filter((s) => s !== 'continued'), ['finished']);
  t.is(run.final.exitCode, 127);
  t.regex(run.stderr, /SyntaxError/);
  t.is(run.stdout, '', 'exec did not run');
});

test.serial('python: a runtime error finishes with the program\'s non-zero exit code and its traceback', async (t) => {
  const run = await batch(python, {
    files: [{ name: 'main.py', content: 'print("before")\n1/0\n' }],
    build: 'python3 -m py_compile main.py',
    exec: 'python3 main.py',
  });
  t.is(run.boundaries[0], 'build-finished');
  t.is(run.final.status, 'finished');
  t.is(run.final.exitCode, 1);
  t.is(run.stdout, 'before\n');
  t.regex(run.stderr, /ZeroDivisionError/);
});

test.serial('continue works for batch runs: continued with the output so far, then the rest', async (t) => {
  const run = await batch(python, { exec: 'python3 -c \'import time; print("a", flush=True); time.sleep(2.5); print("b")\'' });
  t.is(run.final.status, 'finished');
  t.is(run.final.exitCode, 0);
  t.true(run.statuses.includes('continued'), run.statuses.join(','));
  const carrying = (text: string) => run.results.findIndex((r) => r.console.some((item) => item[1].includes(text)));
  t.true(carrying('a\n') >= 0 && carrying('a\n') < carrying('b\n'), 'output so far comes before the end of the run');
  t.is(run.stdout, 'a\nb\n');
  const gone = await svc.call('POST', `/v1/kernel/${python}`, { mode: 'continue', runId: run.final.runId });
  t.is(gone.status, 404, 'a finished run is forgotten');
});

test.serial('output past the limit is cut with the same marker as query mode', async (t) => {
  const run = await batch(python, { exec: 'python3 -c \'print("x" * 10000)\'' });
  t.is(run.final.exitCode, 0);
  t.true(run.stdout.length <= 4096 && run.stdout.length > 0, `${run.stdout.length} bytes kept`);
  t.regex(run.stderr, /\[output truncated: more than 4096 bytes\]/);
});

test.serial('bad files and options are a 400 that says what is wrong, and nothing runs', async (t) => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ files: [{ name: '../escape.py', content: 'x' }] }, /options\.files\[0\]\.name "\.\.\/escape\.py" has a "\.\." segment/],
    [{ files: [{ name: 'ok.py', content: '' }, { name: 'a/../../escape.py', content: '' }] }, /options\.files\[1\]\.name .* "\.\." segment/],
    [{ files: [{ name: '/home/work/main.py', content: '' }] }, /is absolute/],
    [{ files: [{ name: 'a\u0000b', content: '' }] }, /control character/],
    [{ files: [{ name: './main.py', content: '' }] }, /not normalised/],
    [{ files: [{ name: 'main.py' }] }, /options\.files\[0\]\.content is required/],
    [{ files: 'main.py' }, /options\.files must be an array/],
    [{ bulid: 'make' }, /unknown field "bulid" in options; expected: files, build, exec, clean, stdin/],
    [{ exec: 42 }, /options\.exec must be a string/],
    [{ clean: '*' }, /options\.clean has no default/],
  ];
  for (const [options, message] of cases) {
    const response = await svc.call('POST', `/v1/kernel/${python}`, { mode: 'batch', options: { exec: 'touch ran', ...options } });
    t.is(response.status, 400, JSON.stringify(options));
    t.regex(response.body.detail, message);
  }
  t.is(await query(python, 'import os; print(os.path.exists("ran"), os.path.exists("/home/escape.py"))'), 'False False\n');
});

test('a step past the kernel\'s timeout ends with exec-timeout; its processes are killed and the kernel lives on', async (t) => {
  const id = await createKernel(svc.call, { lang: 'python3', resourceLimits: { timeout: 1500 } });
  const started = Date.now();
  const run = await batch(id, { exec: 'echo started; sleep 30 & sleep 31' });
  t.is(run.final.status, 'exec-timeout');
  t.is(run.final.exitCode, null);
  t.is(run.stdout, 'started\n');
  t.true(Date.now() - started < 6000, `${Date.now() - started} ms`);
  const code = [
    'import os',
    'cmds = [open(f"/proc/{p}/cmdline", "rb").read() for p in os.listdir("/proc") if p.isdigit()]',
    'print(any(c.startswith(b"sleep") for c in cmds))',
  ].join('\n');
  t.is(await query(id, code), 'False\n', 'the kernel still answers, and no step process is left');
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

test('C (when polykernel/c exists): stdin, a compile error is 127, a runtime error is non-zero', async (t) => {
  const labels = imageLabels('polykernel/c:latest');
  if (!labels) {
    t.log('polykernel/c is not built here: C batch cases skipped');
    t.pass();
    return;
  }
  const spec = JSON.parse(labels['org.polykernel.kernelspec'] ?? '{}') as { name?: string };
  const id = await createKernel(svc.call, { lang: spec.name ?? 'c' });
  try {
    const ok = await batch(id, {
      files: [{ name: 'main.c', content: '#include <stdio.h>\nint main(void){int a,b;if(scanf("%d %d",&a,&b)!=2)return 2;printf("%d\\n",a+b);return 0;}\n' }],
      build: '*',
      exec: '*',
      stdin: '40 2\n',
    });
    t.deepEqual([ok.boundaries[0], ok.final.status, ok.final.exitCode, ok.stdout], ['build-finished', 'finished', 0, '42\n']);
    const broken = await batch(id, { files: [{ name: 'main.c', content: 'int main(void){ return x; }\n' }], build: '*', exec: '*' });
    t.deepEqual([broken.final.status, broken.final.exitCode], ['finished', 127]);
    t.regex(broken.stderr, /error/);
    const crash = await batch(id, { files: [{ name: 'main.c', content: '#include <stdlib.h>\nint main(void){ abort(); }\n' }], build: '*', exec: '*' });
    t.is(crash.final.status, 'finished');
    t.not(crash.final.exitCode, 0);
  } finally {
    await svc.call('DELETE', `/v1/kernel/${id}`);
  }
});

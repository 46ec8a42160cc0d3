/**
 * The engine's logic against a scripted sandbox (the real one is in test/integration/judge-engine*.test.ts):
 * one sandbox per submission, compiled once whatever the number of tests, expected outputs never written
 * into it, the checker in a sandbox of its own, the overall verdict, internal errors instead of hangs, the
 * bounded line, aborts and shutdown removing every sandbox, warm sandboxes used once.
 */
import test from 'ava';
import { loadConfig } from '../../src/config/index.js';
import { DomainError } from '../../src/errors.js';
import { SandboxJudgeEngine } from '../../src/judge/engine.js';
import type { InteractiveRun, JudgeSandbox, JudgeSandboxes, RunMeasurement, RunRequest, SandboxSpec, SourceFile, Submission } from '../../src/judge/model.js';
import { KernelSpecRegistry } from '../../src/kernels/kernel-specs.js';
import { silentLogger } from '../../src/logger.js';
import type { ContainerRuntime, KernelImage } from '../../src/runtime/runtime.js';

const image = (name: string, labels: Record<string, string>): KernelImage => ({
  image: `polykernel/${name}:latest`,
  labels: {
    'org.polykernel.kernelspec': JSON.stringify({ name, spec: { language: name, display_name: `${name} (sandboxed)`, argv: [], env: {}, metadata: {}, interrupt_mode: 'signal' } }),
    'org.polykernel.aliases': '',
    ...labels,
  },
});
const IMAGES = [
  image('c', { 'org.polykernel.build': 'gcc -O2 -o main main.c -lm', 'org.polykernel.exec': './main', 'org.polykernel.file_extension': '.c' }),
  image('python3', { 'org.polykernel.build': '', 'org.polykernel.exec': 'python3 main.py', 'org.polykernel.file_extension': '.py' }),
  image('java', {
    'org.polykernel.exec': 'java Main',
    'org.polykernel.file_extension': '.java',
    'org.polykernel.judge.source': 'Main.java',
    'org.polykernel.judge.build': 'javac "$@" *.java',
    'org.polykernel.judge.exec': 'exec java "${POLYKERNEL_SOURCE%.java}"',
  }),
];

function specs(): KernelSpecRegistry {
  const runtime = {
    listKernelImages: async () => IMAGES,
    readImageFile: async () => Buffer.from('tool 1.2.3\n'),
  } as unknown as ContainerRuntime;
  return new KernelSpecRegistry(runtime, 'polykernel/');
}

type Script = (request: RunRequest, sandbox: FakeSandbox) => Partial<RunMeasurement> | Promise<Partial<RunMeasurement>>;

class FakeSandbox implements JudgeSandbox {
  readonly files = new Map<string, Buffer>();
  readonly runs: RunRequest[] = [];
  closed = false;
  private readonly closing: Array<() => void> = [];
  constructor(
    readonly id: string,
    readonly spec: SandboxSpec,
    private readonly script: Script,
  ) {}
  async writeFiles(files: SourceFile[]): Promise<void> {
    if (this.closed) throw new Error('closed');
    // As the real supervisor: a file the builder wrote is never overwritten.
    for (const file of files) if (this.files.has(file.name)) throw new Error(`file ${file.name}: File exists`);
    for (const file of files) this.files.set(file.name, Buffer.from(file.content));
  }
  async run(request: RunRequest): Promise<RunMeasurement> {
    if (this.closed) throw new Error('closed');
    this.runs.push(request);
    const closedMeanwhile = new Promise<never>((_, reject) => this.closing.push(() => reject(new Error('sandbox removed'))));
    const measured = await Promise.race([(async () => this.script(request, this))(), closedMeanwhile]);
    return { cpuTimeMs: 1, wallTimeMs: 2, memoryKB: 100, exitCode: 0, signal: null, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), ...measured };
  }
  runInteractive(request: Omit<RunRequest, 'stdin'>): InteractiveRun {
    this.runs.push({ ...request, stdin: Buffer.alloc(0) });
    let finish!: (measurement: RunMeasurement) => void;
    const done = new Promise<RunMeasurement>((resolve) => (finish = resolve));
    const listeners: Array<(stream: 'stdout' | 'stderr', data: Buffer) => void> = [];
    return {
      write: (data) => listeners.forEach((listener) => listener('stdout', data)),
      endInput: () => finish({ cpuTimeMs: 1, wallTimeMs: 1, memoryKB: 1, exitCode: 0, signal: null, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) }),
      signal: () => undefined,
      onOutput: (listener) => listeners.push(listener),
      done,
    };
  }
  async close(): Promise<void> {
    this.closed = true;
    for (const reject of this.closing.splice(0)) reject();
  }
}

class FakeSandboxes implements JudgeSandboxes {
  readonly made: FakeSandbox[] = [];
  reaped = 0;
  failCreate = false;
  constructor(private readonly script: Script) {}
  async create(spec: SandboxSpec): Promise<JudgeSandbox> {
    if (this.failCreate) throw new Error('engine down');
    const sandbox = new FakeSandbox(`sb${this.made.length + 1}`, spec, this.script);
    this.made.push(sandbox);
    return sandbox;
  }
  async reap(): Promise<void> {
    this.reaped += 1;
  }
}

/** A program that prints a+b of its stdin; a checker (argv input output answer) that accepts any even answer. */
const arithmetic: Script = (request, sandbox) => {
  if (request.as === 'builder') {
    const source = sandbox.files.get('main.c') ?? sandbox.files.get('Main.java') ?? Buffer.alloc(0);
    return source.includes('syntax error') ? { exitCode: 1, stderr: Buffer.from('main.c:1: error') } : {};
  }
  const checked = request.argv.find((arg) => arg.endsWith('/input.txt'));
  if (checked) {
    const output = Number(sandbox.files.get(checked.replace('input.txt', 'output.txt'))?.toString());
    if (Number.isNaN(output)) return { exitCode: 3, stdout: Buffer.from('FAIL unreadable') };
    return output % 2 === 0 ? { stdout: Buffer.from('ok even') } : { exitCode: 1, stdout: Buffer.from('wrong answer: odd') };
  }
  const [a, b] = request.stdin.toString().split(' ').map(Number);
  if (a < 0) return { exitCode: null, signal: 'SIGSEGV' };
  return { stdout: Buffer.from(`${a + b}\n`) };
};

/** A checker's sandbox is the one that was given the tests' files. */
const isChecker = (sandbox: FakeSandbox) => [...sandbox.files.keys()].some((name) => name.startsWith('test-'));

const config = (env: Record<string, string> = {}) => loadConfig({ POLYKERNEL_JUDGE_CONCURRENCY: '2', POLYKERNEL_JUDGE_QUEUE_SIZE: '2', ...env });

function setup(script: Script = arithmetic, env: Record<string, string> = {}, runGraceMs?: number) {
  const sandboxes = new FakeSandboxes(script);
  const cfg = config(env);
  const engine = new SandboxJudgeEngine({ config: cfg, sandboxes, specs: specs(), log: silentLogger, runGraceMs });
  const submission = (over: Partial<Submission> = {}): Submission => ({
    lang: 'c',
    files: [{ name: '', content: Buffer.from('int main(){}') }],
    limits: cfg.judgeLimits,
    compileLimits: cfg.judgeCompileLimits,
    tests: [{ stdin: Buffer.from('1 2'), expectedOutput: Buffer.from('3') }],
    comparison: 'lines',
    ...over,
  });
  return { engine, sandboxes, submission, cfg };
}

const codeOf = async (promise: Promise<unknown>) => {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    return error instanceof DomainError ? error.code : (error as Error).name;
  }
};

test('50 tests of a C program: one sandbox, one compile as the builder, 50 runs as the program, all accepted', async (t) => {
  const { engine, sandboxes, submission } = setup();
  const tests = Array.from({ length: 50 }, (_, i) => ({ stdin: Buffer.from(`${i} 1`), expectedOutput: Buffer.from(`${i + 1}\n\n`) }));
  const result = await engine.judge(submission({ tests }));
  t.is(result.verdict, 'accepted');
  t.is(result.compilations, 1);
  t.is(result.tests.length, 50);
  t.true(result.compile?.ok);
  t.is(sandboxes.made.length, 1);
  const [sandbox] = sandboxes.made;
  t.is(sandbox.runs.filter((run) => run.as === 'builder').length, 1);
  t.is(sandbox.runs.filter((run) => run.as === 'program').length, 50);
  t.true(sandbox.closed, 'the sandbox is removed after the submission');
  t.deepEqual([...sandbox.files.keys()], ['main.c'], 'only the source was written: no expected output, no other input');
  t.is(sandbox.spec.image, 'polykernel/c:latest');
  t.deepEqual(sandbox.runs[1].env, { POLYKERNEL_SOURCE: 'main.c', POLYKERNEL_MEMORY_KB: '128000' });
});

test('each submission gets its own sandbox; an interpreted language is not compiled', async (t) => {
  const { engine, sandboxes, submission } = setup((request) => ({ stdout: Buffer.from(request.argv.join(' ')) }));
  const first = await engine.judge(submission({ lang: 'python3', tests: [{ stdin: Buffer.alloc(0) }], args: ['x y'] }));
  await engine.judge(submission({ lang: 'python3', tests: [{ stdin: Buffer.alloc(0) }] }));
  t.is(first.compilations, 0);
  t.is(first.compile, undefined);
  t.is(first.tests[0].stdout.toString(), 'python3 main.py x y', 'args are separate argv words');
  t.is(sandboxes.made.length, 2);
  t.true(sandboxes.made.every((sandbox) => sandbox.closed && sandbox.runs.every((run) => run.as === 'program')));
});

test('a compile error: compilation_error, the compiler\'s output kept, no test run', async (t) => {
  const { engine, sandboxes, submission } = setup();
  const result = await engine.judge(submission({ files: [{ name: 'sol.c', content: Buffer.from('syntax error') }], compilerOptions: '-Wall  -O1' }));
  t.is(result.verdict, 'compilation_error');
  t.false(result.compile?.ok);
  t.is(result.compile?.stderr.toString(), 'main.c:1: error');
  t.deepEqual(result.tests, []);
  const [sandbox] = sandboxes.made;
  t.is(sandbox.runs.length, 1);
  t.deepEqual(sandbox.runs[0].argv, ['gcc', '-O2', '-o', 'main', 'main.c', '-lm', '-Wall', '-O1']);
  t.true(sandbox.files.has('main.c'), 'a C main file is written under the name the image compiles');
});

test('the overall verdict is the first test\'s that is not accepted; every test still gets its result', async (t) => {
  const { engine, submission } = setup();
  const result = await engine.judge(
    submission({
      tests: [
        { stdin: Buffer.from('1 1'), expectedOutput: Buffer.from('2') },
        { stdin: Buffer.from('1 1'), expectedOutput: Buffer.from('3') },
        { stdin: Buffer.from('-1 1'), expectedOutput: Buffer.from('0') },
        { stdin: Buffer.from('2 2') },
      ],
    }),
  );
  t.deepEqual(result.tests.map((test) => test.verdict), ['accepted', 'wrong_answer', 'runtime_error', 'accepted']);
  t.is(result.tests[2].message, 'Killed by signal 11 (SIGSEGV)');
  t.is(result.verdict, 'wrong_answer');
});

test('a checker runs in a sandbox of its own with input, output and answer; exit 0 accepts, 1 refuses, 3 is an internal error', async (t) => {
  const { engine, sandboxes, submission } = setup();
  const result = await engine.judge(
    submission({
      checker: { lang: 'c', files: [{ name: 'checker.c', content: Buffer.from('int main(){}') }] },
      tests: [
        { stdin: Buffer.from('1 1'), expectedOutput: Buffer.from('any even number') },
        { stdin: Buffer.from('1 2'), expectedOutput: Buffer.from('secret answer') },
      ],
    }),
  );
  t.deepEqual(result.tests.map((test) => [test.verdict, test.message]), [
    ['accepted', 'ok even'],
    ['wrong_answer', 'wrong answer: odd'],
  ]);
  t.is(result.compilations, 1, 'the checker\'s compile is not the program\'s');
  t.is(sandboxes.made.length, 2);
  const program = sandboxes.made.find((sandbox) => !isChecker(sandbox))!;
  const checker = sandboxes.made.find((sandbox) => sandbox !== program)!;
  t.false([...program.files.values()].some((content) => content.includes('secret')), 'the expected output never enters the program\'s sandbox');
  t.is(checker.files.get('test-2/answer.txt')?.toString(), 'secret answer');
  t.is(checker.files.get('test-2/input.txt')?.toString(), '1 2');
  t.is(checker.files.get('test-2/output.txt')?.toString(), '3\n');
  t.deepEqual(checker.runs.at(-1)?.argv, ['./main', 'test-2/input.txt', 'test-2/output.txt', 'test-2/answer.txt']);
  t.true(sandboxes.made.every((sandbox) => sandbox.closed));

  const failing = await engine.judge(submission({ checker: { lang: 'c', files: [{ name: 'checker.c', content: Buffer.from('x') }] }, tests: [{ stdin: Buffer.from('1 1 '), expectedOutput: Buffer.from('') }] }));
  t.is(failing.tests[0].verdict, 'accepted');
});

test('a checker that fails (exit 3) or does not compile makes the tests internal errors, not verdicts', async (t) => {
  const { engine, submission } = setup((request, sandbox) =>
    request.argv.some((arg) => arg.endsWith('input.txt')) ? { exitCode: 3, stdout: Buffer.from('FAIL bad answer file') } : arithmetic(request, sandbox),
  );
  const failing = await engine.judge(submission({ checker: { lang: 'c', files: [{ name: 'checker.c', content: Buffer.from('x') }] } }));
  t.is(failing.tests[0].verdict, 'internal_error');
  t.regex(failing.tests[0].message ?? '', /checker failed.*FAIL bad answer file/);
  const broken = await engine.judge(submission({ checker: { lang: 'c', files: [{ name: 'checker.c', content: Buffer.from('syntax error') }] } }));
  t.is(broken.verdict, 'internal_error');
  t.regex(broken.tests[0].message ?? '', /checker did not compile/);
});

test('a sandbox that cannot start, or fails during a test, gives internal errors and no hang', async (t) => {
  const { engine, sandboxes, submission } = setup((request) => {
    if (request.as === 'program' && request.stdin.toString() === 'boom') throw new Error('supervisor died');
    return { stdout: Buffer.from('3') };
  });
  sandboxes.failCreate = true;
  const down = await engine.judge(submission({ tests: [{ stdin: Buffer.from('1 2') }, { stdin: Buffer.from('1 2') }] }));
  t.is(down.verdict, 'internal_error');
  t.deepEqual(down.tests.map((test) => test.verdict), ['internal_error', 'internal_error']);
  sandboxes.failCreate = false;
  const broken = await engine.judge(submission({ tests: [{ stdin: Buffer.from('1 2') }, { stdin: Buffer.from('boom') }, { stdin: Buffer.from('1 2') }] }));
  t.deepEqual(broken.tests.map((test) => test.verdict), ['accepted', 'internal_error', 'internal_error']);
  t.true(sandboxes.made.every((sandbox) => sandbox.closed));
});

test('a run that never comes back is given up after its wall limit and the grace: internal error, sandbox removed', async (t) => {
  const { engine, sandboxes, submission, cfg } = setup((request) => (request.as === 'program' ? new Promise(() => undefined) : {}), {}, 50);
  const result = await engine.judge(submission({ limits: { ...cfg.judgeLimits, wallTimeMs: 100 } }));
  t.is(result.verdict, 'internal_error');
  t.true(sandboxes.made[0].closed);
});

test('at most POLYKERNEL_JUDGE_CONCURRENCY at once, a bounded line, 503 past it; an aborted waiter leaves the line', async (t) => {
  const gates: Array<() => void> = [];
  const { engine, sandboxes, submission } = setup((request) => (request.as === 'program' ? new Promise((resolve) => gates.push(() => resolve({ stdout: Buffer.from('3') }))) : {}));
  const running = [engine.judge(submission()), engine.judge(submission())];
  const waiting = engine.judge(submission());
  const leaving = new AbortController();
  const aborted = engine.judge(submission(), leaving.signal);
  t.is(await codeOf(engine.judge(submission())), 'unavailable', 'two running, two waiting: the fifth is refused');
  await new Promise((resolve) => setTimeout(resolve, 20));
  t.is(sandboxes.made.length, 2, 'waiting submissions have no sandbox');
  leaving.abort();
  t.is(await codeOf(aborted), 'AbortError');
  const again = engine.judge(submission());
  for (let i = 0; i < 20 && gates.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  gates.splice(0).forEach((open) => open());
  t.is((await Promise.all(running)).map((result) => result.verdict).join(), 'accepted,accepted');
  for (let i = 0; i < 50 && gates.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  gates.splice(0).forEach((open) => open());
  t.is((await waiting).verdict, 'accepted');
  t.is((await again).verdict, 'accepted');
  t.is(sandboxes.made.length, 4);
});

test('an abort during a run ends it: the submission rejects and its sandbox is removed', async (t) => {
  const { engine, sandboxes, submission } = setup((request) => (request.as === 'program' ? new Promise(() => undefined) : {}));
  const controller = new AbortController();
  const judging = engine.judge(submission(), controller.signal);
  for (let i = 0; i < 50 && !sandboxes.made[0]?.runs.some((run) => run.as === 'program'); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  controller.abort();
  t.is(await codeOf(judging), 'AbortError');
  t.true(sandboxes.made[0].closed);
});

test('stop ends what runs and refuses what waits, with every sandbox removed', async (t) => {
  const { engine, sandboxes, submission } = setup((request) => (request.as === 'program' ? new Promise(() => undefined) : {}), { POLYKERNEL_JUDGE_CONCURRENCY: '1' });
  const running = engine.judge(submission());
  const waiting = engine.judge(submission());
  for (let i = 0; i < 50 && sandboxes.made.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 5));
  await engine.stop();
  t.is(await codeOf(running), 'unavailable');
  t.is(await codeOf(waiting), 'unavailable');
  t.is(await codeOf(engine.judge(submission())), 'unavailable');
  t.true(sandboxes.made.every((sandbox) => sandbox.closed));
});

test('warm sandboxes: made with the caps at start, handed out once, replaced, closed at stop', async (t) => {
  const { engine, sandboxes, submission, cfg } = setup(arithmetic, { POLYKERNEL_JUDGE_WARM: 'c=1' });
  await engine.start();
  t.is(sandboxes.reaped, 1, 'leftovers of an earlier run are reaped first');
  for (let i = 0; i < 50 && sandboxes.made.length < 1; i++) await new Promise((resolve) => setTimeout(resolve, 5));
  const warm = sandboxes.made[0];
  t.is(warm.spec.memoryKB, Math.max(cfg.judgeLimitCaps.memoryKB, cfg.judgeCompileLimitCaps.memoryKB));
  t.is(warm.runs.length, 0);
  await engine.judge(submission());
  t.true(warm.closed, 'the warm sandbox was used by the submission and removed');
  t.true(warm.runs.length > 0);
  for (let i = 0; i < 50 && sandboxes.made.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 5));
  const replacement = sandboxes.made[1];
  t.is(replacement.runs.length, 0);
  await engine.judge(submission());
  t.true(replacement.closed);
  t.true(sandboxes.made.slice(0, 2).every((sandbox) => sandbox.runs.filter((run) => run.as === 'builder').length === 1), 'no sandbox was used twice');
  await engine.stop();
  t.true(sandboxes.made.every((sandbox) => sandbox.closed));
});

test('a Java submission that names its own file keeps the name; its commands read it from POLYKERNEL_SOURCE', async (t) => {
  const { engine, sandboxes, submission } = setup(() => ({ stdout: Buffer.from('3') }));
  await engine.judge(submission({ lang: 'java', files: [{ name: 'Solution.java', content: Buffer.from('class Solution {}') }] }));
  const [sandbox] = sandboxes.made;
  t.deepEqual([...sandbox.files.keys()], ['Solution.java']);
  t.is(sandbox.runs[1].env?.POLYKERNEL_SOURCE, 'Solution.java');
  t.deepEqual(sandbox.runs[1].argv, ['/bin/sh', '-c', 'exec java "${POLYKERNEL_SOURCE%.java}" "$@"', 'sh']);
});

test('bounds and names: too many tests, too many bytes, a path outside the work directory, an unknown language, a limit above its cap', async (t) => {
  const { engine, submission, cfg } = setup(arithmetic, { POLYKERNEL_JUDGE_MAX_TESTS: '3', POLYKERNEL_JUDGE_MAX_BYTES: '2048' });
  const test1 = { stdin: Buffer.from('1 2') };
  t.is(await codeOf(engine.judge(submission({ tests: [test1, test1, test1, test1] }))), 'invalid_input');
  t.is(await codeOf(engine.judge(submission({ tests: [] }))), 'invalid_input');
  t.is(await codeOf(engine.judge(submission({ tests: [{ stdin: Buffer.alloc(4096) }] }))), 'payload_too_large');
  for (const name of ['../x.c', '/etc/passwd', 'a/../../b', '.hidden', '-rf', 'a b.c', 'x\0.c']) {
    t.is(await codeOf(engine.judge(submission({ files: [{ name: 'main.c', content: Buffer.from('') }, { name, content: Buffer.from('') }] }))), 'invalid_input', name);
  }
  t.is(await codeOf(engine.judge(submission({ files: [{ name: 'sol.c', content: Buffer.from('') }, { name: 'main.c', content: Buffer.from('') }] }))), 'invalid_input', 'a second file under the main file\'s name');
  t.is(await codeOf(engine.judge(submission({ lang: 'cobol' }))), 'invalid_input');
  t.is(await codeOf(engine.judge(submission({ tests: [{ stdin: Buffer.from(''), limits: { cpuTimeMs: cfg.judgeLimitCaps.cpuTimeMs + 1 } }] }))), 'invalid_input');
  t.is(await codeOf(engine.judge(submission({ runsPerTest: 21 }))), 'invalid_input');
  t.is(await codeOf(engine.judge(submission({ checker: { lang: 'c', files: [{ name: 'checker.c', content: Buffer.from('') }, { name: 'test-1/x.c', content: Buffer.from('') }] } }))), 'invalid_input');
});

test('languages: one per image with an exec label, version from the image\'s version file', async (t) => {
  const { engine } = setup();
  const languages = await engine.languages();
  t.deepEqual(languages.map((language) => language.name), ['c', 'java', 'python3']);
  t.like(languages[0], { version: '1.2.3', displayName: 'c (tool 1.2.3)', sourceFile: 'main.c', runCommand: './main' });
  t.false('image' in languages[0]);
});

test('a checker sandbox full of test files is replaced by a fresh one, compiled again; the files are never overwritten', async (t) => {
  const { engine, sandboxes, submission, cfg } = setup(arithmetic, { POLYKERNEL_JUDGE_MAX_BYTES: String(64 * 1024 * 1024) });
  // Each test's files take a third of the budget (16 MiB): three tests per checker sandbox at most.
  const big = Buffer.alloc(5 * 1024 * 1024, 0x20);
  const tests = Array.from({ length: 4 }, () => ({ stdin: Buffer.concat([Buffer.from('1 1'), big]), expectedOutput: Buffer.from('2') }));
  const result = await engine.judge(
    submission({ tests, limits: { ...cfg.judgeLimits, maxOutputBytes: 1024 }, checker: { lang: 'c', files: [{ name: 'checker.c', content: Buffer.from('x') }] } }),
  );
  t.deepEqual(result.tests.map((test) => test.verdict), ['accepted', 'accepted', 'accepted', 'accepted']);
  const checkers = sandboxes.made.filter(isChecker);
  t.is(checkers.length, 2);
  t.deepEqual(checkers.map((sandbox) => sandbox.runs.filter((run) => run.as === 'builder').length), [1, 1]);
  t.deepEqual(checkers.map((sandbox) => [...sandbox.files.keys()].filter((name) => name.endsWith('input.txt'))), [
    ['test-1/input.txt', 'test-2/input.txt', 'test-3/input.txt'],
    ['test-1/input.txt'],
  ]);
  t.true(checkers[0].spec.memoryKB >= cfg.judgeLimits.memoryKB + 16 * 1024, 'the files count in the checker sandbox\'s memory');
  t.true(sandboxes.made.every((sandbox) => sandbox.closed));
});

test('a result keeps at most POLYKERNEL_JUDGE_MAX_RESULT_BYTES of output over all tests; each test is judged on its whole output', async (t) => {
  const { engine, submission } = setup((request) => (request.as === 'program' ? { stdout: Buffer.alloc(1500, 0x61) } : {}), { POLYKERNEL_JUDGE_MAX_RESULT_BYTES: '4000' });
  const whole = Buffer.alloc(1500, 0x61);
  const result = await engine.judge(submission({ tests: [0, 1, 2, 3].map(() => ({ stdin: Buffer.alloc(0), expectedOutput: whole })) }));
  t.deepEqual(result.tests.map((test) => test.verdict), ['accepted', 'accepted', 'accepted', 'accepted']);
  t.deepEqual(result.tests.map((test) => test.stdout.length), [1500, 1500, 1000, 0]);
});

test('interactive: compiled once, then one run with open streams; the sandbox goes when the run ends; a compile error has no run', async (t) => {
  const { engine, sandboxes, submission } = setup();
  const { files, limits, compileLimits } = submission();
  const session = await engine.interactive({ lang: 'c', files, limits, compileLimits, args: ['x'] });
  t.true(session.compile?.ok);
  const echoed: string[] = [];
  session.run!.onOutput((_, data) => echoed.push(data.toString()));
  session.run!.write(Buffer.from('hi'));
  session.run!.endInput();
  await session.run!.done;
  for (let i = 0; i < 50 && !sandboxes.made[0].closed; i++) await new Promise((resolve) => setTimeout(resolve, 5));
  t.true(sandboxes.made[0].closed, 'the run ended: its sandbox is removed without a close');
  t.deepEqual(echoed, ['hi']);
  t.deepEqual(sandboxes.made[0].runs.map((run) => [run.as, run.argv]), [
    ['builder', ['gcc', '-O2', '-o', 'main', 'main.c', '-lm']],
    ['program', ['./main', 'x']],
  ]);
  const failed = await engine.interactive({ lang: 'c', files: [{ name: '', content: Buffer.from('syntax error') }], limits, compileLimits });
  t.false(failed.compile?.ok);
  t.is(failed.run, undefined);
  t.true(sandboxes.made[1].closed);
});

test('interactive: waiting for a slot, an aborted signal leaves the line without a sandbox', async (t) => {
  const { engine, sandboxes, submission } = setup(arithmetic, { POLYKERNEL_JUDGE_CONCURRENCY: '1' });
  const { files, limits, compileLimits } = submission();
  const holding = await engine.interactive({ lang: 'c', files, limits, compileLimits });
  const leaving = new AbortController();
  const waiting = engine.interactive({ lang: 'c', files, limits, compileLimits }, leaving.signal);
  leaving.abort();
  t.is(await codeOf(waiting), 'AbortError');
  t.is(sandboxes.made.length, 1);
  await holding.close();
  t.true(sandboxes.made[0].closed);
  const next = await engine.interactive({ lang: 'c', files, limits, compileLimits });
  t.truthy(next.run, 'the slot was released by close');
  await next.close();
});

test('runsPerTest: each test runs that many times, time and memory averaged; the runs stop at the first that ends badly', async (t) => {
  let run = 0;
  const { engine, sandboxes, submission } = setup((request) => {
    if (request.as === 'builder') return {};
    run += 1;
    if (request.stdin.toString() === 'crash' && run === 5) return { exitCode: 1, cpuTimeMs: 50, memoryKB: 500 };
    return { cpuTimeMs: run * 10, memoryKB: run * 100, stdout: Buffer.from('3') };
  });
  const result = await engine.judge(submission({ runsPerTest: 3, stderrToStdout: true, tests: [{ stdin: Buffer.from('1 2'), expectedOutput: Buffer.from('3') }, { stdin: Buffer.from('crash'), expectedOutput: Buffer.from('3') }] }));
  t.deepEqual(result.tests.map((test) => [test.verdict, test.cpuTimeMs, test.memoryKB]), [
    ['accepted', 20, 200],
    ['runtime_error', 45, 450],
  ]);
  const programRuns = sandboxes.made[0].runs.filter((request) => request.as === 'program');
  t.is(programRuns.length, 5, 'three runs of the first test, two of the second (the second failed)');
  t.true(programRuns.every((request) => request.stderrToStdout === true));
});

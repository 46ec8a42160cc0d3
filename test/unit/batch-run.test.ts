/**
 * Batch mode's run as pure logic, against a fake kernel handle whose `exec` plays scripted steps:
 * which commands run in which order under which time bound, the statuses a client sees (build-finished
 * then finished; 127 when the build failed; exec-timeout only for a kill at the deadline), clean's
 * output kept out of the console, the output limit across steps, and the "*" defaults.
 */
import test from 'ava';
import { DomainError } from '../../src/errors.js';
import { BatchRun, INTERRUPTED_EXIT_CODE, resolveBatchCommands, STEP_MARKER_VARIABLE, type BatchCommands, type BatchRunOptions } from '../../src/runs/batch.js';
import type { RunResult } from '../../src/runs/query.js';
import type { CommandOutputListener, KernelCommand } from '../../src/kernels/kernel-handle.js';
import { FILES_HELPER } from '../../src/files/work-dir-files.js';

interface Step {
  out?: ['stdout' | 'stderr', string | Buffer][];
  exitCode?: number;
  /** Advance the fake clock by this much while the step runs. */
  takesMs?: number;
  /** Resolve only when this promise does. */
  until?: Promise<void>;
}

/** A file helper that wrote every file it was sent: the real one is proven on the engine (attack-batch-files). */
const HELPER_WROTE: Step = { out: [['stdout', 'ok\n']] };

class FakeKernel {
  readonly calls: KernelCommand[] = [];
  /** What the file helper was sent on its stdin, per call to it. */
  readonly helperInput: Buffer[] = [];
  constructor(
    private readonly script: (cmd: string[]) => Step,
    private readonly clock: { now: number },
    private readonly helper: Step = HELPER_WROTE,
  ) {}

  async exec(spec: KernelCommand, onOutput: CommandOutputListener): Promise<{ exitCode: number }> {
    this.calls.push(spec);
    if (spec.cmd.includes(FILES_HELPER)) return this.fileHelper(spec, onOutput);
    const step = this.script(spec.cmd);
    for (const [stream, chunk] of step.out ?? []) onOutput(stream, Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
    await step.until;
    this.clock.now += step.takesMs ?? 0;
    return { exitCode: step.exitCode ?? 0 };
  }

  private async fileHelper(spec: KernelCommand, onOutput: CommandOutputListener): Promise<{ exitCode: number }> {
    const chunks: Buffer[] = [];
    for await (const chunk of spec.stdin as AsyncIterable<Buffer | string>) chunks.push(Buffer.from(chunk));
    this.helperInput.push(Buffer.concat(chunks));
    for (const [stream, chunk] of this.helper.out ?? []) await onOutput(stream, Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
    return { exitCode: this.helper.exitCode ?? 0 };
  }

  /** The shell command of each step run so far (the file helper's calls are left out). */
  get commands(): string[] {
    return this.calls.filter((call) => call.cmd.includes('sh')).map((call) => call.cmd[call.cmd.length - 1]!);
  }
}

interface Harness {
  run: BatchRun;
  kernel: FakeKernel;
  timeouts: { count: number };
  errors: Error[];
}

function harness(commands: Partial<BatchCommands>, script: (command: string) => Step, options: Partial<BatchRunOptions> & { stdin?: string; files?: { name: string; content: string }[] } = {}): Harness {
  const clock = { now: 1_000_000 };
  const kernel = new FakeKernel((cmd) => script(cmd[cmd.length - 1]!), clock);
  const timeouts = { count: 0 };
  const errors: Error[] = [];
  const run = new BatchRun('run-1', { build: '', exec: '', clean: '', ...commands }, options.files ?? [], options.stdin, {
    kernel: kernel,
    timeoutMs: 10_000,
    maxOutputBytes: 1 << 20,
    onActivity: () => undefined,
    onTimeout: () => timeouts.count++,
    onError: (error) => errors.push(error),
    clock: () => clock.now,
    ...options,
  });
  return { run, kernel, timeouts, errors };
}

/** Every response of the run until its final one, as a client would see them. */
async function drive(run: BatchRun, flushWindowMs = 1000): Promise<RunResult[]> {
  const results: RunResult[] = [];
  for (;;) {
    const result = await run.next(flushWindowMs);
    results.push(result);
    if (result.status === 'finished' || result.status === 'exec-timeout') return results;
  }
}

const text = (result: RunResult) => result.console.map((item) => item[1]).join('');

test('files go in with one file helper exec, then build and exec run beside the kernel as its user in its work directory', async (t) => {
  const { run, kernel } = harness(
    { build: 'make', exec: './main' },
    (command) => (command === 'make' ? { out: [['stdout', 'compiling\n']] } : { out: [['stdout', 'hi Ada\n']], exitCode: 0 }),
    { stdin: 'Ada\n', files: [{ name: 'main.c', content: 'int main(){}' }] },
  );
  await run.start();
  const results = await drive(run);
  t.deepEqual(results.map((r) => r.status), ['build-finished', 'finished']);
  t.deepEqual(results[0]!.console, [['stdout', 'compiling\n']]);
  t.deepEqual(results[1]!.console, [['stdout', 'hi Ada\n']]);
  t.is(results[1]!.exitCode, 0);
  t.is(results[0]!.exitCode, null);
  const [put, build, exec] = kernel.calls;
  t.deepEqual(put!.cmd.slice(4, 7), [FILES_HELPER, 'put', '/home/work'], 'the no-follow helper places the files, never tar');
  t.is(kernel.helperInput[0]!.toString(), 'f main.c\n12\nint main(){}0\ncommit\n', 'every file, then commit');
  for (const call of kernel.calls) {
    t.is(call.as, undefined, "the kernel's user (the handle's default), never root");
    t.is(call.workingDir, undefined, "the kernel's work directory (the handle's default)");
    t.deepEqual(call.cmd.slice(0, 3), ['timeout', '-s', 'KILL'], 'every exec is bounded inside the container');
  }
  t.deepEqual(build!.cmd.slice(3), ['10.000', 'sh', '-c', 'make']);
  t.is(build!.stdin, undefined, 'the build reads no stdin');
  t.is(exec!.stdin, 'Ada\n', 'options.stdin goes to the exec step');
});

test('no build step still reports build-finished first; a program without options.stdin reads EOF', async (t) => {
  const { run, kernel } = harness({ exec: 'python3 main.py' }, () => ({ out: [['stdout', 'ok\n']] }));
  await run.start();
  const results = await drive(run);
  t.deepEqual(results.map((r) => r.status), ['build-finished', 'finished']);
  t.deepEqual(results[0]!.console, []);
  t.deepEqual(kernel.commands, ['python3 main.py']);
  t.is(kernel.calls[0]!.stdin, '');
});

test('a failing build finishes with exit code 127 and its output; exec never runs; clean still does', async (t) => {
  const { run, kernel } = harness(
    { build: 'gcc main.c', exec: './a.out', clean: 'rm -f a.out' },
    (command) => (command === 'gcc main.c' ? { out: [['stderr', 'main.c:1: error: expected ;\n']], exitCode: 1 } : { out: [['stdout', 'cleaned\n']] }),
  );
  await run.start();
  const results = await drive(run);
  t.deepEqual(results.map((r) => [r.status, r.exitCode]), [['finished', 127]]);
  t.deepEqual(results[0]!.console, [['stderr', 'main.c:1: error: expected ;\n']]);
  t.deepEqual(kernel.commands, ['gcc main.c', 'rm -f a.out']);
});

test('a runtime error is the exec step\'s own non-zero exit code', async (t) => {
  const { run } = harness({ exec: 'python3 main.py' }, () => ({ out: [['stderr', 'ZeroDivisionError\n']], exitCode: 1 }));
  await run.start();
  const final = (await drive(run)).at(-1)!;
  t.is(final.status, 'finished');
  t.is(final.exitCode, 1);
  t.regex(text(final), /ZeroDivisionError/);
});

test('clean runs after exec: its output stays out of the console, a failure adds a notice, the exit code is exec\'s', async (t) => {
  const { run, kernel } = harness(
    { exec: 'run', clean: 'cleanup' },
    (command) => (command === 'run' ? { out: [['stdout', 'result\n']], exitCode: 3 } : { out: [['stdout', 'noise\n']], exitCode: 2 }),
  );
  await run.start();
  const final = (await drive(run)).at(-1)!;
  t.deepEqual(kernel.commands, ['run', 'cleanup']);
  t.is(final.exitCode, 3);
  t.deepEqual(final.console, [['stdout', 'result\n'], ['stderr', '\n[clean exited with 2]\n']]);
});

test('steps share one budget: exec gets what the build left; a kill at the deadline is exec-timeout, the kernel kept', async (t) => {
  const { run, kernel, timeouts } = harness(
    { build: 'build', exec: 'loop', clean: 'cleanup' },
    (command) => (command === 'build' ? { takesMs: 4000 } : { out: [['stdout', 'partial\n']], takesMs: 6000, exitCode: 137 }),
  );
  await run.start();
  const results = await drive(run);
  t.deepEqual(results.map((r) => r.status), ['build-finished', 'exec-timeout']);
  t.deepEqual(results[1]!.console, [['stdout', 'partial\n']]);
  t.is(results[1]!.exitCode, null);
  t.is(kernel.calls[1]!.cmd[3], '6.000', 'exec is bounded by the remaining 6 s');
  t.deepEqual(kernel.commands, ['build', 'loop'], 'no budget is left for clean');
  t.is(timeouts.count, 0, 'the in-container timeout did its job: the kernel is not destroyed');
});

test('a program killed (137) before the deadline, e.g. out of memory, is finished with 137, not a timeout', async (t) => {
  const { run } = harness({ exec: 'hog' }, () => ({ takesMs: 100, exitCode: 137 }));
  await run.start();
  const final = (await drive(run)).at(-1)!;
  t.deepEqual([final.status, final.exitCode], ['finished', 137]);
});

test('a step still running well past its budget trips the backstop: exec-timeout, and the kernel is to be destroyed', async (t) => {
  const { run, timeouts } = harness({ exec: 'setsid sleep 100' }, () => ({ until: new Promise(() => undefined) }), { timeoutMs: 20, backstopGraceMs: 10 });
  await run.start();
  const results = await drive(run, 5000);
  t.deepEqual(results.map((r) => r.status), ['build-finished', 'exec-timeout']);
  t.is(timeouts.count, 1);
});

test('a build timing out is exec-timeout without build-finished', async (t) => {
  const { run } = harness({ build: 'slow', exec: 'never' }, () => ({ takesMs: 10_000, exitCode: 137 }));
  await run.start();
  t.deepEqual((await drive(run)).map((r) => r.status), ['exec-timeout']);
});

test('between boundaries the flush window answers continued with the output so far', async (t) => {
  let release!: () => void;
  const until = new Promise<void>((resolve) => (release = resolve));
  const { run } = harness({ exec: 'slow' }, () => ({ out: [['stdout', 'a\n']], until }));
  await run.start();
  t.is((await run.next(50)).status, 'build-finished');
  const middle = await run.next(50);
  t.deepEqual([middle.status, middle.console], ['continued', [['stdout', 'a\n']]]);
  release();
  const final = await run.next(5000);
  t.deepEqual([final.status, final.exitCode, final.console], ['finished', 0, []]);
});

test('output past the limit is cut with the query-mode marker, across build and exec', async (t) => {
  const { run } = harness(
    { build: 'b', exec: 'e' },
    (command) => ({ out: [['stdout', command === 'b' ? 'x'.repeat(60) : 'y'.repeat(60)]] }),
    { maxOutputBytes: 100 },
  );
  await run.start();
  const [built, final] = await drive(run);
  t.deepEqual(built!.console, [['stdout', 'x'.repeat(60)]]);
  t.deepEqual(final!.console, [['stdout', 'y'.repeat(40)], ['stderr', '\n[output truncated: more than 100 bytes]\n']]);
});

test('multi-byte characters split across output chunks arrive whole', async (t) => {
  const bytes = Buffer.from('✓ done\n');
  const { run } = harness({ exec: 'e' }, () => ({ out: [['stdout', bytes.subarray(0, 1)], ['stdout', bytes.subarray(1)]] }));
  await run.start();
  t.is(text((await drive(run)).at(-1)!), '✓ done\n');
});

test('files the helper refuses make start() fail with a 4xx that says why, and no step runs', async (t) => {
  const clock = { now: 0 };
  const kernel = new FakeKernel(() => ({}), clock, { out: [['stdout', 'error symlink 0\n']], exitCode: 2 });
  const run = new BatchRun(undefined, { build: '', exec: 'x', clean: '' }, [{ name: 'main.py', content: '' }], undefined, {
    kernel: kernel,
    timeoutMs: 1000,
    maxOutputBytes: 1000,
    onActivity: () => undefined,
    onTimeout: () => undefined,
    onError: () => undefined,
  });
  const error = await t.throwsAsync(run.start(), { instanceOf: DomainError });
  t.is(error?.code, 'invalid_input');
  t.regex(error?.message ?? '', /could not write options\.files into the work directory: "main\.py" is or passes through a symbolic link.*; nothing was written$/);
  t.is(kernel.calls.length, 1, 'no step ran');
});

test('the kernel going away ends the run with 137 and says why; mode "input" is refused', async (t) => {
  const { run } = harness({ exec: 'e' }, () => ({ until: new Promise(() => undefined) }));
  await run.start();
  await t.throwsAsync(run.sendInput('x'), { message: /batch run: its program reads options\.stdin/ });
  t.is((await run.next(10)).status, 'build-finished');
  run.abort('out-of-memory');
  const final = await run.next(1000);
  t.deepEqual([final.status, final.exitCode, final.console], ['finished', 137, [['stderr', '\n[kernel died: out-of-memory]\n']]]);
});

test('an engine fault in a step finishes the run with a notice and is handed to the log', async (t) => {
  const { run, errors } = harness({ exec: 'e' }, () => {
    throw new Error('socket hang up');
  });
  await run.start();
  const final = (await drive(run)).at(-1)!;
  t.deepEqual([final.status, final.exitCode], ['finished', 1]);
  t.regex(text(final), /batch step failed: internal error/);
  t.notRegex(text(final), /socket hang up/);
  t.is(errors[0]?.message, 'socket hang up');
});

test('"*" takes the image\'s default command; blank skips a step; no default is a clear 400', (t) => {
  const defaults = { build: 'gcc -O2 -o main main.c', exec: './main' };
  t.deepEqual(resolveBatchCommands({ files: [], build: '*', exec: ' * ', clean: 'rm -f main' }, 'c', defaults), {
    build: 'gcc -O2 -o main main.c',
    exec: './main',
    clean: 'rm -f main',
  });
  t.deepEqual(resolveBatchCommands({ files: [], build: '*', exec: '*' }, 'python3', { build: '', exec: 'python3 main.py' }), {
    build: '',
    exec: 'python3 main.py',
    clean: '',
  });
  t.deepEqual(resolveBatchCommands({ files: [], build: '  ', exec: 'ls' }, 'python3', undefined), { build: '', exec: 'ls', clean: '' });
  t.throws(() => resolveBatchCommands({ files: [], build: '*' }, 'r', { exec: 'Rscript main.R' }), {
    message: 'no default build command for r; pass options.build',
  });
  t.throws(() => resolveBatchCommands({ files: [], exec: '*' }, 'r', undefined), { message: 'no default exec command for r; pass options.exec' });
  t.throws(() => resolveBatchCommands({ files: [], clean: '*' }, 'c', defaults), { message: /options\.clean has no default/ });
});

test('an eager call (the streaming socket) returns as soon as a step prints, long before the flush window', async (t) => {
  let release!: () => void;
  const until = new Promise<void>((resolve) => (release = resolve));
  let print!: CommandOutputListener;
  const kernel = {
    calls: [] as KernelCommand[],
    async exec(spec: KernelCommand, onOutput: CommandOutputListener) {
      kernel.calls.push(spec);
      print = onOutput;
      await until;
      return { exitCode: 0 };
    },
  };
  const { run } = harness({ exec: 'slow' }, () => ({}), { kernel });
  await run.start();
  t.is((await run.next(60_000, { eager: true })).status, 'build-finished');
  const pending = run.next(60_000, { eager: true });
  await new Promise((resolve) => setTimeout(resolve, 20));
  print('stdout', Buffer.from('early\n'));
  const started = Date.now();
  const middle = await pending;
  t.true(Date.now() - started < 1000);
  t.deepEqual([middle.status, middle.console], ['continued', [['stdout', 'early\n']]]);
  release();
  t.is((await run.next(60_000, { eager: true })).status, 'finished');
});

/** A fake handle whose steps run until a signal exec names their marker (SIGINT, or SIGKILL when `ignoreInt`). */
function signalledKernel(ignoreInt = false) {
  const steps = new Map<string, () => void>();
  const signals: { signal: string; marker: string }[] = [];
  const kernel = {
    calls: [] as KernelCommand[],
    async exec(spec: KernelCommand, onOutput: CommandOutputListener): Promise<{ exitCode: number }> {
      kernel.calls.push(spec);
      const marker = spec.env?.[STEP_MARKER_VARIABLE];
      // `tidy` (a clean step) ends by itself; the others run until signalled.
      if (marker && spec.cmd.at(-1) === 'tidy') return { exitCode: 0 };
      if (marker) {
        onOutput('stdout', Buffer.from(`running ${spec.cmd.at(-1)}\n`));
        await new Promise<void>((resolve) => steps.set(`${STEP_MARKER_VARIABLE}=${marker}`, resolve));
        return { exitCode: 130 };
      }
      // The signalling exec: sh -c SCRIPT sh <signal> <marker>.
      const [signal, named] = spec.cmd.slice(-2) as [string, string];
      signals.push({ signal, marker: named });
      if (signal === 'KILL' || !ignoreInt) steps.get(named)?.();
      return { exitCode: 0 };
    },
  };
  return { kernel, signals };
}

test('an interrupt signals the running step by its marker, skips the steps to come, runs clean, and ends with 130', async (t) => {
  const { kernel, signals } = signalledKernel();
  const { run } = harness({ build: 'make', exec: 'never', clean: 'tidy' }, () => ({}), { kernel });
  await run.start();
  t.regex(text(await run.next(60_000, { eager: true })), /running make/);
  run.interrupted();
  const results = await drive(run);
  const last = results.at(-1)!;
  t.deepEqual([last.status, last.exitCode], ['finished', INTERRUPTED_EXIT_CODE]);
  t.false(results.some((r) => r.status === 'build-finished'));
  t.regex(results.map(text).join(''), /\[interrupted\]/);
  t.deepEqual(signals.map((s) => s.signal), ['INT']);
  const stepEnv = kernel.calls.find((call) => call.cmd.at(-1) === 'make')!.env!;
  t.is(signals[0]!.marker, `${STEP_MARKER_VARIABLE}=${stepEnv[STEP_MARKER_VARIABLE]}`);
  // exec skipped; clean ran (with a marker of its own), after the interrupted build.
  const shells = kernel.calls.filter((call) => call.env?.[STEP_MARKER_VARIABLE]).map((call) => call.cmd.at(-1));
  t.deepEqual(shells, ['make', 'tidy']);
  t.is(await run.ended(), undefined);
});

test('a step that ignores SIGINT gets SIGKILL after the grace; an interrupt of a finished run does nothing', async (t) => {
  const { kernel, signals } = signalledKernel(true);
  const { run } = harness({ exec: 'stubborn' }, () => ({}), { kernel, interruptGraceMs: 50 });
  await run.start();
  await run.next(60_000, { eager: true });
  t.regex(text(await run.next(60_000, { eager: true })), /running stubborn/);
  run.interrupted();
  const last = (await drive(run)).at(-1)!;
  t.deepEqual([last.status, last.exitCode], ['finished', INTERRUPTED_EXIT_CODE]);
  t.deepEqual(signals.map((s) => s.signal), ['INT', 'KILL']);
  run.interrupted();
  t.is(signals.length, 2);
});

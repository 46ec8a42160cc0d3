/**
 * The judge engine: a submission in, a verdict per test case out. Each submission gets a sandbox that no
 * other ever used (warm or made for it), is compiled there once, and every test case runs in it, one after
 * the other; expected outputs stay in this process (the program's sandbox never holds them, nor any input
 * but the one on its stdin), and a checker runs in a sandbox of its own. At most
 * POLYKERNEL_JUDGE_CONCURRENCY submissions are judged at once; the rest wait in a bounded line.
 *
 * A sandbox that fails (cannot start, a run throws, a run that does not come back in time) makes the tests
 * it touches internal errors; nothing waits on it for ever. An aborted signal closes the submission's
 * sandboxes, which ends their runs.
 */
import type { Config } from '../config/index.js';
import { DomainError, invalidInput, unavailable } from '../errors.js';
import type { Logger } from '../logger.js';
import type { KernelSpecRegistry } from '../kernels/kernel-specs.js';
import { abortReason, JudgeAdmission } from './admission.js';
import { outputsMatch } from './compare.js';
import { commandArgv, ENV_MEMORY_KB, ENV_SOURCE, JudgeLanguages, splitWords, type JudgedLanguage } from './languages.js';
import type {
  CompileResult,
  InteractiveRun,
  JudgeEngine,
  JudgeLanguage,
  JudgeResult,
  JudgeSandbox,
  JudgeSandboxes,
  RunLimits,
  RunMeasurement,
  SandboxSpec,
  SourceFile,
  Submission,
  TestResult,
  Verdict,
} from './model.js';
import { CHECKER_FILES, checkShape, checkSubmission, testLimits } from './submission-check.js';
import { averageRuns, endingVerdict } from './verdict.js';
import { WarmSandboxes } from './warm-sandboxes.js';

export type JudgeEngineConfig = Pick<
  Config,
  | 'judgeLimits'
  | 'judgeLimitCaps'
  | 'judgeCompileLimits'
  | 'judgeCompileLimitCaps'
  | 'judgeConcurrency'
  | 'judgeQueueSize'
  | 'judgeWarm'
  | 'judgeRuntime'
  | 'judgeDiskMB'
  | 'judgeMaxTests'
  | 'judgeMaxFiles'
  | 'judgeMaxBytes'
  | 'judgeMaxRunsPerTest'
  | 'judgeMaxResultBytes'
>;

export interface JudgeEngineDeps {
  config: JudgeEngineConfig;
  sandboxes: JudgeSandboxes;
  specs: KernelSpecRegistry;
  log: Logger;
  /**
   * How long past a run's own wall-time limit the engine waits for the sandbox's answer before it gives
   * the sandbox up (an internal error): the supervisor kills at the limit, so this is only for a sandbox
   * that broke.
   */
  runGraceMs?: number;
}

/** A checker's message is for a human; a checker that floods is cut. */
const MAX_CHECKER_MESSAGE_BYTES = 4096;

const NOTHING: RunMeasurement = { cpuTimeMs: 0, wallTimeMs: 0, memoryKB: 0, exitCode: null, signal: null, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };

/** A sandbox that failed: every later use of it is an internal error with this message. */
class SandboxFailed extends Error {}

interface PreparedChecker {
  /** Absent when it could not be started (then `failure` says so). */
  sandbox?: JudgeSandbox;
  language: JudgedLanguage;
  /** Set when the checker could not be made ready: every checked test is an internal error with it. */
  failure?: string;
  /** Bytes of test files written into the sandbox so far, and how many it may hold. */
  written: number;
  budget: number;
  /** A fresh checker sandbox, compiled, for when this one is full. */
  renew(): Promise<PreparedChecker>;
  /** Tests checked so far: each gets a directory of its own (a builder's file is never overwritten). */
  checked: number;
}

/**
 * Test files a checker's sandbox holds before it is replaced by a fresh one: the sandbox never overwrites
 * or removes what its builder wrote, and the files live in its memory (tmpfs), so they are bounded.
 */
const CHECKER_FILES_BUDGET_BYTES = 16 * 1024 * 1024;

/** How often removing an earlier run's sandboxes is tried again while the engine is unreachable at start. */
const START_RETRY_MS = 2000;

export class SandboxJudgeEngine implements JudgeEngine {
  private readonly table: JudgeLanguages;
  private readonly admission: JudgeAdmission;
  private readonly warm: WarmSandboxes;
  /** Submissions and interactive runs under way, so a shutdown ends them and removes their sandboxes. */
  private readonly jobs = new Set<{ controller: AbortController; settled: Promise<unknown> }>();
  private readonly runGraceMs: number;
  /** Why judging is not ready (the leftovers of an earlier run not removed yet); undefined once it is. */
  private notReadyBecause?: string;
  private startRetry?: NodeJS.Timeout;
  private stopped = false;

  constructor(private readonly deps: JudgeEngineDeps) {
    this.table = new JudgeLanguages(deps.specs);
    this.admission = new JudgeAdmission(deps.config.judgeConcurrency, deps.config.judgeQueueSize);
    this.runGraceMs = deps.runGraceMs ?? 10_000;
    this.warm = new WarmSandboxes(
      deps.config.judgeWarm,
      {
        specFor: async (lang) => {
          const language = await this.table.resolve(lang);
          return language && this.warmSpec(language);
        },
        create: (spec) => deps.sandboxes.create(spec),
      },
      deps.log,
    );
  }

  /**
   * Removes the sandboxes an earlier run of the service left behind, then starts the warm sandboxes. With
   * the engine unreachable the service starts anyway and this is retried in the background; until it
   * succeeds judging answers 503, because a sandbox made meanwhile could be taken for a leftover.
   */
  async start(): Promise<void> {
    try {
      await this.reapAndFill();
    } catch (error) {
      if (!(error instanceof DomainError && error.code === 'unavailable')) throw error;
      this.notReadyBecause = error.message;
      this.deps.log.warn('Could not remove the judge sandboxes of an earlier run yet; retrying in the background', { error: error.message });
      this.retryStart();
    }
  }

  private async reapAndFill(): Promise<void> {
    await this.deps.sandboxes.reap();
    this.notReadyBecause = undefined;
    this.warm.fill();
  }

  private retryStart(): void {
    this.startRetry = setTimeout(() => {
      this.reapAndFill().then(
        () => this.deps.log.info('Removed the judge sandboxes of an earlier run'),
        (error: Error) => {
          this.notReadyBecause = error.message;
          if (!this.stopped) this.retryStart();
        },
      );
    }, START_RETRY_MS);
    this.startRetry.unref();
  }

  private assertReady(): void {
    if (this.notReadyBecause) throw unavailable(`judging is not ready yet: ${this.notReadyBecause}`);
  }

  /** Refuses new work, ends what runs (their sandboxes removed) and closes the warm sandboxes. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.startRetry);
    const shuttingDown = unavailable('the service is shutting down; submit again once it is back');
    this.admission.close(shuttingDown);
    const jobs = [...this.jobs];
    for (const job of jobs) job.controller.abort(shuttingDown);
    await Promise.all(jobs.map((job) => job.settled.catch(() => undefined)));
    await this.warm.stop();
  }

  get load(): { active: number; queued: number; concurrency: number; queueSize: number } {
    return { active: this.admission.active, queued: this.admission.queued, concurrency: this.admission.concurrency, queueSize: this.admission.queueSize };
  }

  async languages(): Promise<JudgeLanguage[]> {
    return (await this.table.list()).map(publicLanguage);
  }

  async judge(submission: Submission, signal?: AbortSignal): Promise<JudgeResult> {
    this.assertReady();
    checkSubmission(submission, this.deps.config);
    const language = await this.language(submission.lang);
    const checkerLanguage = submission.checker ? await this.language(submission.checker.lang) : undefined;
    const program = programFiles(language, submission.files);
    const checker = submission.checker && checkerLanguage ? { ...programFiles(checkerLanguage, submission.checker.files), language: checkerLanguage } : undefined;
    const release = await this.admission.acquire(signal);
    const { controller, unlink } = linkedController(signal);
    const cleanup: { closing?: Promise<unknown> } = {};
    const work = this.judgeIn(submission, language, program, checker, controller.signal, cleanup);
    const settled = work.then(
      () => cleanup.closing,
      () => cleanup.closing,
    );
    const job = { controller, settled };
    this.jobs.add(job);
    // The answer does not wait for the sandboxes' removal (a container removal is 0.1-0.3 s of the
    // engine's time); the slot does, so there are never more sandboxes than slots (and warm ones).
    void settled.finally(() => {
      this.jobs.delete(job);
      unlink();
      release();
    });
    try {
      return await work;
    } catch (error) {
      await settled;
      throw error;
    }
  }

  async interactive(
    submission: Omit<Submission, 'tests' | 'comparison' | 'checker'>,
    signal?: AbortSignal,
  ): Promise<{ compile?: CompileResult; run?: InteractiveRun; close(): Promise<void> }> {
    this.assertReady();
    checkShape(submission, this.deps.config);
    const language = await this.language(submission.lang);
    const { files, source } = programFiles(language, submission.files);
    const release = await this.admission.acquire(signal);
    const { controller, unlink } = linkedController(signal);
    let sandbox: JudgeSandbox | undefined;
    let ended!: () => void;
    const job = { controller, settled: new Promise<void>((resolve) => (ended = resolve)) };
    this.jobs.add(job);
    let closing: Promise<void> | undefined;
    const close = () =>
      (closing ??= (async () => {
        try {
          await sandbox?.close().catch(() => undefined);
        } finally {
          this.jobs.delete(job);
          unlink();
          release();
          ended();
        }
      })());
    controller.signal.addEventListener('abort', () => void close(), { once: true });
    // Aborted between the slot's grant and the listener: the event has fired already.
    if (controller.signal.aborted) void close();
    try {
      const opened = await this.openSandbox(language, this.specOf(language, [submission.limits], submission.compileLimits));
      sandbox = opened;
      // Closed (aborted, shut down) while the sandbox was being made: that close did not know it yet.
      if (closing) {
        await opened.close().catch(() => undefined);
        throw abortReason(controller.signal);
      }
      await this.guarded(opened, undefined, () => opened.writeFiles(files));
      const compile = await this.guarded(opened, submission.compileLimits, () =>
        this.compile(opened, language, source, submission.compilerOptions, submission.compileLimits),
      );
      if (compile && !compile.ok) {
        await close();
        return { compile, close };
      }
      const run = opened.runInteractive({
        argv: commandArgv(language.runCommand, submission.args ?? []),
        limits: submission.limits,
        as: 'program',
        env: runEnv(source, submission.limits),
        stderrToStdout: submission.stderrToStdout,
      });
      // Whoever holds the run may forget to close it: the sandbox goes when the run ends anyway.
      run.done.then(close, close);
      return { ...(compile ? { compile } : {}), run, close };
    } catch (error) {
      await close();
      if (controller.signal.aborted) throw abortReason(controller.signal);
      this.deps.log.error('Interactive judge run failed', { lang: language.name, error: (error as Error).message });
      throw unavailable(`the ${language.name} sandbox could not be started; try again`);
    }
  }

  private async language(name: string): Promise<JudgedLanguage> {
    const language = await this.table.resolve(name);
    if (!language) {
      const known = (await this.table.list()).map((entry) => entry.name).join(', ');
      throw invalidInput(`unknown language ${JSON.stringify(name.slice(0, 64))}; this server has ${known || 'no languages'}`);
    }
    return language;
  }

  private async judgeIn(
    submission: Submission,
    language: JudgedLanguage,
    { files, source }: ProgramFiles,
    checkerFiles: (ProgramFiles & { language: JudgedLanguage }) | undefined,
    signal: AbortSignal,
    cleanup: { closing?: Promise<unknown> },
  ): Promise<JudgeResult> {
    const opened: JudgeSandbox[] = [];
    let finished = false;
    const closeAll = () => Promise.all(opened.map((sandbox) => sandbox.close().catch(() => undefined)));
    signal.addEventListener('abort', () => void closeAll(), { once: true });
    const started = Date.now();
    try {
      const limits = submission.tests.map((_, index) => testLimits(submission, index));
      const open = async (lang: JudgedLanguage, spec: SandboxSpec) => {
        const sandbox = await this.openSandbox(lang, spec);
        opened.push(sandbox);
        // Made after the submission was aborted or had its answer (a checker's, after a compilation
        // error): the close that removed the others ran before this one was in the list.
        if (signal.aborted || finished) await sandbox.close().catch(() => undefined);
        return sandbox;
      };
      // The checker's sandbox starts while the program's compiles. It holds the test files of as many tests
      // as fit its budget (at least one test's: input, expected output, the largest output allowed).
      const budget = Math.max(
        CHECKER_FILES_BUDGET_BYTES,
        ...submission.tests.map((test, index) => test.stdin.length + (test.expectedOutput?.length ?? 0) + limits[index].maxOutputBytes),
      );
      const checkerPending = checkerFiles ? this.prepareChecker(checkerFiles, open, budget) : undefined;
      checkerPending?.catch(() => undefined);

      let program: JudgeSandbox;
      try {
        program = await open(language, this.specOf(language, limits, submission.compileLimits));
      } catch (error) {
        if (signal.aborted) throw abortReason(signal);
        this.deps.log.error('Could not start a judge sandbox', { lang: language.name, error: (error as Error).message });
        return everyTestFailed(submission, `Internal error: the ${language.name} sandbox could not be started`);
      }
      let compile: CompileResult | undefined;
      try {
        await this.guarded(program, undefined, () => program.writeFiles(files));
        compile = await this.guarded(program, submission.compileLimits, () =>
          this.compile(program, language, source, submission.compilerOptions, submission.compileLimits),
        );
      } catch (error) {
        if (signal.aborted) throw abortReason(signal);
        this.deps.log.error('Judge sandbox failed before the tests', { lang: language.name, sandbox: program.id, error: (error as Error).message });
        return everyTestFailed(submission, 'Internal error: the sandbox failed while compiling');
      }
      if (compile && !compile.ok) return { compile, tests: [], verdict: 'compilation_error', compilations: 1 };

      const checker = checkerPending ? { current: await checkerPending } : undefined;
      const tests: TestResult[] = [];
      let broken: string | undefined;
      // What the result holds of the programs' output, all tests together (each test's output was judged whole).
      let keep = this.deps.config.judgeMaxResultBytes;
      for (const [index, test] of submission.tests.entries()) {
        if (signal.aborted) throw abortReason(signal);
        if (broken) {
          tests.push({ ...NOTHING, verdict: 'internal_error', message: broken });
          continue;
        }
        try {
          const judged = await this.runTest(program, language, source, submission, test, limits[index], checker);
          judged.stdout = cut(judged.stdout, keep);
          keep -= judged.stdout.length;
          judged.stderr = cut(judged.stderr, keep);
          keep -= judged.stderr.length;
          tests.push(judged);
        } catch (error) {
          if (signal.aborted) throw abortReason(signal);
          this.deps.log.error('Judge sandbox failed during a test', { lang: language.name, sandbox: program.id, test: index + 1, error: (error as Error).message });
          broken = 'Internal error: the sandbox failed';
          tests.push({ ...NOTHING, verdict: 'internal_error', message: broken });
        }
      }
      const result: JudgeResult = {
        ...(compile ? { compile } : {}),
        tests,
        verdict: tests.find((test) => test.verdict !== 'accepted')?.verdict ?? 'accepted',
        compilations: compile ? 1 : 0,
      };
      this.deps.log.debug('Judged a submission', { lang: language.name, tests: tests.length, verdict: result.verdict, ms: Date.now() - started });
      return result;
    } finally {
      finished = true;
      cleanup.closing = closeAll();
    }
  }

  /** A test's runs (runsPerTest of them, stopping at the first that did not end well), then its verdict. */
  private async runTest(
    sandbox: JudgeSandbox,
    language: JudgedLanguage,
    source: string,
    submission: Submission,
    test: Submission['tests'][number],
    limits: RunLimits,
    checker: { current: PreparedChecker } | undefined,
  ): Promise<TestResult> {
    const runs: RunMeasurement[] = [];
    let ending: ReturnType<typeof endingVerdict>;
    for (let run = 0; run < (submission.runsPerTest ?? 1); run++) {
      const measured = await this.guarded(sandbox, limits, () =>
        sandbox.run({
          argv: commandArgv(language.runCommand, submission.args ?? []),
          stdin: test.stdin,
          limits,
          as: 'program',
          env: runEnv(source, limits),
          stderrToStdout: submission.stderrToStdout,
        }),
      );
      runs.push(measured);
      ending = endingVerdict(measured, limits);
      if (ending) break;
    }
    const measured = averageRuns(runs);
    if (ending) return { ...measured, ...ending };
    if (checker) return { ...measured, ...(await this.check(checker, test.stdin, measured.stdout, test.expectedOutput ?? Buffer.alloc(0))) };
    if (test.expectedOutput === undefined) return { ...measured, verdict: 'accepted' };
    const verdict: Verdict = outputsMatch(submission.comparison, measured.stdout, test.expectedOutput) ? 'accepted' : 'wrong_answer';
    return { ...measured, verdict };
  }

  private async prepareChecker(
    checker: ProgramFiles & { language: JudgedLanguage },
    open: (language: JudgedLanguage, spec: SandboxSpec) => Promise<JudgeSandbox>,
    budget: number,
  ): Promise<PreparedChecker> {
    const { files, source, language } = checker;
    const limits = this.deps.config.judgeLimits;
    const compileLimits = this.deps.config.judgeCompileLimits;
    const spec = this.specOf(language, [limits], compileLimits);
    // The test files live in the sandbox's tmpfs, which its memory cap counts.
    spec.memoryKB += Math.ceil(budget / 1024);
    spec.diskMB = Math.max(spec.diskMB, Math.ceil(budget / (1024 * 1024)) + 16);
    const prepared: PreparedChecker = { language, written: 0, budget, checked: 0, renew: () => this.prepareChecker(checker, open, budget) };
    const sandbox = await open(language, spec).catch((error: Error) => {
      this.deps.log.error('Could not start a checker sandbox', { lang: language.name, error: error.message });
      return undefined;
    });
    if (!sandbox) return { ...prepared, failure: 'Internal error: the checker sandbox could not be started' };
    prepared.sandbox = sandbox;
    try {
      await this.guarded(sandbox, undefined, () => sandbox.writeFiles(files));
      const compile = await this.guarded(sandbox, compileLimits, () => this.compile(sandbox, language, source, undefined, compileLimits));
      if (compile && !compile.ok) {
        const output = Buffer.concat([compile.stdout, compile.stderr]).subarray(0, MAX_CHECKER_MESSAGE_BYTES).toString('utf8').trim();
        return { ...prepared, failure: `Internal error: the checker did not compile${output ? `: ${output}` : ''}` };
      }
      return prepared;
    } catch (error) {
      this.deps.log.error('Checker sandbox failed', { lang: language.name, sandbox: sandbox.id, error: (error as Error).message });
      return { ...prepared, failure: 'Internal error: the checker sandbox failed' };
    }
  }

  /**
   * testlib's `checker input output answer`: 0 accepts, 1 or 2 is a wrong answer, anything else is our
   * fault. `holder` is the submission's current checker; a full one is replaced by a fresh one first.
   */
  private async check(holder: { current: PreparedChecker }, input: Buffer, output: Buffer, answer: Buffer): Promise<{ verdict: Verdict; message?: string }> {
    const size = input.length + output.length + answer.length;
    if (holder.current.sandbox && !holder.current.failure && holder.current.written > 0 && holder.current.written + size > holder.current.budget) {
      const full = holder.current;
      holder.current = await full.renew();
      await full.sandbox?.close().catch(() => undefined);
    }
    const checker = holder.current;
    const sandbox = checker.sandbox;
    if (checker.failure || !sandbox) return { verdict: 'internal_error', message: checker.failure };
    const limits = this.deps.config.judgeLimits;
    checker.checked += 1;
    checker.written += size;
    const dir = `test-${checker.checked}`;
    const paths = [`${dir}/${CHECKER_FILES.input}`, `${dir}/${CHECKER_FILES.output}`, `${dir}/${CHECKER_FILES.answer}`];
    let ran: RunMeasurement;
    try {
      await this.guarded(sandbox, undefined, () =>
        sandbox.writeFiles([
          { name: paths[0], content: input },
          { name: paths[1], content: output },
          { name: paths[2], content: answer },
        ]),
      );
      ran = await this.guarded(sandbox, limits, () =>
        sandbox.run({
          argv: commandArgv(checker.language.runCommand, paths),
          stdin: Buffer.alloc(0),
          limits,
          as: 'program',
          env: runEnv(checker.language.sourceFile, limits),
          stderrToStdout: true,
        }),
      );
    } catch (error) {
      this.deps.log.error('Checker run failed', { sandbox: sandbox.id, error: (error as Error).message });
      checker.failure = 'Internal error: the checker sandbox failed';
      return { verdict: 'internal_error', message: checker.failure };
    }
    const text = Buffer.concat([ran.stdout, ran.stderr]).subarray(0, MAX_CHECKER_MESSAGE_BYTES).toString('utf8').trim();
    const message = text || undefined;
    if (!ran.killedFor && !ran.signal && ran.exitCode === 0) return { verdict: 'accepted', ...(message ? { message } : {}) };
    if (!ran.killedFor && !ran.signal && (ran.exitCode === 1 || ran.exitCode === 2)) return { verdict: 'wrong_answer', ...(message ? { message } : {}) };
    const how = endingVerdict(ran, limits)?.message ?? `Exited with error status ${ran.exitCode}`;
    return { verdict: 'internal_error', message: `Internal error: the checker failed (${how})${message ? `: ${message}` : ''}` };
  }

  private async compile(
    sandbox: JudgeSandbox,
    language: JudgedLanguage,
    source: string,
    compilerOptions: string | undefined,
    limits: RunLimits,
  ): Promise<CompileResult | undefined> {
    if (!language.compileCommand) return undefined;
    const measured = await sandbox.run({
      argv: commandArgv(language.compileCommand, splitWords(compilerOptions)),
      stdin: Buffer.alloc(0),
      limits,
      as: 'builder',
      env: runEnv(source, limits),
    });
    return { ...measured, ok: !measured.killedFor && !measured.signal && measured.exitCode === 0 };
  }

  /**
   * A sandbox call that must come back: the supervisor ends a run at its wall-time limit, so a run that
   * has not come back well after it (a file write: after the grace alone) means the sandbox broke. It is closed (which ends the call) and the
   * call fails, instead of the submission waiting for ever.
   */
  private async guarded<T>(sandbox: JudgeSandbox, limits: RunLimits | undefined, call: () => Promise<T>): Promise<T> {
    const ms = (limits?.wallTimeMs ?? 0) + this.runGraceMs;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        void sandbox.close().catch(() => undefined);
        reject(new SandboxFailed(`sandbox ${sandbox.id} did not answer within ${ms} ms`));
      }, ms);
    });
    try {
      return await Promise.race([call(), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async openSandbox(language: JudgedLanguage, spec: SandboxSpec): Promise<JudgeSandbox> {
    return this.warm.take(language.name, spec) ?? this.deps.sandboxes.create(spec);
  }

  /** A sandbox big enough for every run of a submission: its largest memory and process limits. */
  private specOf(language: JudgedLanguage, runLimits: RunLimits[], compileLimits: RunLimits): SandboxSpec {
    const all = language.compileCommand ? [...runLimits, compileLimits] : runLimits;
    return {
      image: language.image,
      runtime: this.deps.config.judgeRuntime,
      memoryKB: Math.max(...all.map((limits) => limits.memoryKB)),
      maxProcesses: Math.max(...all.map((limits) => limits.maxProcesses)),
      diskMB: this.deps.config.judgeDiskMB,
    };
  }

  private warmSpec(language: JudgedLanguage): SandboxSpec {
    return this.specOf(language, [this.deps.config.judgeLimitCaps], this.deps.config.judgeCompileLimitCaps);
  }
}

interface ProgramFiles {
  files: SourceFile[];
  /** The main file's name in the sandbox. */
  source: string;
}

/** A submission's files as the sandbox gets them: the main one under the name the language needs. */
function programFiles(language: JudgedLanguage, files: SourceFile[]): ProgramFiles {
  const [main, ...rest] = files;
  const source = language.keepsSourceName && main.name ? main.name : language.sourceFile;
  if (rest.some((file) => file.name === source)) {
    throw invalidInput(`a file besides the main one is named ${source}, which is the name the main ${language.name} file is given; rename it`);
  }
  return { files: [{ name: source, content: main.content }, ...rest], source };
}

/** The first `bytes` of `data`, copied when cut (a slice would hold on to the whole output). */
function cut(data: Buffer, bytes: number): Buffer {
  return data.length <= bytes ? data : Buffer.from(data.subarray(0, Math.max(0, bytes)));
}

function runEnv(source: string, limits: RunLimits): Record<string, string> {
  return { [ENV_SOURCE]: source, [ENV_MEMORY_KB]: String(limits.memoryKB) };
}

function publicLanguage(language: JudgedLanguage): JudgeLanguage {
  const { name, displayName, version, aliases, sourceFile, compileCommand, runCommand } = language;
  return { name, displayName, version, aliases, sourceFile, ...(compileCommand ? { compileCommand } : {}), runCommand };
}

function everyTestFailed(submission: Submission, message: string): JudgeResult {
  return {
    tests: submission.tests.map(() => ({ ...NOTHING, verdict: 'internal_error' as const, message })),
    verdict: 'internal_error',
    compilations: 0,
  };
}

/** A controller of our own (a shutdown aborts it), aborted too when the caller's signal is. */
function linkedController(signal: AbortSignal | undefined): { controller: AbortController; unlink: () => void } {
  const controller = new AbortController();
  const forward = () => controller.abort(signal?.reason);
  if (signal?.aborted) forward();
  else signal?.addEventListener('abort', forward, { once: true });
  return { controller, unlink: () => signal?.removeEventListener('abort', forward) };
}

/**
 * v1 batch mode (Backend.AI's batch execute): writes files into the kernel's work directory, then runs a
 * `build` and an `exec` shell command beside the kernel (KernelHandle.exec: as the kernel's user, in its
 * work directory), so it works the same for every kernel: ipykernel, IRkernel, the runner.
 *
 * Statuses, as Backend.AI reports them: `continued` (flush window, like query mode), `build-finished` as a
 * response of its own once the build step succeeded (also when there was none), then `finished` with the
 * exec step's exit code; a failed build goes straight to `finished` with exit code 127 and the build's
 * output. Past the time budget: `exec-timeout`.
 *
 * Time: the steps share one budget, the kernel's query timeout. A command run beside the kernel cannot be
 * killed from outside (Docker has no API to kill an exec), so each step runs under coreutils
 * `timeout -s KILL <remaining>` in the container, which kills the step's whole process group (and
 * itself: exit code 137); the kernel lives on. Should a step outlive its budget anyway
 * (a process that left the group holds the output open), a backstop destroys the kernel as query mode does.
 *
 * `clean` runs after exec (and after a failed build) while budget remains, before `finished` is reported,
 * so the work directory is clean when the client hears `finished`. Its output is not reported, only a
 * notice when it fails; it does not change the exit code.
 *
 * Interrupt: the kernel's SIGINT does not reach a step (it is no child of the kernel), so the run stops its
 * step itself, from inside the container as the kernel's user: every process carrying the step's marker
 * in its environment (the step's `timeout`, which also passes the signal to its process group, and what it
 * started) gets SIGINT, and SIGKILL after BATCH_INTERRUPT_GRACE_MS if the step has not ended. The steps
 * still to come are skipped, `clean` runs, and the run ends `finished` with exit code 130, as an
 * interrupted query does. A process that left the group and cleared its environment is out of reach, as it
 * is of the step's timeout.
 */
import { randomUUID } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import { DomainError, invalidInput } from '../errors.js';
import type { KernelHandle } from '../kernels/kernel-handle.js';
import { MAX_BATCH_FILES, type BatchFile } from './batch-files.js';
import { WorkDirFiles, type UploadPart } from '../files/work-dir-files.js';
import { ConsoleOutput, type ConsoleItem } from './console-output.js';
import type { NextOptions, Run, RunResult, RunStatus } from './query.js';
import { RunBoundary } from './run-boundary.js';

export interface BatchOptions {
  files: BatchFile[];
  build?: string;
  exec?: string;
  clean?: string;
  /** The exec step's stdin (the build reads EOF). */
  stdin?: string;
}

/** The shell commands of a run; '' = no such step. */
export interface BatchCommands {
  build: string;
  exec: string;
  clean: string;
}

/** What a language image says its `"*"` build and exec are (image labels); undefined = it says nothing. */
export interface BatchDefaults {
  build?: string;
  exec?: string;
}

/** Exit code of a run whose build failed, as Backend.AI reports it. */
export const BUILD_FAILED_EXIT_CODE = 127;
/** Exit code when the kernel went away under the run: a SIGKILL, as a shell reports it. */
const KILLED_EXIT_CODE = 137;
/** How long after the budget a step that is still running makes the backstop destroy the kernel. */
export const BACKSTOP_GRACE_MS = 5000;
/** Writing the files is not part of the steps' budget; it gets its own bound. */
const FILE_WRITE_TIMEOUT_MS = 30_000;
/** The helper's caps for a batch's files: checkBatchFiles has bounded their count and size already. */
const BATCH_FILE_WRITER = new WorkDirFiles({
  uploadMaxFiles: MAX_BATCH_FILES,
  uploadMaxFileBytes: Number.MAX_SAFE_INTEGER,
  downloadMaxBytes: 0,
  downloadMaxFiles: 0,
  listMaxEntries: 0,
  filesTimeoutMs: FILE_WRITE_TIMEOUT_MS,
});
/** Exit code of an interrupted run: a SIGINT, as a shell reports it (and as an interrupted query ends). */
export const INTERRUPTED_EXIT_CODE = 130;
/** How long an interrupted step has to end after its SIGINT before it is killed. */
export const BATCH_INTERRUPT_GRACE_MS = 1500;
/** The environment variable that marks a step's processes, so an interrupt finds them in the container (not POLYKERNEL_*: the sandbox shows a program none of the service's variables). */
export const STEP_MARKER_VARIABLE = 'PK_BATCH_STEP';
/** Bound of the command that signals a step's processes. */
const SIGNAL_TIMEOUT_MS = 5000;

/**
 * Sends `$1` (a signal name) to every process whose environment holds `$2` (NAME=value), the signalling
 * shell excepted. Only the kernel's user's processes are visible to it (/proc/<pid>/environ of others is
 * unreadable), so it can reach nothing else whatever the step's code did.
 */
const SIGNAL_MARKED = [
  'for d in /proc/[0-9]*; do',
  '  p=${d#/proc/}; [ "$p" = "$$" ] && continue',
  '  if tr "\\000" "\\n" < "$d/environ" 2>/dev/null | grep -qxF -e "$2"; then kill -s "$1" "$p" 2>/dev/null; fi',
  'done; exit 0',
].join('\n');

/** The commands to run: absent or blank = skip the step, `"*"` = the language's default. */
export function resolveBatchCommands(options: BatchOptions, lang: string, defaults: BatchDefaults | undefined): BatchCommands {
  const command = (step: 'build' | 'exec'): string => {
    const value = options[step];
    if (value === undefined || value.trim() === '') return '';
    if (value.trim() !== '*') return value;
    const fallback = defaults?.[step];
    if (fallback === undefined) throw invalidInput(`no default ${step} command for ${lang}; pass options.${step}`);
    return fallback;
  };
  const clean = options.clean ?? '';
  if (clean.trim() === '*') throw invalidInput('options.clean has no default ("*"); pass a command');
  return { build: command('build'), exec: command('exec'), clean: clean.trim() === '' ? '' : clean };
}

/** `timeout` takes seconds; milliseconds are kept (it accepts fractions). */
function bounded(command: string[], ms: number): string[] {
  return ['timeout', '-s', 'KILL', (Math.max(1, Math.ceil(ms)) / 1000).toFixed(3), ...command];
}

export interface BatchRunOptions {
  /** Where the steps run: beside this kernel, as its user, in its work directory. */
  kernel: Pick<KernelHandle, 'exec'>;
  timeoutMs: number;
  maxOutputBytes: number;
  /** Called as the run makes progress: the idle culler must see the kernel in use. */
  onActivity: () => void;
  /**
   * Called once when a step outlived its budget by BACKSTOP_GRACE_MS; the caller destroys the kernel, and
   * `exec-timeout` is reported once that has settled.
   */
  onTimeout: () => unknown;
  /** A fault of the engine while running a step, for the log; the client sees a short notice. */
  onError: (error: Error) => void;
  clock?: () => number;
  /** BACKSTOP_GRACE_MS unless a test says otherwise. */
  backstopGraceMs?: number;
  /** BATCH_INTERRUPT_GRACE_MS unless a test says otherwise. */
  interruptGraceMs?: number;
}

type StepOutcome = number | 'timeout';

export class BatchRun implements Run {
  readonly runId: string;
  private readonly output: ConsoleOutput;
  private readonly clock: () => number;
  private deadline = 0;
  private backstop?: NodeJS.Timeout;
  /** The build step succeeded or there was none: a `build-finished` response is due. */
  private buildFinished = false;
  private buildFinishedReported = false;
  /** The build's output not yet returned when it ended: the `build-finished` response carries it. */
  private buildTail: ConsoleItem[] = [];
  private exitCode?: number;
  private timedOut = false;
  /** The backstop is destroying the kernel: exec-timeout is due, not the removal's "died". */
  private expiring = false;
  private abortedBecause?: string;
  /** A client interrupted the run: the running step is being stopped, the rest skipped. */
  private interruptRequested = false;
  /** The step running now: its marker (see STEP_MARKER_VARIABLE), its end, and whether an interrupt stops it. */
  private runningStep?: { marker: string; ended: Promise<unknown>; interruptible: boolean };
  private stepsDone: Promise<void> = Promise.resolve();
  private readonly boundary = new RunBoundary();

  constructor(
    runId: string | undefined,
    private readonly commands: BatchCommands,
    private readonly files: readonly BatchFile[],
    private readonly stdin: string | undefined,
    private readonly options: BatchRunOptions,
  ) {
    this.runId = runId ?? randomUUID();
    this.output = new ConsoleOutput(options.maxOutputBytes);
    this.clock = options.clock ?? Date.now;
  }

  get done(): boolean {
    return this.timedOut || this.abortedBecause !== undefined || this.exitCode !== undefined;
  }

  /** Writes the files (a failure is the request's: it throws), then runs the steps in the background. */
  async start(): Promise<void> {
    await this.writeFiles();
    this.deadline = this.clock() + this.options.timeoutMs;
    this.backstop = setTimeout(() => {
      if (this.done) return;
      this.expiring = true;
      void Promise.resolve()
        .then(() => this.options.onTimeout())
        .catch(() => undefined)
        .finally(() => {
          this.timedOut = true;
          this.notify();
        });
    }, this.options.timeoutMs + (this.options.backstopGraceMs ?? BACKSTOP_GRACE_MS));
    this.backstop.unref();
    this.stepsDone = this.steps();
  }

  /**
   * Places the files through the image's file helper, as a v1 upload: the work directory is the kernel's
   * to rewrite between runs, and `tar -x` there followed a link planted where a file's directory goes
   * (`d -> /tmp/elsewhere`, or a directory swapped for a link mid-way), writing outside /home/work. The
   * helper walks every path without following links, stages the files unnamed and links them into place
   * only once all arrived, so a refusal leaves nothing behind.
   */
  private async writeFiles(): Promise<void> {
    if (this.files.length === 0) return;
    const kernel = this.options.kernel;
    // The idle clock is the run's own (onActivity); the helper's touch goes to a stand-in.
    const target = { exec: kernel.exec.bind(kernel), kernel: { lastActivity: 0 } };
    async function* parts(files: readonly BatchFile[]): AsyncGenerator<UploadPart> {
      for (const file of files) {
        yield {
          name: file.name,
          data: (async function* () {
            yield Buffer.from(file.content, 'utf8');
          })(),
        };
      }
    }
    try {
      await BATCH_FILE_WRITER.upload(target, parts(this.files));
    } catch (error) {
      if (error instanceof DomainError) throw new DomainError(error.code, `could not write options.files into the work directory: ${error.message.replace(/; nothing was written$/, '')}; nothing was written`);
      throw error;
    } finally {
      this.options.onActivity();
    }
  }

  private async steps(): Promise<void> {
    try {
      if (this.commands.build) {
        const build = await this.step(this.commands.build, undefined);
        if (this.done) return;
        if (this.interruptRequested) return await this.endInterrupted();
        if (build === 'timeout') return this.timeOut();
        if (build !== 0) {
          await this.clean();
          return this.finish(BUILD_FAILED_EXIT_CODE);
        }
      }
      this.buildTail = this.output.take();
      this.buildFinished = true;
      this.notify();
      if (this.interruptRequested) return await this.endInterrupted();
      // Always some stdin, even empty: a program that reads it gets EOF, never an open pipe.
      const exec = this.commands.exec ? await this.step(this.commands.exec, this.stdin ?? '') : 0;
      if (this.done) return;
      if (this.interruptRequested) return await this.endInterrupted();
      if (exec === 'timeout') return this.timeOut();
      await this.clean();
      this.finish(exec);
    } catch (error) {
      if (this.done) return;
      this.options.onError(error as Error);
      const why = error instanceof DomainError ? error.message : 'internal error; the service logged the details';
      this.output.notice(`\n[batch step failed: ${why}]\n`);
      this.finish(1);
    }
  }

  /**
   * Runs one step under the remaining budget, its output going to the console when `report`; an interrupt
   * stops it unless it is the clean step (`report` false), which is bounded by the run's deadline only.
   */
  private async step(command: string, stdin: string | undefined, report = true): Promise<StepOutcome> {
    const remainingMs = this.deadline - this.clock();
    if (remainingMs <= 0) return 'timeout';
    const decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
    const marker = randomUUID();
    const running = this.options.kernel.exec(
      { cmd: bounded(['sh', '-c', command], remainingMs), stdin, env: { [STEP_MARKER_VARIABLE]: marker } },
      (stream, chunk) => {
        this.options.onActivity();
        if (!report) return;
        const text = decoders[stream].write(chunk);
        if (text) {
          this.output.push([stream, text]);
          // A streaming client is sent output as it comes (see next's `eager`).
          this.notify();
        }
      },
    );
    this.runningStep = { marker, ended: running.catch(() => undefined), interruptible: report };
    let exitCode: number;
    try {
      ({ exitCode } = await running);
    } finally {
      this.runningStep = undefined;
    }
    if (report) {
      for (const stream of ['stdout', 'stderr'] as const) {
        const rest = decoders[stream].end();
        if (rest) this.output.push([stream, rest]);
      }
    }
    this.options.onActivity();
    // `timeout -s KILL` kills its own process group, itself included: 137, and never before the deadline.
    if (exitCode === KILLED_EXIT_CODE && this.clock() >= this.deadline) return 'timeout';
    return exitCode;
  }

  private async clean(): Promise<void> {
    if (!this.commands.clean) return;
    const outcome = await this.step(this.commands.clean, undefined, false);
    if (outcome !== 0) {
      this.output.notice(`\n[clean ${outcome === 'timeout' ? 'ran out of time' : `exited with ${outcome}`}]\n`);
    }
  }

  /** The interrupted run: its clean step (the work directory left as after any run), then exit code 130. */
  private async endInterrupted(): Promise<void> {
    await this.clean();
    this.output.notice('\n[interrupted]\n');
    this.finish(INTERRUPTED_EXIT_CODE);
  }

  /** Stops the running step (SIGINT, then SIGKILL past the grace) and skips the steps still to come. */
  interrupted(): void {
    if (this.done || this.expiring || this.interruptRequested) return;
    this.interruptRequested = true;
    const step = this.runningStep;
    // The clean step is what leaves the work directory as after any run: an interrupt that comes while it
    // runs (the exec step already over) lets it end; the run then ends as its exec step did.
    if (step?.interruptible) void this.stopStep(step);
  }

  private async stopStep(step: { marker: string; ended: Promise<unknown> }): Promise<void> {
    try {
      await this.signalStep(step.marker, 'INT');
      let grace: NodeJS.Timeout | undefined;
      const graceOver = new Promise<boolean>((resolve) => (grace = setTimeout(() => resolve(true), this.options.interruptGraceMs ?? BATCH_INTERRUPT_GRACE_MS)));
      const stillRunning = await Promise.race([graceOver, step.ended.then(() => false)]);
      clearTimeout(grace);
      if (stillRunning) await this.signalStep(step.marker, 'KILL');
    } catch (error) {
      // The container is going (the kernel was removed): the step ends with it.
      this.options.onError(error as Error);
    }
  }

  private signalStep(marker: string, signal: 'INT' | 'KILL'): Promise<unknown> {
    return this.options.kernel.exec(
      { cmd: bounded(['sh', '-c', SIGNAL_MARKED, 'sh', signal, `${STEP_MARKER_VARIABLE}=${marker}`], SIGNAL_TIMEOUT_MS) },
      () => undefined,
    );
  }

  private finish(exitCode: number): void {
    this.exitCode = exitCode;
    this.notify();
  }

  private timeOut(): void {
    this.timedOut = true;
    this.notify();
  }

  private notify(): void {
    this.boundary.notify();
  }

  private get atBoundary(): boolean {
    return this.done || (this.buildFinished && !this.buildFinishedReported);
  }

  /** Resolves at the next boundary (build finished, finished, timeout; output too when eager) or after `flushWindowMs`. */
  async next(flushWindowMs: number, options: NextOptions = {}): Promise<RunResult> {
    const reached = options.eager ? () => this.atBoundary || this.output.hasPending : () => this.atBoundary;
    await this.boundary.until(reached, flushWindowMs);
    return this.result();
  }

  /** Resolves when the steps have ended (clean included), whichever way. */
  ended(): Promise<unknown> {
    return this.stepsDone;
  }

  private result(): RunResult {
    const interrupted = this.timedOut || this.abortedBecause !== undefined;
    if (this.buildFinished && !this.buildFinishedReported && !interrupted) {
      this.buildFinishedReported = true;
      return this.reply('build-finished', null, this.takeBuildTail());
    }
    const console = [...this.takeBuildTail(), ...this.output.take()];
    if (this.timedOut) return this.reply('exec-timeout', null, console);
    if (this.abortedBecause !== undefined) return this.reply('finished', KILLED_EXIT_CODE, console);
    if (this.exitCode !== undefined) return this.reply('finished', this.exitCode, console);
    return this.reply('continued', null, console);
  }

  private takeBuildTail(): ConsoleItem[] {
    const tail = this.buildTail;
    this.buildTail = [];
    return tail;
  }

  private reply(status: RunStatus, exitCode: number | null, console: ConsoleItem[]): RunResult {
    if (status === 'finished' || status === 'exec-timeout') this.dispose();
    return { runId: this.runId, status, exitCode, console, options: {} };
  }

  async sendInput(_line: string): Promise<void> {
    throw invalidInput(`run ${this.runId} is a batch run: its program reads options.stdin; mode "input" answers query runs`);
  }

  abort(reason: string): void {
    if (this.done || this.expiring) return;
    this.abortedBecause = reason;
    this.output.notice(`\n[kernel died: ${reason}]\n`);
    this.notify();
  }

  get bufferedBytes(): number {
    let bytes = this.output.bufferedBytes;
    for (const [, value] of this.buildTail) bytes += typeof value === 'string' ? value.length : value[1].length;
    return bytes;
  }

  /** The steps run on to their end under their budget (the backstop stays); their output is not kept. */
  discard(): void {
    this.output.discard();
    this.buildTail = [];
  }

  dispose(): void {
    clearTimeout(this.backstop);
  }
}

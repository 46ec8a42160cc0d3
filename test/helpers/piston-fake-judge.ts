/**
 * A judge engine for the unit tests of the Piston API: scripted results, every call recorded. Interactive
 * runs echo each stdin line to stdout upper-cased, end with the signal they are sent, and can flood.
 */
import { EventEmitter } from 'node:events';
import { limitExceeded } from '../../src/errors.js';
import type { CompileResult, InteractiveRun, JudgeEngine, JudgeLanguage, JudgeResult, RunMeasurement, Submission } from '../../src/judge/model.js';

export const FAKE_LANGUAGES: JudgeLanguage[] = [
  { name: 'python3', displayName: 'Python (3.11.2)', version: '3.11.2', aliases: ['python'], sourceFile: 'main.py', runCommand: 'python3 main.py' },
  { name: 'c', displayName: 'C (gcc 12.2.0)', version: 'gcc 12.2.0', aliases: [], sourceFile: 'main.c', compileCommand: 'gcc main.c', runCommand: './a.out' },
];

export const measured = (extra: Partial<RunMeasurement> = {}): RunMeasurement => ({
  cpuTimeMs: 5,
  wallTimeMs: 7,
  memoryKB: 2048,
  exitCode: 0,
  signal: null,
  stdout: Buffer.alloc(0),
  stderr: Buffer.alloc(0),
  ...extra,
});

export class FakeInteractiveRun implements InteractiveRun {
  readonly received: Buffer[] = [];
  readonly signals: string[] = [];
  readonly done: Promise<RunMeasurement>;
  private readonly events = new EventEmitter();
  private finish!: (m: RunMeasurement) => void;
  private reject!: (error: Error) => void;
  private line = '';
  ended = false;
  /** Past this many bytes written, write() refuses as the sandbox does when its program leaves stdin unread. */
  stdinBound = Infinity;
  private written = 0;

  constructor() {
    this.done = new Promise((resolve, reject) => {
      this.finish = resolve;
      this.reject = reject;
    });
    this.done.catch(() => undefined);
  }

  write(data: Buffer): void {
    this.written += data.length;
    if (this.written > this.stdinBound) throw limitExceeded(`the program has ${this.written} bytes of input it has not read yet; at most ${this.stdinBound} may wait`);
    this.received.push(data);
    this.line += data.toString();
    let newline: number;
    while ((newline = this.line.indexOf('\n')) >= 0) {
      const text = this.line.slice(0, newline + 1);
      this.line = this.line.slice(newline + 1);
      this.emit('stdout', Buffer.from(text.toUpperCase()));
    }
  }

  endInput(): void {
    this.end(measured());
  }

  /** The program dies a moment later, as a real one does (a close meanwhile wins). */
  signal(name: string): void {
    this.signals.push(name);
    setImmediate(() => this.end(measured({ exitCode: null, signal: name })));
  }

  onOutput(listener: (stream: 'stdout' | 'stderr', data: Buffer) => void): void {
    this.events.on('output', listener);
  }

  emit(stream: 'stdout' | 'stderr', data: Buffer): void {
    if (!this.ended) this.events.emit('output', stream, data);
  }

  end(measurement: RunMeasurement): void {
    if (this.ended) return;
    this.ended = true;
    this.finish(measurement);
  }

  /** As the real sandbox does when it is closed under a run. */
  fail(error: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.reject(error);
  }
}

export class FakeJudge implements JudgeEngine {
  readonly submissions: Array<{ submission: Submission; signal?: AbortSignal }> = [];
  readonly interactives: Array<{ submission: Omit<Submission, 'tests' | 'comparison' | 'checker'>; run?: FakeInteractiveRun; closed: boolean }> = [];
  /** What judge() answers; by default an accepted run printing "ok". */
  answer: (submission: Submission, signal?: AbortSignal) => Promise<JudgeResult> = async () => ({
    tests: [{ verdict: 'accepted', ...measured({ stdout: Buffer.from('ok\n') }) }],
    verdict: 'accepted',
    compilations: 0,
  });
  /** What interactive() compiles to; undefined = nothing to compile. */
  compile?: CompileResult;
  /** How long interactive() takes to compile. */
  compileDelayMs = 0;
  /** Called with each new interactive run (to flood it, say). */
  onRun?: (run: FakeInteractiveRun) => void;
  languagesError?: Error;

  async languages(): Promise<JudgeLanguage[]> {
    if (this.languagesError) throw this.languagesError;
    return FAKE_LANGUAGES;
  }

  async judge(submission: Submission, signal?: AbortSignal): Promise<JudgeResult> {
    this.submissions.push({ submission, signal });
    return this.answer(submission, signal);
  }

  async interactive(submission: Omit<Submission, 'tests' | 'comparison' | 'checker'>) {
    const record: (typeof this.interactives)[number] = { submission, closed: false };
    this.interactives.push(record);
    if (this.compileDelayMs) await new Promise((resolve) => setTimeout(resolve, this.compileDelayMs));
    const compile = this.compile;
    let run: FakeInteractiveRun | undefined;
    if (!compile || compile.ok) {
      run = new FakeInteractiveRun();
      record.run = run;
      const started = run;
      setImmediate(() => this.onRun?.(started));
    }
    return {
      compile,
      run,
      close: async () => {
        record.closed = true;
        run?.fail(new Error('the judge sandbox is closed'));
      },
    };
  }
}

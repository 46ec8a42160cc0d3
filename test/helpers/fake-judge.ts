/**
 * A JudgeEngine for unit tests of the layers above it (the Judge0 API, the submission queue): languages as
 * the images name them, and `judge` answered by the test's own function, so the mapping of every verdict
 * can be pinned without a container. The real engine is exercised by the integration tests.
 */
import type { JudgeEngine, JudgeLanguage, JudgeResult, Submission, TestResult } from '../../src/judge/model.js';

export const FAKE_LANGUAGES: JudgeLanguage[] = [
  { name: 'c', displayName: 'C (gcc 12.2.0)', version: '12.2.0', aliases: [], sourceFile: 'main.c', compileCommand: 'gcc -O2 -o main main.c -lm', runCommand: './main' },
  { name: 'python3', displayName: 'Python (3.11.2)', version: '3.11.2', aliases: ['python', 'py'], sourceFile: 'main.py', runCommand: 'python3 main.py' },
];

export type Judging = (submission: Submission, signal?: AbortSignal) => Promise<JudgeResult> | JudgeResult;

export class FakeJudge implements JudgeEngine {
  readonly judged: Submission[] = [];

  constructor(public judging: Judging = () => accepted('')) {}

  async languages(): Promise<JudgeLanguage[]> {
    return FAKE_LANGUAGES;
  }

  async judge(submission: Submission, signal?: AbortSignal): Promise<JudgeResult> {
    this.judged.push(submission);
    return this.judging(submission, signal);
  }

  async interactive(): Promise<never> {
    throw new Error('not in the fake');
  }
}

export function run(partial: Partial<TestResult> & Pick<TestResult, 'verdict'>): TestResult {
  return {
    cpuTimeMs: 12,
    wallTimeMs: 20,
    memoryKB: 1234,
    exitCode: 0,
    signal: null,
    stdout: Buffer.alloc(0),
    stderr: Buffer.alloc(0),
    ...partial,
  };
}

export function result(tests: TestResult[], compile?: JudgeResult['compile']): JudgeResult {
  const failed = tests.find((t) => t.verdict !== 'accepted');
  return { compile, tests, verdict: compile && !compile.ok ? 'compilation_error' : (failed?.verdict ?? 'accepted'), compilations: compile ? 1 : 0 };
}

export const accepted = (stdout: string | Buffer) => result([run({ verdict: 'accepted', stdout: Buffer.isBuffer(stdout) ? stdout : Buffer.from(stdout) })]);

/** A promise the test settles, for an engine that must wait (a run in progress, a restart). */
export function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (error: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

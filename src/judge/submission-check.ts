/**
 * What the engine checks of a submission before it takes a slot: the bounds that keep one submission from
 * holding the service's memory or a sandbox for ever (tests, files, bytes, runs per test), file names that
 * stay inside the work directory, and every limit (per-test overrides too) within the server's caps. The
 * APIs check their own fields first; this is the one place the engine's own bounds are enforced, whatever
 * the API. Every refusal says what to fix.
 */
import type { Config } from '../config/index.js';
import { RUN_LIMIT_NAMES } from '../config/index.js';
import { DomainError, invalidInput } from '../errors.js';
import type { RunLimits, SourceFile, Submission } from './model.js';

export type JudgeBounds = Pick<
  Config,
  'judgeMaxTests' | 'judgeMaxFiles' | 'judgeMaxBytes' | 'judgeMaxRunsPerTest' | 'judgeLimitCaps' | 'judgeCompileLimitCaps'
>;

/** The names a checker's sandbox gives testlib's three files, in a directory per test (test-<n>/). */
export const CHECKER_FILES = { input: 'input.txt', output: 'output.txt', answer: 'answer.txt' } as const;
/** The per-test directories of a checker's sandbox: a checker's own files may not start so. */
export const CHECKER_TEST_DIR_PREFIX = 'test-';

/** One path segment: letters, digits, `_`, `-`, `+`, `.`, not starting with a dot or a dash (no option look-alikes). */
const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}$/;

/** Why a file name is refused, or undefined when it is fine (relative, inside the work directory). */
export function fileNameProblem(name: string): string | undefined {
  if (name.length > 255) return 'is longer than 255 characters';
  const segments = name.split('/');
  if (segments.length > 8) return 'has more than 8 path segments';
  for (const segment of segments) {
    if (!SEGMENT.test(segment)) {
      return 'must be a relative path of names made of letters, digits, _ - + and . (not starting with . or -)';
    }
  }
  return undefined;
}

function checkFiles(files: SourceFile[], what: string, maxFiles: number, reserved: readonly string[] = []): void {
  if (files.length === 0) throw invalidInput(`${what} has no source file`);
  if (files.length > maxFiles) throw invalidInput(`${what} has ${files.length} files; this server takes at most ${maxFiles}`);
  const seen = new Set<string>();
  files.forEach((file, index) => {
    // The main file's name may be left to the language.
    if (index === 0 && file.name === '') return;
    const problem = fileNameProblem(file.name);
    if (problem) throw invalidInput(`${what}: file name ${JSON.stringify(file.name.slice(0, 100))} ${problem}`);
    if (reserved.some((prefix) => file.name.startsWith(prefix))) {
      throw invalidInput(`${what}: ${file.name} is a name the checker's sandbox uses for the tests' files (names starting with ${reserved.join(', ')})`);
    }
    if (seen.has(file.name)) throw invalidInput(`${what}: two files are named ${file.name}`);
    seen.add(file.name);
  });
}

function checkLimits(limits: RunLimits, caps: RunLimits, what: string): void {
  for (const name of RUN_LIMIT_NAMES) {
    const value = limits[name];
    if (!Number.isFinite(value) || value < 0) throw invalidInput(`${what}: ${name} must be a number, 0 or more`);
    if (value > caps[name]) throw invalidInput(`${what}: ${name} ${value} is above this server's limit of ${caps[name]}`);
  }
}

/** The limits of one test: the submission's, with the test's own overrides. */
export function testLimits(submission: Submission, index: number): RunLimits {
  return { ...submission.limits, ...definedOnly(submission.tests[index]?.limits ?? {}) };
}

function definedOnly(limits: Partial<RunLimits>): Partial<RunLimits> {
  return Object.fromEntries(Object.entries(limits).filter(([, value]) => value !== undefined)) as Partial<RunLimits>;
}

export function submissionBytes(submission: Pick<Submission, 'files' | 'checker'> & { tests?: Submission['tests'] }): number {
  let bytes = 0;
  for (const file of submission.files) bytes += file.content.length + file.name.length;
  for (const file of submission.checker?.files ?? []) bytes += file.content.length + file.name.length;
  for (const test of submission.tests ?? []) bytes += test.stdin.length + (test.expectedOutput?.length ?? 0);
  return bytes;
}

/** Checks everything the engine bounds; throws a DomainError (400, or 413 for bytes) that says what to fix. */
export function checkSubmission(submission: Submission, bounds: JudgeBounds): void {
  checkShape(submission, bounds);
  if (submission.tests.length === 0) throw invalidInput('a submission needs at least one test case');
  if (submission.tests.length > bounds.judgeMaxTests) {
    throw invalidInput(`a submission has ${submission.tests.length} test cases; this server takes at most ${bounds.judgeMaxTests}`);
  }
  const runs = submission.runsPerTest ?? 1;
  if (!Number.isInteger(runs) || runs < 1 || runs > bounds.judgeMaxRunsPerTest) {
    throw invalidInput(`number of runs per test must be a whole number from 1 to ${bounds.judgeMaxRunsPerTest}, got ${runs}`);
  }
  submission.tests.forEach((_, index) => checkLimits(testLimits(submission, index), bounds.judgeLimitCaps, `test ${index + 1}`));
  if (submission.checker) checkFiles(submission.checker.files, 'the checker', bounds.judgeMaxFiles, [CHECKER_TEST_DIR_PREFIX]);
}

/** What an interactive run and a judged one share: files, bytes, limits. */
export function checkShape(submission: Pick<Submission, 'files' | 'checker' | 'limits' | 'compileLimits'> & { tests?: Submission['tests'] }, bounds: JudgeBounds): void {
  checkFiles(submission.files, 'the submission', bounds.judgeMaxFiles);
  const bytes = submissionBytes(submission);
  if (bytes > bounds.judgeMaxBytes) {
    throw new DomainError(
      'payload_too_large',
      `the submission's files, test inputs and expected outputs are ${bytes} bytes together; this server takes at most ${bounds.judgeMaxBytes}`,
    );
  }
  checkLimits(submission.limits, bounds.judgeLimitCaps, 'the run limits');
  checkLimits(submission.compileLimits, bounds.judgeCompileLimitCaps, 'the compile limits');
}

/**
 * A measured run as one of Piston's stages (`compile`, `run`): its output, how it ended, and the
 * two-letter status and message Piston takes from isolate's meta file (api/src/job.js safe_call):
 * RE "Exited with error status N", SG "Caught fatal signal N", TO "Time limit exceeded" (CPU) or
 * "Time limit exceeded (wall clock)", OL "stdout length exceeded", EL "stderr length exceeded", XX an
 * internal error. As Piston, a run killed for time or output reports signal SIGKILL.
 *
 * Unlike Piston, the output a program wrote before a kill is kept (Piston loses it on a timeout), and a
 * run stopped at the output cap says so in `status` and `message`.
 */
import { constants } from 'node:os';
import type { CompileResult, RunMeasurement, TestResult } from '../../judge/model.js';

export type PistonStatus = 'RE' | 'SG' | 'TO' | 'OL' | 'EL' | 'XX';

export interface PistonStage {
  stdout: string;
  stderr: string;
  /** stdout then stderr: the engine keeps the two streams apart, not their interleaving. */
  output: string;
  code: number | null;
  signal: string | null;
  message: string | null;
  status: PistonStatus | null;
  /** ms */
  cpu_time: number | null;
  /** ms */
  wall_time: number | null;
  /** bytes */
  memory: number | null;
}

export interface PistonResult {
  compile?: PistonStage;
  run: PistonStage;
  language: string;
  version: string;
}

const SIGNAL_NUMBERS = constants.signals as Record<string, number | undefined>;

/** The number of a signal name, for isolate's "Caught fatal signal N"; 0 when unknown. */
export function signalNumber(name: string): number {
  return SIGNAL_NUMBERS[name] ?? 0;
}

/** Every signal name a /connect client may send (Piston's globals.SIGNALS: Linux's, by name). */
export function isSignalName(name: unknown): name is string {
  return typeof name === 'string' && SIGNAL_NUMBERS[name] !== undefined && /^SIG[A-Z0-9]+$/.test(name);
}

/** How a run ended, in Piston's terms: status, message, and the signal it reports. */
export function endingOf(run: Pick<RunMeasurement, 'exitCode' | 'signal' | 'killedFor' | 'stdout' | 'stderr'>): {
  status: PistonStatus | null;
  message: string | null;
  signal: string | null;
} {
  switch (run.killedFor) {
    case 'cpu-time':
      return { status: 'TO', message: 'Time limit exceeded', signal: 'SIGKILL' };
    case 'wall-time':
      return { status: 'TO', message: 'Time limit exceeded (wall clock)', signal: 'SIGKILL' };
    case 'output':
      // stdout and stderr share one cap here; the stream that took most of it is the one named.
      return run.stderr.length > run.stdout.length
        ? { status: 'EL', message: 'stderr length exceeded', signal: 'SIGKILL' }
        : { status: 'OL', message: 'stdout length exceeded', signal: 'SIGKILL' };
    case 'memory':
      // isolate reports a cgroup OOM kill as the signal it is (SG); the message also says why.
      return withCause(plainEnding(run), 'Memory limit exceeded');
    case 'processes':
      return withCause(plainEnding(run), 'Process limit exceeded');
    default:
      return plainEnding(run);
  }
}

function plainEnding(run: Pick<RunMeasurement, 'exitCode' | 'signal'>): { status: PistonStatus | null; message: string | null; signal: string | null } {
  if (run.signal) return { status: 'SG', message: `Caught fatal signal ${signalNumber(run.signal)}`, signal: run.signal };
  if (run.exitCode !== null && run.exitCode !== 0) return { status: 'RE', message: `Exited with error status ${run.exitCode}`, signal: null };
  return { status: null, message: null, signal: null };
}

/** A kill at the memory or process limit: how it ended, prefixed with why (a runtime may exit 1 on it). */
function withCause(ending: ReturnType<typeof plainEnding>, cause: string): ReturnType<typeof plainEnding> {
  if (!ending.status) return { status: 'SG', message: `${cause} (caught fatal signal 9)`, signal: 'SIGKILL' };
  return { ...ending, message: `${cause} (${ending.message!.charAt(0).toLowerCase()}${ending.message!.slice(1)})` };
}

export function stageOf(run: RunMeasurement | CompileResult | TestResult): PistonStage {
  const stdout = run.stdout.toString('utf8');
  const stderr = run.stderr.toString('utf8');
  const verdict = (run as TestResult).verdict;
  const ending =
    verdict === 'internal_error'
      ? { status: 'XX' as const, message: (run as TestResult).message ?? 'Internal error', signal: run.signal }
      : endingOf(run);
  return {
    stdout,
    stderr,
    output: stdout + stderr,
    code: run.exitCode,
    signal: ending.signal,
    message: ending.message,
    status: ending.status,
    cpu_time: run.cpuTimeMs,
    wall_time: run.wallTimeMs,
    memory: run.memoryKB * 1024,
  };
}

/**
 * The answer of POST /api/v2/execute. After a failed compile Piston sends the compile stage as `run` too
 * ("backward compatibility when the run stage is not started"), and so does this: nothing ran.
 */
export function resultOf(runtime: { language: string; version: string }, judged: { compile?: CompileResult; tests: TestResult[] }): PistonResult {
  const compile = judged.compile ? stageOf(judged.compile) : undefined;
  const test = judged.tests[0];
  const run = test ? stageOf(test) : compile;
  if (!run) throw new Error('the engine returned neither a compile step nor a run');
  return compile ? { compile, run, language: runtime.language, version: runtime.version } : { run, language: runtime.language, version: runtime.version };
}

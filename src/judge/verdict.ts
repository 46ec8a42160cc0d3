/**
 * A run's verdict from its measurement and limits: pure, so every edge (a run over its CPU time that was
 * only killed at cpu + extra, output kept up to a kill, a signal versus an exit status) is unit-tested
 * without a sandbox. The order is Judge0's (isolate's status first: time, signal, exit status; the output
 * is compared only for a run that ended well), with the verdicts Judge0 lacks (memory and output limits)
 * ahead of the signal the kill sent.
 */
import { constants } from 'node:os';
import type { RunLimits, RunMeasurement, Verdict } from './model.js';

export interface RunVerdict {
  verdict: Verdict;
  timeLimit?: 'cpu' | 'wall';
  message?: string;
}

/** "SIGSEGV" -> 11, as Judge0 reports `exit_signal` and words its message; undefined for an unknown name. */
export function signalNumber(name: string): number | undefined {
  return (constants.signals as Record<string, number | undefined>)[name];
}

export function signalMessage(name: string): string {
  const number = signalNumber(name);
  return number === undefined ? `Killed by ${name}` : `Killed by signal ${number} (${name})`;
}

/**
 * How the run ended, before its output is looked at: undefined when it exited 0 within every limit (the
 * caller compares the output then). Time is judged on what was measured, not only on why it was killed:
 * the supervisor lets a run go on for `extraCpuTimeMs` past its CPU limit, and one that used more than
 * `cpuTimeMs` is over the limit whether or not the kill came.
 */
export function endingVerdict(run: RunMeasurement, limits: RunLimits): RunVerdict | undefined {
  if (run.killedFor === 'cpu-time' || run.cpuTimeMs > limits.cpuTimeMs) {
    return { verdict: 'time_limit_exceeded', timeLimit: 'cpu', message: 'Time limit exceeded' };
  }
  if (run.killedFor === 'wall-time' || run.wallTimeMs > limits.wallTimeMs) {
    return { verdict: 'time_limit_exceeded', timeLimit: 'wall', message: 'Time limit exceeded (wall clock)' };
  }
  if (run.killedFor === 'memory' || run.memoryKB > limits.memoryKB) {
    return { verdict: 'memory_limit_exceeded', message: 'Memory limit exceeded' };
  }
  if (run.killedFor === 'output') {
    return { verdict: 'output_limit_exceeded', message: `Output limit exceeded (more than ${limits.maxOutputBytes} bytes)` };
  }
  if (run.killedFor === 'processes') {
    return { verdict: 'runtime_error', message: `Killed: more than ${limits.maxProcesses} processes and threads` };
  }
  if (run.signal) return { verdict: 'runtime_error', message: signalMessage(run.signal) };
  if (run.exitCode !== 0) return { verdict: 'runtime_error', message: `Exited with error status ${run.exitCode ?? 'unknown'}` };
  return undefined;
}

/**
 * Figures of several runs of one test (Judge0's number_of_runs): time and memory averaged, the rest (how
 * it ended, its output) from the last run, which is the first that was not accepted when one was not.
 */
export function averageRuns(runs: RunMeasurement[]): RunMeasurement {
  const last = runs[runs.length - 1];
  const mean = (pick: (run: RunMeasurement) => number) => runs.reduce((sum, run) => sum + pick(run), 0) / runs.length;
  return { ...last, cpuTimeMs: mean((run) => run.cpuTimeMs), wallTimeMs: mean((run) => run.wallTimeMs), memoryKB: mean((run) => run.memoryKB) };
}

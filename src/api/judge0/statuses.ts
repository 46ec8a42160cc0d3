/**
 * Judge0's statuses (app/enumerations/status.rb: ids 1-14 and their names), and two it lacks: Memory
 * Limit Exceeded (15) and Output Limit Exceeded (16). They come after 14 on purpose: Judge0's clients poll
 * while `status.id <= 2` and treat `3` as accepted and anything above as a failed run, so a client that
 * knows only Judge0's ids still stops polling and reports a failure, and reads our `description`. With
 * POLYKERNEL_JUDGE0_STATUS_IDS=judge0 they answer the ids Judge0 itself ends such runs with instead (a
 * memory kill is "Runtime Error (Other)", 12; output past the file-size limit is SIGXFSZ, 8), still with
 * our description, for clients whose table of ids is closed.
 */
import { constants } from 'node:os';
import type { TestResult, Verdict } from '../../judge/model.js';

export interface Judge0Status {
  id: number;
  description: string;
}

export const STATUSES: readonly Judge0Status[] = [
  { id: 1, description: 'In Queue' },
  { id: 2, description: 'Processing' },
  { id: 3, description: 'Accepted' },
  { id: 4, description: 'Wrong Answer' },
  { id: 5, description: 'Time Limit Exceeded' },
  { id: 6, description: 'Compilation Error' },
  { id: 7, description: 'Runtime Error (SIGSEGV)' },
  { id: 8, description: 'Runtime Error (SIGXFSZ)' },
  { id: 9, description: 'Runtime Error (SIGFPE)' },
  { id: 10, description: 'Runtime Error (SIGABRT)' },
  { id: 11, description: 'Runtime Error (NZEC)' },
  { id: 12, description: 'Runtime Error (Other)' },
  { id: 13, description: 'Internal Error' },
  { id: 14, description: 'Exec Format Error' },
  { id: 15, description: 'Memory Limit Exceeded' },
  { id: 16, description: 'Output Limit Exceeded' },
];

export type StatusIds = 'extended' | 'judge0';

const byId = new Map(STATUSES.map((status) => [status.id, status]));

export const IN_QUEUE = byId.get(1)!;
export const PROCESSING = byId.get(2)!;
export const COMPILATION_ERROR = byId.get(6)!;
export const INTERNAL_ERROR = byId.get(13)!;

/** What /statuses lists: Judge0's, and ours when they are in use. */
export function listedStatuses(mode: StatusIds): Judge0Status[] {
  return STATUSES.filter((status) => mode === 'extended' || status.id <= 14);
}

/** Runtime errors by signal, as Judge0's find_runtime_error_by_status_code. */
const BY_SIGNAL: Record<string, number> = { SIGSEGV: 7, SIGXFSZ: 8, SIGFPE: 9, SIGABRT: 10 };

const SIMPLE: Partial<Record<Verdict, number>> = {
  accepted: 3,
  wrong_answer: 4,
  time_limit_exceeded: 5,
  compilation_error: 6,
  internal_error: 13,
};

/** The status of one judged run. */
export function statusOf(test: Pick<TestResult, 'verdict' | 'signal' | 'exitCode'>, mode: StatusIds): Judge0Status {
  const simple = SIMPLE[test.verdict];
  if (simple !== undefined) return byId.get(simple)!;
  switch (test.verdict) {
    case 'memory_limit_exceeded':
      return mode === 'extended' ? byId.get(15)! : { id: 12, description: byId.get(15)!.description };
    case 'output_limit_exceeded':
      return mode === 'extended' ? byId.get(16)! : { id: 8, description: byId.get(16)!.description };
    default: {
      const bySignal = test.signal ? BY_SIGNAL[test.signal] : undefined;
      if (bySignal !== undefined) return byId.get(bySignal)!;
      if (test.signal === null && test.exitCode !== null && test.exitCode !== 0) return byId.get(11)!;
      return byId.get(12)!;
    }
  }
}

/** Judge0's exit_signal is the signal's number. */
export function signalNumber(name: string | null): number | null {
  if (!name) return null;
  return (constants.signals as Record<string, number>)[name] ?? null;
}

/**
 * Judge0's `message` comes from isolate; the same words are used for the same endings, so that clients
 * matching them keep working. Other verdicts take the engine's message.
 */
export function messageOf(test: TestResult): string | null {
  if (test.verdict === 'time_limit_exceeded') return test.timeLimit === 'wall' ? 'Time limit exceeded (wall clock)' : 'Time limit exceeded';
  if (test.verdict === 'runtime_error') {
    // A kill of the supervisor's (too many processes) says why; a signal of the program's own, which.
    if (test.killedFor && test.message) return test.message;
    const number = signalNumber(test.signal);
    if (number !== null) return `Caught fatal signal ${number}`;
    if (test.exitCode) return `Exited with error status ${test.exitCode}`;
  }
  if (test.verdict === 'accepted' || test.verdict === 'wrong_answer') return null;
  return test.message ?? null;
}

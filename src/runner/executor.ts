/**
 * What the runner's kernel needs from a cell model (languages.ts): run a cell, say whether code is
 * complete, stop. User code never runs in the runner process itself: it runs in child processes, so the
 * runner keeps answering the heartbeat, control and interrupts whatever the code does.
 */
export type StreamName = 'stdout' | 'stderr';

/** Where a child's output goes (iopub `stream` messages of the current parent). */
export interface OutputSink {
  /** False when the consumer is backed up: the caller pauses its source until `onDrain`. */
  write(name: StreamName, text: string): boolean;
  onDrain(callback: () => void): void;
}

export interface ExecutorOptions {
  /** The work directory (the container's /home/work): cwd of everything a cell runs. */
  workDir: string;
  output: OutputSink;
}

export interface Cell {
  readonly code: string;
  /** The execution count (names the cell in tracebacks). */
  readonly count: number;
  readonly allowStdin: boolean;
  /** Aborted when the cell is interrupted (SIGINT or interrupt_request). */
  readonly signal: AbortSignal;
  /** Asks the client for one line (input_request); rejects when interrupted or stdin is not allowed. */
  input(prompt?: string, password?: boolean): Promise<string>;
}

export type CellOutcome =
  | { status: 'ok'; data?: Record<string, unknown> }
  | { status: 'error'; ename: string; evalue: string; traceback: string[] };

export type IsCompleteStatus = 'complete' | 'incomplete' | 'invalid' | 'unknown';

export interface Executor {
  /** Starts what the executor keeps running between cells (a shell, a realm); may run in the background. */
  start(): Promise<void>;
  run(cell: Cell): Promise<CellOutcome>;
  isComplete(code: string): Promise<IsCompleteStatus>;
  shutdown(): Promise<void>;
}

export function errorOutcome(ename: string, evalue: string, traceback?: string[]): CellOutcome {
  return { status: 'error', ename, evalue, traceback: traceback ?? [`${ename}: ${evalue}`] };
}

export const INTERRUPTED = 'Interrupted';

export function interruptedOutcome(detail = 'the execution was interrupted'): CellOutcome {
  return errorOutcome(INTERRUPTED, detail);
}

/** How a finished process is described in a `RuntimeError`. */
export function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal) return `the program was killed by ${signal}${signal === 'SIGKILL' ? ' (out of memory?)' : ''}`;
  return `the program exited with status ${code}`;
}

/**
 * A child that lives across cells (bash, the JavaScript realm): cells go to it on fd 3, its stdout and
 * stderr stream to the client all the time, and a cell ends when its end-of-cell marker has come on both
 * streams (sentinel.ts). Output between cells (a background job, a timer) goes to the last cell's parent.
 *
 * Interrupt: SIGINT to the child's process group, repeated until the cell ends. A child blocked reading
 * stdin (bash's `read`, the realm's input()) does not return on SIGINT, so it gets an empty line. A child
 * that has not ended the cell INTERRUPT_GRACE_MS later is killed and started afresh; the outcome says that
 * its state is gone.
 */
import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import type { Writable } from 'node:stream';
import { forward, signalGroup, spawnGroup } from '../child.js';
import {
  errorOutcome,
  interruptedOutcome,
  type Cell,
  type CellOutcome,
  type Executor,
  type ExecutorOptions,
  type IsCompleteStatus,
} from '../executor.js';
import { markerPrefix, SentinelScanner } from '../sentinel.js';
import { processWaitsForInput, serveInput, stdinIdentity } from '../stdin-watch.js';

const INTERRUPT_GRACE_MS = 2000;
const INTERRUPT_REPEAT_MS = 400;

type Ending = { kind: 'marker'; payload: string } | { kind: 'exit'; code: number | null; signal: NodeJS.Signals | null };

interface Running {
  child: ChildProcess;
  token: string;
  stdinIdentity?: string;
  exited: boolean;
  /** The cell in progress: markers seen so far and how to finish it. */
  cell?: { stdoutPayload?: string; stderrSeen: boolean; finish: (ending: Ending) => void };
}

export abstract class PersistentExecutor implements Executor {
  private running?: Running;
  private starting?: Promise<void>;
  private stopping = false;

  constructor(protected readonly options: ExecutorOptions, private readonly what: string) {}

  /** The command line of the child. */
  protected abstract command(): string[];
  /** What goes to fd 3 for a cell. */
  protected abstract encode(cell: Cell): string;
  /** The outcome a stdout marker's payload stands for. */
  protected abstract outcomeOf(payload: string): CellOutcome;
  /** A check before the cell is sent (a syntax check); an outcome here ends the cell. */
  protected async precheck(_cell: Cell): Promise<CellOutcome | undefined> {
    return undefined;
  }

  abstract isComplete(code: string): Promise<IsCompleteStatus>;

  start(): Promise<void> {
    // A start in progress is awaited, not repeated: the cell needs the child's stdin identity.
    if (this.running && !this.running.exited && this.starting) return this.starting;
    this.starting = this.spawn();
    return this.starting;
  }

  private async spawn(): Promise<void> {
    const token = randomBytes(12).toString('hex');
    const child = spawnGroup(this.command(), {
      cwd: this.options.workDir,
      env: { ...process.env, PK_TOKEN: token },
      stdin: 'pipe',
      extraPipes: 1,
    });
    const running: Running = { child, token, exited: false };
    this.running = running;
    const onMarker = (stream: 'stdout' | 'stderr') => (payload: string) => {
      const cell = running.cell;
      if (!cell) return;
      if (stream === 'stdout') cell.stdoutPayload = payload;
      else cell.stderrSeen = true;
      if (cell.stdoutPayload !== undefined && cell.stderrSeen) cell.finish({ kind: 'marker', payload: cell.stdoutPayload });
    };
    const prefix = markerPrefix(token);
    forward(child.stdout!, 'stdout', this.options.output, new SentinelScanner(prefix), onMarker('stdout'));
    forward(child.stderr!, 'stderr', this.options.output, new SentinelScanner(prefix), onMarker('stderr'));
    child.on('error', () => undefined);
    child.once('exit', (code, signal) => {
      running.exited = true;
      signalGroup(child.pid, 'SIGKILL');
      running.cell?.finish({ kind: 'exit', code, signal });
    });
    if (child.pid) running.stdinIdentity = await stdinIdentity(child.pid);
  }

  async run(cell: Cell): Promise<CellOutcome> {
    const checked = await this.precheck(cell);
    if (checked) return checked;
    await this.start();
    const running = this.running!;
    const { child } = running;
    // Interrupted while checking or starting: the cell never reaches the child.
    if (cell.signal.aborted) return interruptedOutcome();
    const done = new AbortController();
    let killedAfterInterrupt = false;
    let graceTimer: NodeJS.Timeout | undefined;
    const ending = new Promise<Ending>((resolve) => {
      running.cell = { stderrSeen: false, finish: resolve };
      if (running.exited) resolve({ kind: 'exit', code: child.exitCode, signal: child.signalCode });
    });
    let repeatTimer: NodeJS.Timeout | undefined;
    const onInterrupt = () => {
      // Again every few hundred ms: a SIGINT that lands before the child has picked the cell up finds
      // nothing to stop (and the child ignores SIGINT between cells).
      const interrupt = () => signalGroup(child.pid, 'SIGINT');
      interrupt();
      repeatTimer = setInterval(interrupt, INTERRUPT_REPEAT_MS);
      void this.unblockReader(running, done.signal);
      graceTimer = setTimeout(() => {
        killedAfterInterrupt = true;
        signalGroup(child.pid, 'SIGKILL');
      }, INTERRUPT_GRACE_MS);
    };
    cell.signal.addEventListener('abort', onInterrupt, { once: true });
    try {
      (child.stdio[3] as Writable).write(this.encode(cell));
      if (cell.allowStdin && child.pid && running.stdinIdentity) {
        void serveInput(child.pid, running.stdinIdentity, child.stdin!, cell, AbortSignal.any([done.signal, cell.signal]));
      }
      const end = await ending;
      if (end.kind === 'exit') {
        if (!this.stopping) void this.start().catch(() => undefined);
        const reset = `a new ${this.what} was started: its state was reset`;
        if (killedAfterInterrupt) return interruptedOutcome(`the ${this.what} did not stop on SIGINT and was killed; ${reset}`);
        const how = end.signal ? `was killed by ${end.signal}` : `exited with status ${end.code}`;
        return errorOutcome('RuntimeError', `the ${this.what} ${how}; ${reset}`);
      }
      if (cell.signal.aborted) return interruptedOutcome();
      return this.outcomeOf(end.payload);
    } finally {
      done.abort();
      clearTimeout(graceTimer);
      clearInterval(repeatTimer);
      cell.signal.removeEventListener('abort', onInterrupt);
      running.cell = undefined;
    }
  }

  /**
   * A child blocked reading stdin does not return on SIGINT (bash's `read` restarts, so does Node's
   * readSync): an empty line lets it return so the interrupt takes effect. The signal is handled
   * asynchronously, so the child is looked at a few times.
   */
  private async unblockReader(running: Running, cellDone: AbortSignal): Promise<void> {
    const { child, stdinIdentity: identity } = running;
    if (!child.pid || !identity) return;
    for (let attempt = 0; attempt < 20 && !cellDone.aborted && !running.exited; attempt++) {
      const waiting = await processWaitsForInput(child.pid, identity);
      // The cell may have ended meanwhile, and the read seen be the next cell's: leave that one alone.
      if (cellDone.aborted) return;
      if (waiting) {
        child.stdin?.write('\n');
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async shutdown(): Promise<void> {
    this.stopping = true;
    const running = this.running;
    if (!running || running.exited) return;
    const gone = new Promise((resolve) => running.child.once('exit', resolve));
    signalGroup(running.child.pid, 'SIGKILL');
    await gone;
  }
}

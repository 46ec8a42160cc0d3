/**
 * v1 query mode (Backend.AI's execute call): runs code on a kernel and turns the Jupyter messages it
 * produces into an ordered `console` of items. A call returns when the code finished, when it waits for
 * input, when its time is up, or after the flush window with the output so far (`continued`); the client
 * then calls again with the same runId. Each call returns only what was produced since the previous one.
 */
import { randomUUID } from 'node:crypto';
import { invalidInput, notFound } from '../errors.js';
import type {
  DisplayDataContent,
  ErrorContent,
  ExecuteReplyContent,
  InputRequestContent,
  JupyterMessage,
  StreamContent,
} from '../protocol/messages.js';
import { ConsoleOutput, type ConsoleItem } from './console-output.js';
import type { LiveKernel, RequestFuture } from '../kernels/live-kernel.js';
import type { RequestEnd } from '../kernels/request-future.js';
import { RunBoundary } from './run-boundary.js';

export type { ConsoleItem };

/** `build-finished` is batch mode's only (see batch.ts). */
export type RunStatus = 'finished' | 'continued' | 'waiting-input' | 'exec-timeout' | 'build-finished';

export interface RunResult {
  runId: string;
  status: RunStatus;
  /** 0 when the code ran without error, 1 when it raised; null while it has not finished. */
  exitCode: number | null;
  console: ConsoleItem[];
  options: Record<string, unknown>;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;
export const stripAnsi = (text: string) => text.replace(ANSI, '');

const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/svg+xml'];

/** Console items for a display_data / execute_result bundle: the richest form a v1 client can show. */
export function consoleItemsOf(data: Record<string, unknown>): ConsoleItem[] {
  for (const mime of IMAGE_TYPES) {
    const value = data[mime];
    if (typeof value === 'string') {
      const uri = mime === 'image/svg+xml'
        ? `data:${mime};base64,${Buffer.from(value).toString('base64')}`
        : `data:${mime};base64,${value.replace(/\n/g, '')}`;
      return [['media', [mime, uri]]];
    }
  }
  if (typeof data['text/html'] === 'string') return [['html', data['text/html']]];
  if (typeof data['text/plain'] === 'string') return [['stdout', `${data['text/plain']}\n`]];
  return [];
}

/**
 * How a call waits for a run. `eager` (the streaming socket): output is a boundary of its own, so the call
 * resolves as soon as there is any, and an input request already reported does not end the wait again.
 */
export interface NextOptions {
  eager?: boolean;
}

/** A run the client drives with "continue" (and "input"): a query run or a batch run. */
export interface Run {
  readonly runId: string;
  /** Resolves at the run's next boundary or after `flushWindowMs`, with the output since the last call. */
  next(flushWindowMs: number, options?: NextOptions): Promise<RunResult>;
  sendInput(line: string): Promise<void>;
  /** Ends the run because its kernel went away; its next result says why. */
  abort(reason: string): void;
  /**
   * Its kernel is being interrupted (SIGINT): a run that then ends says it was interrupted. A batch run,
   * whose steps the kernel's signal does not reach, stops its running step itself (batch.ts).
   */
  interrupted?(): void;
  /** Resolves when the run's code has ended (never, if its kernel went away first). */
  ended?(): Promise<unknown>;
  /** Its code has ended (finished, timed out, or its kernel gone), whether or not the client heard it yet. */
  readonly done?: boolean;
  /** Output held for the client's next call (roughly bytes): what keeping this run costs. */
  readonly bufferedBytes: number;
  /**
   * Nobody will continue this run (abandoned, or evicted to bound memory): its output is dropped and no
   * more is kept. Its time limit still holds: code that runs too long still costs the kernel.
   */
  discard(): void;
}

export interface QueryOptions {
  timeoutMs: number;
  maxOutputBytes: number;
  /**
   * Called once when the run exceeds its timeout; the caller destroys the kernel, and the run reports
   * `exec-timeout` only once that has settled, so that the kernel is gone when the client hears it.
   */
  onTimeout: () => unknown;
}

/** What a query run needs of a kernel (LiveKernel has it). */
export type QueryKernel = Pick<LiveKernel, 'message' | 'send' | 'submit'>;

export class QueryRun implements Run {
  readonly runId: string;
  private readonly output: ConsoleOutput;
  private replyStatus?: ExecuteReplyContent['status'];
  /** The execute_request in flight: it ends with its reply and idle status (request-future.ts). */
  private future?: RequestFuture;
  private inputRequest?: JupyterMessage;
  /** The pending input request was reported (waiting-input) to a call that waits eagerly. */
  private inputReported = false;
  private timedOut = false;
  /** The time is up and the kernel is being destroyed: exec-timeout is due, not the removal's "died". */
  private expiring = false;
  private discarded = false;
  /** Why the kernel went away under this run, if it did. */
  private abortedBecause?: string;
  /** A client interrupted the kernel while this run was going. */
  private interruptRequested = false;
  /**
   * The kernel has begun this run's request (its `busy` status): only then does an interrupt reach it. A
   * request still queued behind another (a client that sent its next query while the interrupt of the
   * one before was on its way) runs normally afterwards and is no interrupted run.
   */
  private executing = false;
  private readonly boundary = new RunBoundary();
  private readonly timer: NodeJS.Timeout;
  /** Sent once, then dropped: the code can be as large as a request body, the run outlives the call. */
  private request?: JupyterMessage;

  constructor(private readonly kernel: QueryKernel, code: string, runId: string | undefined, options: QueryOptions) {
    this.runId = runId ?? randomUUID();
    this.output = new ConsoleOutput(options.maxOutputBytes);
    this.request = kernel.message('execute_request', {
      code,
      silent: false,
      store_history: true,
      user_expressions: {},
      allow_stdin: true,
      // Each v1 query is a request of its own, not a cell of a notebook run top to bottom: its error must
      // not make the kernel refuse the next query. With stop_on_error, ipykernel aborts every execute that
      // reaches it until its event loop clears the flag, which a query sent right after the answer can beat.
      stop_on_error: false,
    });
    this.timer = setTimeout(() => {
      this.expiring = true;
      void Promise.resolve()
        .then(() => options.onTimeout())
        .catch(() => undefined)
        .finally(() => {
          this.timedOut = true;
          this.notify();
          if (this.discarded) this.dispose();
        });
    }, options.timeoutMs);
  }

  async start(): Promise<void> {
    const request = this.request!;
    this.request = undefined;
    const future = this.kernel.submit('shell', request, {
      onIOPub: (msg) => this.onOutput(msg),
      onStdin: (msg) => this.onInputRequest(msg),
      onReply: (msg) => this.onReply(msg),
    });
    this.future = future;
    void future.done.then((end) => this.onEnd(end));
    await future.sent;
  }

  get bufferedBytes(): number {
    return this.output.bufferedBytes;
  }

  discard(): void {
    this.discarded = true;
    this.output.discard();
    this.inputRequest = undefined;
    // Still listening (without keeping output) until it ends, so that its time limit is lifted then.
    if (this.done) this.dispose();
  }

  get done(): boolean {
    return this.timedOut || this.abortedBecause !== undefined || this.future?.ended === true;
  }

  private onOutput(msg: JupyterMessage): void {
    const content = msg.content;
    switch (msg.header.msg_type) {
      case 'status':
        if ((content as { execution_state?: string }).execution_state === 'busy') this.executing = true;
        return;
      case 'stream': {
        const { name, text } = content as StreamContent;
        this.output.push([name === 'stderr' ? 'stderr' : 'stdout', text]);
        break;
      }
      case 'display_data':
      case 'execute_result':
        for (const item of consoleItemsOf((content as DisplayDataContent).data)) this.output.push(item);
        break;
      case 'error': {
        const { traceback, ename, evalue } = content as ErrorContent;
        const text = traceback?.length ? traceback.join('\n') : `${ename}: ${evalue}`;
        this.output.push(['stderr', `${stripAnsi(text)}\n`]);
        break;
      }
      default:
        return;
    }
    this.notify();
  }

  private onInputRequest(msg: JupyterMessage): void {
    if (msg.header.msg_type !== 'input_request') return;
    const { prompt } = msg.content as InputRequestContent;
    if (prompt) this.output.push(['stdout', prompt]);
    this.inputRequest = msg;
    this.inputReported = false;
    this.notify();
  }

  private onReply(msg: JupyterMessage): void {
    if (msg.header.msg_type !== 'execute_reply') return;
    this.replyStatus = (msg.content as ExecuteReplyContent).status;
  }

  /** The request ended (reply and idle, or the reply alone once iopub lost the idle). */
  private onEnd(end: RequestEnd): void {
    const endedOtherwise = this.timedOut || this.expiring || this.abortedBecause !== undefined;
    // The code is done: its time limit is lifted now, not when the client fetches the end (a client that
    // starts another query instead of continuing this one must not lose the kernel to this timer).
    if (!this.expiring) clearTimeout(this.timer);
    if (!end.idle && !endedOtherwise) this.output.notice('\n[output may be incomplete: the kernel\'s output channel dropped messages]\n');
    if (this.interruptRequested && !endedOtherwise) this.output.notice('\n[interrupted]\n');
    // ipykernel refuses the executes that reach it just after another client's error (stop_on_error).
    if (this.replyStatus === 'aborted' && !endedOtherwise) this.output.notice('[not run: the kernel aborted this request because the one before it failed or was interrupted; send it again]\n');
    if (this.discarded) this.dispose();
    this.notify();
  }

  private notify(): void {
    this.boundary.notify();
  }

  /** Resolves at the next boundary (finished, input wanted, timeout; output too when eager) or after `flushWindowMs`. */
  async next(flushWindowMs: number, options: NextOptions = {}): Promise<RunResult> {
    const reached = options.eager
      ? () => this.done || this.output.hasPending || (this.inputRequest !== undefined && !this.inputReported)
      : () => this.done || this.inputRequest !== undefined;
    await this.boundary.until(reached, flushWindowMs);
    return this.result();
  }

  private result(): RunResult {
    const console = this.output.take();
    let status: RunStatus = 'continued';
    let exitCode: number | null = null;
    if (this.timedOut) {
      status = 'exec-timeout';
    } else if (this.done) {
      status = 'finished';
      exitCode = this.replyStatus === 'ok' ? 0 : 1;
      // The kernel died under the run (out of memory, killed): 137 like a shell reports a SIGKILL.
      if (this.abortedBecause !== undefined) exitCode = 137;
      // Interrupted by the client: 130 like a shell reports a SIGINT (the kernel's own error says where).
      else if (this.interruptRequested) exitCode = 130;
    } else if (this.inputRequest) {
      status = 'waiting-input';
      this.inputReported = true;
    }
    if (status === 'finished' || status === 'exec-timeout') this.dispose();
    return { runId: this.runId, status, exitCode, console, options: {} };
  }

  /** Answers the kernel's pending input request with one line. */
  async sendInput(line: string): Promise<void> {
    const request = this.inputRequest;
    if (!request) throw invalidInput(`run ${this.runId} is not waiting for input`);
    this.inputRequest = undefined;
    await this.kernel.send('stdin', this.kernel.message('input_reply', { value: line }, request));
  }

  interrupted(): void {
    if (this.done || this.expiring || !this.executing) return;
    this.interruptRequested = true;
  }

  ended(): Promise<unknown> {
    return this.future?.done ?? Promise.resolve();
  }

  /** Ends the run because its kernel went away, telling the client why. */
  abort(reason: string): void {
    if (this.done || this.expiring) return;
    this.abortedBecause = reason;
    this.output.notice(`\n[kernel died: ${reason}]\n`);
    this.notify();
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.future?.detach();
  }
}

export interface RunLimits {
  /** A run not called for this long is discarded. */
  ttlMs: number;
  /** Runs kept per kernel; a new one past it discards the one least recently called. */
  maxPerKernel: number;
  /** Output buffered in all runs together; past it the runs least recently called are discarded. */
  maxBufferedBytes: number;
}

/** How long the runs of a removed kernel wait for their client to hear why (at most the TTL). */
const REMOVED_KERNEL_GRACE_MS = 30_000;
/** Runs remembered as discarded, so that a late "continue" hears why instead of a bare 404. */
const DISCARDED_REMEMBERED = 1000;

interface Entry {
  run: Run;
  touchedAt: number;
  /** Set once the kernel is gone: the run is discarded at this time even if called since. */
  expiresAt?: number;
}

/**
 * The runs in progress on each kernel, addressed by runId. A client that answers "continued" never
 * again must not make the service keep its run and output for ever: runs are discarded after a time
 * without a call, past a number per kernel, once the total output they hold is too large, and soon after
 * their kernel is removed.
 */
export class QueryRuns {
  /** Per kernel, runs in the order they were last called (a Map keeps insertion order). */
  private readonly byKernel = new Map<string, Map<string, Entry>>();
  private readonly discarded = new Map<string, string>();

  constructor(private readonly limits: RunLimits = { ttlMs: 300_000, maxPerKernel: 16, maxBufferedBytes: 128 * 1024 * 1024 }, private readonly clock: () => number = Date.now) {}

  private key(kernelId: string, runId: string): string {
    return `${kernelId}/${runId}`;
  }

  add(kernelId: string, run: Run): void {
    let runs = this.byKernel.get(kernelId);
    if (!runs) this.byKernel.set(kernelId, (runs = new Map()));
    while (runs.size >= this.limits.maxPerKernel) {
      const [oldest] = runs.keys();
      this.evict(kernelId, oldest!, `more than ${this.limits.maxPerKernel} runs were started on its kernel since it was last continued (POLYKERNEL_MAX_RUNS_PER_KERNEL)`);
    }
    runs.set(run.runId, { run, touchedAt: this.clock() });
    this.boundBuffered();
  }

  get(kernelId: string, runId: string | undefined): Run {
    if (!runId) throw invalidInput('runId is required to continue a run or answer its input');
    const entry = this.byKernel.get(kernelId)?.get(runId);
    if (!entry) {
      const why = this.discarded.get(this.key(kernelId, runId));
      throw notFound(why ? `run ${runId} was discarded: ${why}` : `no run ${runId} in progress on kernel ${kernelId}`);
    }
    this.touch(kernelId, runId, entry);
    return entry.run;
  }

  /** Why a run was discarded (evicted or abandoned), if it was and that is still remembered. */
  discardedWhy(kernelId: string, runId: string): string | undefined {
    return this.byKernel.get(kernelId)?.has(runId) ? undefined : this.discarded.get(this.key(kernelId, runId));
  }

  /** The run, if it is still held, without counting as a call of its client (no TTL refresh). */
  peek(kernelId: string, runId: string): Run | undefined {
    return this.byKernel.get(kernelId)?.get(runId)?.run;
  }

  has(kernelId: string, runId: string): boolean {
    return this.byKernel.get(kernelId)?.has(runId) ?? false;
  }

  get size(): number {
    let size = 0;
    for (const runs of this.byKernel.values()) size += runs.size;
    return size;
  }

  private touch(kernelId: string, runId: string, entry: Entry): void {
    const runs = this.byKernel.get(kernelId)!;
    entry.touchedAt = this.clock();
    runs.delete(runId);
    runs.set(runId, entry);
  }

  /** Forgets a run once its final result was returned; a run still going counts as just called. */
  settle(kernelId: string, result: RunResult): void {
    const runs = this.byKernel.get(kernelId);
    const entry = runs?.get(result.runId);
    if (!runs || !entry) return;
    if (result.status === 'finished' || result.status === 'exec-timeout') {
      runs.delete(result.runId);
      if (runs.size === 0) this.byKernel.delete(kernelId);
    } else {
      this.touch(kernelId, result.runId, entry);
    }
  }

  /**
   * Ends every run of a kernel that went away (their next result says why). A kernel that was removed
   * takes its runs with it after a short grace, called or not.
   */
  abortKernel(kernelId: string, reason: string, removed = false): void {
    const runs = this.byKernel.get(kernelId);
    if (!runs) return;
    const expiresAt = this.clock() + Math.min(this.limits.ttlMs, REMOVED_KERNEL_GRACE_MS);
    for (const entry of runs.values()) {
      entry.run.abort(reason);
      if (removed) entry.expiresAt = expiresAt;
    }
  }

  /** Tells every run of a kernel that it is being interrupted (see Run.interrupted). */
  interruptKernel(kernelId: string): void {
    for (const entry of this.byKernel.get(kernelId)?.values() ?? []) entry.run.interrupted?.();
  }

  /** What each run of a kernel that can say when its code ends returns for it (see Run.ended). */
  endsOf(kernelId: string): Promise<unknown>[] {
    return [...(this.byKernel.get(kernelId)?.values() ?? [])].flatMap((entry) => (entry.run.ended ? [entry.run.ended()] : []));
  }

  /** Discards runs not called within the TTL, of kernels gone, and the least recently called past the byte bound. */
  sweep(): void {
    const now = this.clock();
    for (const [kernelId, runs] of this.byKernel) {
      for (const [runId, entry] of runs) {
        if (entry.expiresAt !== undefined && now >= entry.expiresAt) this.evict(kernelId, runId, 'its kernel was removed');
        else if (now - entry.touchedAt >= this.limits.ttlMs) this.evict(kernelId, runId, `not continued within ${this.limits.ttlMs} ms`);
      }
    }
    this.boundBuffered();
  }

  private boundBuffered(): void {
    let total = 0;
    for (const runs of this.byKernel.values()) for (const entry of runs.values()) total += entry.run.bufferedBytes;
    while (total > this.limits.maxBufferedBytes) {
      let oldest: { kernelId: string; runId: string; entry: Entry } | undefined;
      for (const [kernelId, runs] of this.byKernel) {
        // The first of each kernel's map is its least recently called.
        const [first] = runs;
        if (first && (!oldest || first[1].touchedAt < oldest.entry.touchedAt)) oldest = { kernelId, runId: first[0], entry: first[1] };
      }
      if (!oldest) return;
      total -= oldest.entry.run.bufferedBytes;
      this.evict(oldest.kernelId, oldest.runId, `the service holds more than ${this.limits.maxBufferedBytes} bytes of output not continued`);
    }
  }

  /** Discards a run nobody will continue; a later "continue" hears `why`. */
  discard(kernelId: string, runId: string, why: string): void {
    this.evict(kernelId, runId, why);
  }

  private evict(kernelId: string, runId: string, why: string): void {
    const runs = this.byKernel.get(kernelId);
    const entry = runs?.get(runId);
    if (!runs || !entry) return;
    runs.delete(runId);
    if (runs.size === 0) this.byKernel.delete(kernelId);
    entry.run.discard();
    const key = this.key(kernelId, runId);
    this.discarded.delete(key);
    this.discarded.set(key, why);
    if (this.discarded.size > DISCARDED_REMEMBERED) this.discarded.delete(this.discarded.keys().next().value!);
  }
}

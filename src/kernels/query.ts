/**
 * v1 query mode (Backend.AI's execute call): runs code on a kernel and turns the Jupyter messages it
 * produces into an ordered `console` of items. A call returns when the code finished, when it waits for
 * input, when its time is up, or after the flush window with the output so far (`continued`); the client
 * then calls again with the same runId. Each call returns only what was produced since the previous one.
 */
import { randomUUID } from 'node:crypto';
import { invalidInput, notFound } from '../errors.js';
import {
  parentMsgId,
  type DisplayDataContent,
  type ErrorContent,
  type ExecuteReplyContent,
  type InputRequestContent,
  type JupyterMessage,
  type StatusContent,
  type StreamContent,
} from '../protocol/messages.js';
import { ConsoleOutput, type ConsoleItem } from './console-output.js';
import type { LiveKernel } from './live-kernel.js';
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

/** A run the client drives with "continue" (and "input"): a query run or a batch run. */
export interface Run {
  readonly runId: string;
  /** Resolves at the run's next boundary or after `flushWindowMs`, with the output since the last call. */
  next(flushWindowMs: number): Promise<RunResult>;
  sendInput(line: string): Promise<void>;
  /** Ends the run because its kernel went away; its next result says why. */
  abort(reason: string): void;
}

export interface QueryOptions {
  timeoutMs: number;
  maxOutputBytes: number;
  /** Called once when the run exceeds its timeout (the caller destroys the kernel). */
  onTimeout: () => void;
}

/**
 * iopub is lossy (a PUB socket drops messages past its high-water mark, and a message too large for the
 * service drops the connection: see MAX_KERNEL_MESSAGE_BYTES), so the idle status that closes a run may
 * never come. Once the execute_reply is in, the run ends after this long without it.
 */
export const IDLE_AFTER_REPLY_MS = 2000;

export class QueryRun implements Run {
  readonly runId: string;
  private readonly output: ConsoleOutput;
  private replyStatus?: ExecuteReplyContent['status'];
  private idle = false;
  private idleFallback?: NodeJS.Timeout;
  private inputRequest?: JupyterMessage;
  private timedOut = false;
  /** Why the kernel went away under this run, if it did. */
  private abortedBecause?: string;
  private readonly boundary = new RunBoundary();
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribe: () => void;
  private readonly request: JupyterMessage;

  constructor(private readonly kernel: LiveKernel, code: string, runId: string | undefined, private readonly options: QueryOptions) {
    this.runId = runId ?? randomUUID();
    this.output = new ConsoleOutput(options.maxOutputBytes);
    this.request = kernel.message('execute_request', {
      code,
      silent: false,
      store_history: true,
      user_expressions: {},
      allow_stdin: true,
      stop_on_error: true,
    });
    this.unsubscribe = kernel.onMessage((_channel, msg) => this.onMessage(msg));
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.notify();
      options.onTimeout();
    }, options.timeoutMs);
  }

  async start(): Promise<void> {
    await this.kernel.send('shell', this.request);
  }

  get done(): boolean {
    return this.timedOut || this.abortedBecause !== undefined || (this.replyStatus !== undefined && this.idle);
  }

  private onMessage(msg: JupyterMessage): void {
    if (parentMsgId(msg) !== this.request.header.msg_id) return;
    const content = msg.content;
    switch (msg.header.msg_type) {
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
      case 'input_request': {
        const { prompt } = content as InputRequestContent;
        if (prompt) this.output.push(['stdout', prompt]);
        this.inputRequest = msg;
        break;
      }
      case 'execute_reply':
        this.replyStatus = (content as ExecuteReplyContent).status;
        this.idleFallback ??= setTimeout(() => {
          if (this.done) return;
          this.output.notice('\n[output may be incomplete: the kernel\'s output channel dropped messages]\n');
          this.idle = true;
          this.notify();
        }, IDLE_AFTER_REPLY_MS);
        break;
      case 'status':
        if ((content as StatusContent).execution_state === 'idle') this.idle = true;
        break;
      default:
        return;
    }
    this.notify();
  }

  private notify(): void {
    this.boundary.notify();
  }

  /** Resolves at the next boundary (finished, input wanted, timeout) or after `flushWindowMs`. */
  async next(flushWindowMs: number): Promise<RunResult> {
    await this.boundary.until(() => this.done || this.inputRequest !== undefined, flushWindowMs);
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
    } else if (this.inputRequest) {
      status = 'waiting-input';
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

  /** Ends the run because its kernel went away, telling the client why. */
  abort(reason: string): void {
    if (this.done) return;
    this.abortedBecause = reason;
    this.output.notice(`\n[kernel died: ${reason}]\n`);
    this.notify();
  }

  dispose(): void {
    clearTimeout(this.timer);
    clearTimeout(this.idleFallback);
    this.unsubscribe();
  }
}

/** The runs in progress on each kernel, addressed by runId. */
export class QueryRuns {
  private readonly runs = new Map<string, Run>();

  private key(kernelId: string, runId: string): string {
    return `${kernelId}/${runId}`;
  }

  add(kernelId: string, run: Run): void {
    this.runs.set(this.key(kernelId, run.runId), run);
  }

  get(kernelId: string, runId: string | undefined): Run {
    if (!runId) throw invalidInput('runId is required to continue a run or answer its input');
    const run = this.runs.get(this.key(kernelId, runId));
    if (!run) throw notFound(`no run ${runId} in progress on kernel ${kernelId}`);
    return run;
  }

  has(kernelId: string, runId: string): boolean {
    return this.runs.has(this.key(kernelId, runId));
  }

  /** Forgets a run once its final result was returned. */
  settle(kernelId: string, result: RunResult): void {
    if (result.status === 'finished' || result.status === 'exec-timeout') this.runs.delete(this.key(kernelId, result.runId));
  }

  /** Ends every run of a kernel that went away; their next result says why. */
  abortKernel(kernelId: string, reason: string): void {
    for (const [key, run] of this.runs) {
      if (key.startsWith(`${kernelId}/`)) run.abort(reason);
    }
  }
}

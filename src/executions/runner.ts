/**
 * Runs a notebook's code cells one after another on a kernel, as nbclient does: one execute_request per
 * cell on shell, the cell done when both its execute_reply (shell) and its iopub `idle` have arrived (so no
 * output is lost), stop at the first error. Each cell gets `metadata.nbexec` start/end time and duration,
 * and a `start` and `end` event with its progress. A cell timeout or an abort (shutdown, kernel death)
 * ends the run at once; the caller then deletes the kernel. The notebook is updated in place, so whatever
 * ran before the end is in it.
 */
import type { LiveKernel } from '../kernels/live-kernel.js';
import type { ExecuteReplyContent } from '../protocol/messages.js';
import { codeCells, type CodeCell, type Notebook } from './notebook.js';
import { OutputCollector } from './outputs.js';

/** What the runner needs of a kernel (LiveKernel has it); a fake stands in for it in unit tests. */
export type KernelPort = Pick<LiveKernel, 'message' | 'submit'>;

export interface CellEvent {
  event: 'start' | 'end';
  timestamp: number;
  progress: string;
  cell: CodeCell;
}

export type RunOutcome =
  | { ok: true }
  /** `status` is one line for the execution's status; `error` the full text of notebook_error. */
  | { ok: false; status: string; error: string };

export interface RunnerOptions {
  /** Whole seconds; undefined = cells never time out. */
  cellTimeoutS?: number;
  clock: () => number;
  /** Called at every cell start and end, awaited before the run goes on. */
  onCellEvent: (event: CellEvent) => void | Promise<void>;
}

type CellResult =
  | { kind: 'ok' }
  | { kind: 'error'; reply: ExecuteReplyContent }
  | { kind: 'timeout' }
  | { kind: 'aborted' };

const RULE = '------------------';

/** ISO 8601 with microseconds and +00:00, as Python's datetime.isoformat() writes it. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString().replace('Z', '000+00:00');
}

export class NotebookRunner {
  private readonly collector = new OutputCollector();
  private aborted?: { status: string; error: string };
  private abortCell?: () => void;
  /** The code cell running now, 1-based (0 before the first). */
  current = 0;
  readonly total: number;

  constructor(
    private readonly kernel: KernelPort,
    readonly notebook: Notebook,
    private readonly options: RunnerOptions,
  ) {
    this.total = codeCells(notebook).length;
  }

  /** Ends the run as soon as possible with this reason (the cell in flight is abandoned). */
  abort(reason: string): void {
    if (this.aborted) return;
    this.aborted = { status: reason, error: reason };
    this.abortCell?.();
  }

  get progress(): string {
    return `${this.current}/${this.total}`;
  }

  async run(): Promise<RunOutcome> {
    const cells = codeCells(this.notebook);
    for (const [index, cell] of cells.entries()) {
      if (this.aborted) return { ok: false, ...this.aborted };
      this.current = index + 1;
      const started = this.options.clock();
      const timing: Record<string, unknown> = { start_time: isoTime(started) };
      cell.metadata = { ...cell.metadata, nbexec: timing };
      cell.outputs = [];
      cell.execution_count = null;
      await this.options.onCellEvent({ event: 'start', timestamp: started / 1000, progress: this.progress, cell: structuredClone(cell) });
      // An empty cell is not sent to the kernel, as nbclient skips it: no execution count is used up.
      const result: CellResult = this.aborted
        ? { kind: 'aborted' }
        : cell.source.trim() === ''
          ? { kind: 'ok' }
          : await this.execute(cell);
      const ended = this.options.clock();
      timing.end_time = isoTime(ended);
      timing.duration = (ended - started) / 1000;
      await this.options.onCellEvent({ event: 'end', timestamp: ended / 1000, progress: this.progress, cell: structuredClone(cell) });
      const outcome = this.outcomeOf(result, cell);
      if (outcome) return outcome;
    }
    if (this.aborted) return { ok: false, ...this.aborted };
    return { ok: true };
  }

  private outcomeOf(result: CellResult, cell: CodeCell): RunOutcome | undefined {
    switch (result.kind) {
      case 'ok':
        return undefined;
      case 'aborted':
        return { ok: false, ...this.aborted! };
      case 'timeout': {
        const seconds = this.options.cellTimeoutS!;
        return {
          ok: false,
          status: `cell ${this.progress} timed out after ${seconds} s`,
          error: `A cell timed out while it was being executed, after ${seconds} seconds:\n${RULE}\n${cell.source}\n${RULE}\n`,
        };
      }
      case 'error': {
        const shown = cell.outputs.find((output) => output.output_type === 'error');
        const ename = shown?.output_type === 'error' ? shown.ename : (result.reply.ename ?? 'Error');
        const evalue = shown?.output_type === 'error' ? shown.evalue : (result.reply.evalue ?? '');
        const summary = result.reply.status === 'aborted' ? 'the kernel aborted the cell' : `${ename}: ${evalue}`;
        return {
          ok: false,
          status: summary,
          error: `An error occurred while executing the following cell:\n${RULE}\n${cell.source}\n${RULE}\n\n${summary}\n`,
        };
      }
    }
  }

  private execute(cell: CodeCell): Promise<CellResult> {
    this.collector.begin(cell);
    const request = this.kernel.message('execute_request', {
      code: cell.source,
      silent: false,
      store_history: true,
      user_expressions: {},
      // Nobody can answer input(): it raises in the kernel instead of hanging the execution.
      allow_stdin: false,
      stop_on_error: true,
    });
    return new Promise<CellResult>((resolve) => {
      let settled = false;
      const finish = (result: CellResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        future.detach();
        this.abortCell = undefined;
        resolve(result);
      };
      let reply: ExecuteReplyContent | undefined;
      const future = this.kernel.submit('shell', request, {
        onIOPub: (msg) => {
          if (msg.header.msg_type !== 'status') this.collector.handle(msg);
        },
        onReply: (msg) => {
          if (msg.header.msg_type !== 'execute_reply') return;
          reply = msg.content as ExecuteReplyContent;
          if (typeof reply.execution_count === 'number' && cell.execution_count === null) cell.execution_count = reply.execution_count;
        },
      });
      // Done once both the execute_reply (shell) and the idle status (iopub) are in: no output is lost.
      void future.done.then(() => finish(reply?.status === 'ok' ? { kind: 'ok' } : { kind: 'error', reply: reply ?? { status: 'error' } }));
      const timeoutS = this.options.cellTimeoutS;
      const timer = timeoutS ? setTimeout(() => finish({ kind: 'timeout' }), timeoutS * 1000) : undefined;
      this.abortCell = () => finish({ kind: 'aborted' });
      future.sent.catch((error: Error) => {
        this.abort(`could not send the cell to the kernel: ${error.message}`);
      });
    });
  }
}

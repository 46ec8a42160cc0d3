/**
 * iopub messages -> nbformat outputs, as nbclient records them: consecutive stream text of the same
 * name is merged, execute_result keeps its execution_count, transient fields (display_id) are dropped
 * from the file but remembered so that update_display_data can rewrite earlier outputs (in any cell),
 * and clear_output honours `wait`. Pure: the runner feeds it the messages whose parent is its request.
 * Outputs live in the service's memory until the file is written, so an execution has an output budget:
 * past it, outputs are dropped and each cell that lost some says so in a stderr stream.
 * https://jupyter-client.readthedocs.io/en/latest/messaging.html#messages-on-the-iopub-pub-sub-channel
 */
import type {
  DisplayDataContent,
  ErrorContent,
  ExecuteResultContent,
  JupyterMessage,
  StreamContent,
} from '../protocol/messages.js';
import type { CodeCell, JsonMap, Output } from './notebook.js';

type DisplayOutput = Extract<Output, { output_type: 'display_data' | 'execute_result' }>;

/** Output kept per execution: plenty for plots and tables, not a service-sized memory leak. */
const MAX_OUTPUT_BYTES_PER_EXECUTION = 64 * 1024 * 1024;

export class OutputCollector {
  private cell?: CodeCell;
  private clearOnNextOutput = false;
  private bytes = 0;
  private readonly truncated = new WeakSet<CodeCell>();
  /** display_id -> the outputs showing it, across the whole notebook. */
  private readonly displays = new Map<string, DisplayOutput[]>();

  constructor(private readonly maxBytes = MAX_OUTPUT_BYTES_PER_EXECUTION) {}

  /** Counts `size` more bytes against the budget; false (and a marker in the cell, once) when over it. */
  private admit(cell: CodeCell, size: number): boolean {
    if (this.bytes + size <= this.maxBytes) {
      this.bytes += size;
      return true;
    }
    if (!this.truncated.has(cell)) {
      this.truncated.add(cell);
      cell.outputs.push({ output_type: 'stream', name: 'stderr', text: `\n[output truncated: this execution produced more than ${this.maxBytes} bytes of output]\n` });
    }
    return false;
  }

  /** Outputs from now on belong to `cell`. */
  begin(cell: CodeCell): void {
    this.cell = cell;
    this.clearOnNextOutput = false;
  }

  /** Takes one iopub message of the current cell's request; returns true when the cell changed. */
  handle(msg: JupyterMessage): boolean {
    const cell = this.cell;
    if (!cell) return false;
    const content = msg.content;
    switch (msg.header.msg_type) {
      case 'execute_input': {
        const count = content.execution_count;
        if (typeof count === 'number') cell.execution_count = count;
        return true;
      }
      case 'stream': {
        const { name, text } = content as StreamContent;
        this.clearIfWaiting(cell);
        if (!this.admit(cell, Buffer.byteLength(String(text)))) return false;
        const last = cell.outputs[cell.outputs.length - 1];
        if (last?.output_type === 'stream' && last.name === name) last.text += text;
        else cell.outputs.push({ output_type: 'stream', name: name === 'stderr' ? 'stderr' : 'stdout', text });
        return true;
      }
      case 'display_data':
      case 'execute_result': {
        const { data, metadata, transient } = content as DisplayDataContent;
        this.clearIfWaiting(cell);
        if (!this.admit(cell, Buffer.byteLength(JSON.stringify(data ?? {})))) return false;
        const output: DisplayOutput =
          msg.header.msg_type === 'execute_result'
            ? {
                output_type: 'execute_result',
                data: data ?? {},
                metadata: metadata ?? {},
                execution_count: (content as ExecuteResultContent).execution_count ?? cell.execution_count,
              }
            : { output_type: 'display_data', data: data ?? {}, metadata: metadata ?? {} };
        if (output.output_type === 'execute_result' && output.execution_count !== null) {
          cell.execution_count = output.execution_count;
        }
        cell.outputs.push(output);
        const displayId = transient?.display_id;
        if (typeof displayId === 'string') this.displays.set(displayId, [...(this.displays.get(displayId) ?? []), output]);
        return true;
      }
      case 'update_display_data': {
        const { data, metadata, transient } = content as DisplayDataContent;
        const displayId = transient?.display_id;
        if (typeof displayId !== 'string') return false;
        if (!this.admit(cell, Buffer.byteLength(JSON.stringify(data ?? {})))) return false;
        for (const output of this.displays.get(displayId) ?? []) {
          output.data = data ?? {};
          output.metadata = (metadata as JsonMap | undefined) ?? {};
        }
        return true;
      }
      case 'error': {
        const { ename, evalue, traceback } = content as ErrorContent;
        this.clearIfWaiting(cell);
        // An error is always kept: it says why the execution ended.
        this.bytes += Buffer.byteLength(JSON.stringify(traceback ?? []));
        cell.outputs.push({
          output_type: 'error',
          ename: String(ename ?? 'Error'),
          evalue: String(evalue ?? ''),
          traceback: Array.isArray(traceback) ? traceback.map(String) : [],
        });
        return true;
      }
      case 'clear_output':
        if (content.wait === true) this.clearOnNextOutput = true;
        else cell.outputs = [];
        return true;
      default:
        return false;
    }
  }

  private clearIfWaiting(cell: CodeCell): void {
    if (!this.clearOnNextOutput) return;
    this.clearOnNextOutput = false;
    cell.outputs = [];
  }
}

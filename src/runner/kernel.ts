/**
 * The Jupyter side of the runner: answers the messages of the shell, control and stdin channels and
 * publishes on iopub, as ipykernel does, for whatever cell model runs the code (executor.ts).
 *
 * - Shell requests are handled one at a time in arrival order; control requests (interrupt, shutdown,
 *   kernel_info) at once, even while a cell runs.
 * - Every request is wrapped in iopub `status` busy/idle with the request as parent (the service's
 *   readiness probe waits for that status after kernel_info).
 * - After a failed cell with stop_on_error, the execute_requests already queued are answered "aborted".
 * https://jupyter-client.readthedocs.io/en/latest/messaging.html
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../logger.js';
import {
  newMessage,
  PROTOCOL_VERSION,
  type ExecutionState,
  type JsonObject,
  type JupyterMessage,
} from '../protocol/messages.js';
import { errorOutcome, type Cell, type CellOutcome, type Executor, type OutputSink, type StreamName } from './executor.js';
import type { LanguageSpec } from './languages.js';
import { StreamPublisher } from './output.js';
import type { KernelSockets, RequestChannel, ServerChannel } from './sockets.js';

export const RUNNER_VERSION = '0.1.0';

interface Execution {
  request: JupyterMessage;
  allowStdin: boolean;
  abort: AbortController;
  /** The input_request waiting for its reply, if any. */
  input?: { msgId: string; resolve: (value: string) => void; reject: (error: Error) => void };
}

export interface RunnerKernelOptions {
  language: LanguageSpec;
  /** Makes the executor writing to `output`; called again when a shutdown_request asks for a restart. */
  executor: (output: OutputSink) => Executor;
  sockets: KernelSockets;
  log: Logger;
  /** The language's version, as kernel_info reports it. */
  version: Promise<string>;
  /** Ends the process (after a shutdown_request without restart). */
  exit: (code: number) => void;
}

export class RunnerKernel {
  private readonly session = randomUUID();
  private executor: Executor;
  private executionCount = 0;
  private readonly queue: JupyterMessage[] = [];
  private pumping = false;
  private readonly toAbort = new Set<string>();
  private current?: Execution;
  /** The parent of stream output: the running cell, else the last one (output between cells). */
  private outputParent?: JupyterMessage;
  private readonly streams: StreamPublisher;

  constructor(private readonly options: RunnerKernelOptions) {
    this.streams = new StreamPublisher(
      (name, text) => this.publishStream(name, text),
      () => options.sockets.pendingIopubBytes,
    );
    this.executor = options.executor(this.streams);
  }

  start(): void {
    void this.executor.start().catch((error: Error) => this.options.log.error('executor failed to start', { error: error.message }));
    this.options.sockets.listen((channel, msg) => this.onRequest(channel, msg));
  }

  /** SIGINT (the container's init forwards `docker kill -s INT`) and interrupt_request both land here. */
  interrupt(): void {
    const execution = this.current;
    if (!execution || execution.abort.signal.aborted) return;
    this.options.log.info('interrupting the running cell');
    execution.abort.abort();
    execution.input?.reject(new Error('interrupted'));
  }

  private onRequest(channel: RequestChannel, msg: JupyterMessage): void {
    if (channel === 'stdin') return this.onInputReply(msg);
    if (channel === 'control') {
      void this.handle('control', msg).catch((error: Error) => this.fail(msg, error));
      return;
    }
    this.queue.push(msg);
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (let msg = this.queue.shift(); msg; msg = this.queue.shift()) {
        await this.handle('shell', msg).catch((error: Error) => this.fail(msg!, error));
      }
    } finally {
      this.pumping = false;
    }
  }

  private fail(msg: JupyterMessage, error: Error): void {
    this.options.log.error('request failed', { msgType: msg.header.msg_type, error: error.stack ?? error.message });
  }

  private async handle(channel: 'shell' | 'control', msg: JupyterMessage): Promise<void> {
    const type = msg.header.msg_type;
    const reply = (content: JsonObject) => this.reply(channel, msg, type.replace(/_request$/, '_reply'), content);
    await this.status('busy', msg);
    try {
      switch (type) {
        case 'kernel_info_request':
          await reply(await this.kernelInfo());
          break;
        case 'execute_request':
          await this.execute(msg);
          break;
        case 'is_complete_request': {
          const status = await this.executor.isComplete(String(msg.content.code ?? ''));
          await reply(status === 'incomplete' ? { status, indent: '' } : { status });
          break;
        }
        case 'complete_request': {
          const cursor = Number(msg.content.cursor_pos ?? 0);
          await reply({ status: 'ok', matches: [], cursor_start: cursor, cursor_end: cursor, metadata: {} });
          break;
        }
        case 'inspect_request':
          await reply({ status: 'ok', found: false, data: {}, metadata: {} });
          break;
        case 'history_request':
          await reply({ status: 'ok', history: [] });
          break;
        case 'comm_info_request':
          await reply({ status: 'ok', comms: {} });
          break;
        case 'interrupt_request':
          this.interrupt();
          await reply({ status: 'ok' });
          break;
        case 'shutdown_request':
          await this.shutdown(msg, channel, Boolean(msg.content.restart));
          break;
        default:
          // comm_open, debug_request, …: not offered (kernel_info says debugger: false). ipykernel ignores too.
          this.options.log.debug('ignoring message', { msgType: type });
      }
    } finally {
      await this.status('idle', msg);
    }
  }

  private async kernelInfo(): Promise<JsonObject> {
    const { language } = this.options;
    const version = await Promise.race([this.options.version, sleep(3000).then(() => '')]);
    return {
      status: 'ok',
      protocol_version: PROTOCOL_VERSION,
      implementation: 'polykernel-runner',
      implementation_version: RUNNER_VERSION,
      language_info: {
        name: language.language,
        version,
        mimetype: language.mimetype,
        file_extension: language.fileExtension,
        codemirror_mode: language.codemirrorMode,
        pygments_lexer: language.pygmentsLexer,
      },
      banner: `${language.displayName} ${version} (polykernel runner ${RUNNER_VERSION})\nA cell is ${language.cell.cellDoc}.`,
      help_links: [],
      debugger: false,
    };
  }

  private async execute(request: JupyterMessage): Promise<void> {
    const content = request.content;
    const code = String(content.code ?? '');
    const silent = Boolean(content.silent);
    const storeHistory = !silent && content.store_history !== false;
    if (this.toAbort.delete(request.header.msg_id)) {
      await this.reply('shell', request, 'execute_reply', { status: 'aborted', execution_count: this.executionCount });
      return;
    }
    if (storeHistory) this.executionCount++;
    const count = this.executionCount;
    this.streams.flush();
    this.outputParent = request;
    if (!silent) await this.publish('execute_input', { code, execution_count: count }, request);
    const execution: Execution = { request, allowStdin: Boolean(content.allow_stdin), abort: new AbortController() };
    this.current = execution;
    let outcome: CellOutcome;
    try {
      outcome = code.trim() ? await this.executor.run(this.cell(execution, code, count)) : { status: 'ok' };
    } catch (error) {
      outcome = errorOutcome('KernelError', (error as Error).message);
    } finally {
      this.current = undefined;
      execution.input?.reject(new Error('the cell ended'));
    }
    this.streams.flush();
    if (outcome.status === 'ok') {
      if (outcome.data && !silent) {
        await this.publish('execute_result', { execution_count: count, data: outcome.data, metadata: {} }, request);
      }
      await this.reply('shell', request, 'execute_reply', { status: 'ok', execution_count: count, user_expressions: {}, payload: [] });
      return;
    }
    const { ename, evalue, traceback } = outcome;
    await this.publish('error', { ename, evalue, traceback }, request);
    await this.reply('shell', request, 'execute_reply', { status: 'error', execution_count: count, ename, evalue, traceback });
    // As ipykernel: an interrupted "run all" stops there too.
    if (content.stop_on_error !== false) {
      for (const queued of this.queue) {
        if (queued.header.msg_type === 'execute_request') this.toAbort.add(queued.header.msg_id);
      }
    }
  }

  private cell(execution: Execution, code: string, count: number): Cell {
    return {
      code,
      count,
      allowStdin: execution.allowStdin,
      signal: execution.abort.signal,
      input: (prompt, password) => this.requestInput(execution, prompt, password),
    };
  }

  /** input_request on stdin, to the client that sent the execute_request; resolves with its reply. */
  private async requestInput(execution: Execution, prompt = '', password = false): Promise<string> {
    if (!execution.allowStdin) throw new Error('stdin is not allowed for this execution');
    if (execution.abort.signal.aborted) throw new Error('interrupted');
    if (execution.input) throw new Error('an input request is already pending');
    const heldPrompt = this.streams.takePrompt();
    this.streams.flush();
    const request = newMessage('input_request', { prompt: prompt || heldPrompt, password }, {
      session: this.session,
      parent: execution.request,
    });
    request.identities = execution.request.identities;
    const answer = new Promise<string>((resolve, reject) => {
      execution.input = { msgId: request.header.msg_id, resolve, reject };
    }).finally(() => (execution.input = undefined));
    await this.options.sockets.drain();
    await this.options.sockets.send('stdin', request);
    return answer;
  }

  private onInputReply(msg: JupyterMessage): void {
    const pending = this.current?.input;
    if (msg.header.msg_type !== 'input_reply' || !pending) return;
    const parent = (msg.parent_header as { msg_id?: string }).msg_id;
    if (parent && parent !== pending.msgId) return;
    pending.resolve(String(msg.content.value ?? ''));
  }

  private async shutdown(request: JupyterMessage, channel: 'shell' | 'control', restart: boolean): Promise<void> {
    this.interrupt();
    await this.executor.shutdown();
    await this.reply(channel, request, 'shutdown_reply', { status: 'ok', restart });
    if (restart) {
      // The container is the kernel: nobody would start a new process, so the runner resets itself.
      this.executionCount = 0;
      this.executor = this.options.executor(this.streams);
      await this.executor.start();
      return;
    }
    await this.options.sockets.drain();
    this.options.exit(0);
  }

  private publishStream(name: StreamName, text: string): void {
    if (this.outputParent && this.outputParent.content.silent) return;
    void this.publish('stream', { name, text }, this.outputParent);
  }

  private status(state: ExecutionState, parent: JupyterMessage): Promise<void> {
    return this.publish('status', { execution_state: state }, parent);
  }

  private publish(msgType: string, content: JsonObject, parent?: JupyterMessage): Promise<void> {
    const msg = newMessage(msgType, content, { session: this.session, parent, username: 'kernel' });
    msg.identities = [Buffer.from(`kernel.${this.session}.${msgType}`)];
    return this.options.sockets.send('iopub', msg);
  }

  private reply(channel: ServerChannel, request: JupyterMessage, msgType: string, content: JsonObject): Promise<void> {
    const msg = newMessage(msgType, content, { session: this.session, parent: request, username: 'kernel' });
    msg.identities = request.identities;
    return this.options.sockets.send(channel, msg);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

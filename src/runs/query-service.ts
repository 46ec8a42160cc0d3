/**
 * The v1 execute call: query, batch, continue and input modes on top of the kernel manager. Query and
 * batch runs live in one table, so "continue" works the same for both.
 */
import type { Config } from '../config/index.js';
import { conflict, notFound } from '../errors.js';
import type { KernelHandle } from '../kernels/kernel-handle.js';
import type { KernelEvents } from '../kernels/kernel-manager.js';
import type { Logger } from '../logger.js';
import { BatchRun, resolveBatchCommands, type BatchOptions } from './batch.js';
import { OomNotices } from './oom-notice.js';
import { Completions, type Completion, type CompleteRequest } from './completion.js';
import { QueryRun, QueryRuns, type NextOptions, type Run, type RunResult } from './query.js';

export type ExecuteRequest =
  | { mode: 'query'; code: string; runId?: string }
  | { mode: 'batch'; options: BatchOptions; runId?: string }
  | { mode: 'continue'; runId: string }
  | { mode: 'input'; runId: string; code: string };

/** What the runs need of the kernel manager: a kernel resolved once per request, and the kernels' fates. */
export interface RunKernels {
  handle(id: string): Promise<KernelHandle>;
  interrupt(id: string): Promise<void>;
  on<E extends keyof KernelEvents>(event: E, listener: (...args: KernelEvents[E]) => void): unknown;
}

const SWEEP_INTERVAL_MS = 1000;
/** How long v1's interrupt waits for the runs it stops to end (code that ignores SIGINT goes on). */
const INTERRUPT_SETTLE_MS = 3000;

export class QueryService {
  private readonly runs: QueryRuns;
  private readonly oom = new OomNotices();
  private readonly completions: Completions;
  /** v1 interrupts of each kernel still being delivered (see interrupt). */
  private readonly interrupting = new Map<string, Promise<void>>();
  /** Runs abandoned or past the bounds are discarded by this sweep (see QueryRuns). */
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly kernels: RunKernels,
    private readonly config: Config,
    private readonly log: Logger,
  ) {
    this.runs = new QueryRuns({ ttlMs: config.runTtlMs, maxPerKernel: config.maxRunsPerKernel, maxBufferedBytes: config.maxRunBufferedBytes });
    this.completions = new Completions(config.completeTimeoutMs);
    this.sweeper = setInterval(() => this.runs.sweep(), SWEEP_INTERVAL_MS);
    this.sweeper.unref();
    kernels.on('removed', (kernelId, reason) => this.runs.abortKernel(kernelId, reason, true));
    // Also when the kernel is restarted in place after its death (POLYKERNEL_RESTART_DEAD_KERNELS).
    kernels.on('died', (kernelId, reason) => this.runs.abortKernel(kernelId, reason));
    kernels.on('removed', (kernelId) => this.oom.forget(kernelId));
    // Whichever API asked: v1's interrupt or Jupyter's /api/kernels/:id/interrupt.
    kernels.on('interrupting', (kernelId) => this.runs.interruptKernel(kernelId));
    kernels.on('state', (kernelId, state) => state === 'restarting' && this.oom.forget(kernelId));
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  /**
   * One call of v1's execute. `eager` (the streaming socket, src/api/v1/execute-stream.ts): the call
   * answers as soon as there is output instead of waiting for a boundary or the flush window.
   */
  async execute(kernelId: string, request: ExecuteRequest, options: NextOptions = {}): Promise<RunResult> {
    let run: Run;
    if (request.mode === 'query') run = await this.startRun(kernelId, request.code, request.runId);
    else if (request.mode === 'batch') run = await this.startBatch(kernelId, request.options, request.runId);
    else run = this.runs.get(kernelId, request.runId);
    if (request.mode === 'input') await run.sendInput(request.code);
    const result = await run.next(this.config.flushWindowMs, options);
    // Discarded while this call waited (more runs started on the kernel than it keeps): its output was
    // dropped, so an empty "finished" would be a lie; the caller hears why instead, as a later call would.
    const discarded = this.runs.discardedWhy(kernelId, run.runId);
    if (discarded !== undefined) throw notFound(`run ${run.runId} was discarded: ${discarded}`);
    this.runs.settle(kernelId, result);
    if (result.status === 'finished' || result.status === 'exec-timeout') {
      // A program the kernel started killed by the memory cap, the kernel alive: say so (oom-notice.ts).
      const kernel = await this.kernels.handle(kernelId).catch(() => undefined);
      if (kernel) await this.oom.end(kernel, result, run instanceof QueryRun);
    }
    return result;
  }

  /**
   * Answers a run's input request without waiting for what follows: the streaming socket's call that
   * waits for the run (`execute` with `eager`) is already pending and sees the output.
   */
  async sendInput(kernelId: string, runId: string, line: string): Promise<void> {
    await this.runs.get(kernelId, runId).sendInput(line);
  }

  /**
   * Forgets a run nobody will continue (its streaming client went away); what it still prints is
   * dropped. Its time limit holds until its code ends, as for any discarded run.
   */
  abandon(kernelId: string, runId: string, why: string): void {
    this.runs.discard(kernelId, runId, why);
  }

  /** The kernel's completions at the cursor (completion.ts); a kernel gone is the unknown-kernel 404. */
  async complete(kernelId: string, request: CompleteRequest): Promise<Completion> {
    const { kernel } = await this.kernels.handle(kernelId);
    return this.completions.complete(kernel, request);
  }

  /**
   * Interrupts the kernel and answers once its v1 runs have ended (or INTERRUPT_SETTLE_MS passed), and
   * the kernel has answered one more shell request: a client that sends its next query after the 204
   * has it run. ipykernel aborts the executes that reach it after an error (stop_on_error) until an
   * event it queues at once; a request answered after the interrupted one is behind that event, and so
   * is anything the client sends once it heard the 204.
   */
  async interrupt(kernelId: string): Promise<void> {
    // Runs started meanwhile wait for it (see startRun): the SIGINT must not land on them.
    const interrupting = this.interruptNow(kernelId);
    const settled = interrupting.catch(() => undefined);
    this.interrupting.set(kernelId, settled);
    void settled.finally(() => {
      if (this.interrupting.get(kernelId) === settled) this.interrupting.delete(kernelId);
    });
    return interrupting;
  }

  /**
   * Interrupts the kernel for one run whose client went away (the streaming socket), unless that run's
   * code has ended already: a client leaving just as its run ends must not have its SIGINT hit the next
   * run, another client's or its own sent over a new socket.
   */
  async interruptRun(kernelId: string, runId: string): Promise<void> {
    const run = this.runs.peek(kernelId, runId);
    if (!run || run.done) return;
    await this.interrupt(kernelId);
  }

  /** A v1 interrupt of the kernel still being delivered: a new run waits for it to land first. */
  private async afterInterrupt(kernelId: string): Promise<void> {
    await this.interrupting.get(kernelId);
  }

  private async interruptNow(kernelId: string): Promise<void> {
    await this.kernels.interrupt(kernelId);
    const ends = this.runs.endsOf(kernelId);
    if (ends.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const settle = new Promise<void>((resolve) => (timer = setTimeout(resolve, INTERRUPT_SETTLE_MS)));
    await Promise.race([Promise.all(ends), settle]);
    clearTimeout(timer);
    const handle = await this.kernels.handle(kernelId).catch(() => undefined);
    if (handle) await handle.kernel.request('shell', handle.kernel.message('kernel_info_request', {}), INTERRUPT_SETTLE_MS).catch(() => undefined);
  }

  private assertNewRun(kernelId: string, runId: string | undefined): void {
    if (runId !== undefined && this.runs.has(kernelId, runId)) {
      throw conflict(`run ${runId} is still in progress; send mode "continue" or "input" for it`);
    }
  }

  private async startRun(kernelId: string, code: string, runId: string | undefined): Promise<QueryRun> {
    this.assertNewRun(kernelId, runId);
    await this.afterInterrupt(kernelId);
    // No store round trip here: the handle carries the kernel's limits, its counters live on the LiveKernel.
    const handle = await this.kernels.handle(kernelId);
    handle.kernel.numQueriesExecuted++;
    await this.oom.begin(handle);
    const run = new QueryRun(handle.kernel, code, runId, {
      timeoutMs: handle.limits.timeoutMs,
      maxOutputBytes: this.config.maxOutputBytes,
      // Awaited by the run: exec-timeout is answered once the kernel is gone (a GET then says 404).
      onTimeout: () => handle.remove('query timeout').catch(() => undefined),
    });
    this.runs.add(kernelId, run);
    await run.start();
    return run;
  }

  private async startBatch(kernelId: string, options: BatchOptions, runId: string | undefined): Promise<BatchRun> {
    this.assertNewRun(kernelId, runId);
    await this.afterInterrupt(kernelId);
    const handle = await this.kernels.handle(kernelId);
    const { kernel } = handle;
    await this.oom.begin(handle);
    const commands = resolveBatchCommands(options, handle.lang, handle.spec);
    const run: BatchRun = new BatchRun(runId, commands, options.files, options.stdin, {
      kernel: handle,
      timeoutMs: handle.limits.timeoutMs,
      maxOutputBytes: this.config.maxOutputBytes,
      // Steps run beside the kernel, not through its sockets: tell the idle culler it is in use.
      onActivity: () => {
        kernel.lastActivity = Date.now();
      },
      onTimeout: () => handle.remove('batch step outlived its timeout').catch(() => undefined),
      onError: (error) => this.log.error('Batch step failed', { kernelId, runId: run.runId, error: error.stack ?? error.message }),
    });
    // A batch is a client's request even when it sends the kernel nothing: idle time counts from here.
    kernel.lastActivity = Date.now();
    // Files first: a request whose files cannot be written fails as a whole, with no run left behind.
    await run.start();
    this.runs.add(kernelId, run);
    kernel.numQueriesExecuted++;
    return run;
  }
}

/**
 * Notebook executions (nbexec's /api/executions): a submission is checked at once (path confinement,
 * notebook validity, kernel, parameter names: 400/404 before anything is queued), stored, and queued behind
 * POLYKERNEL_MAX_CONCURRENT_EXECUTIONS. A queued execution gets a sandboxed kernel from the KernelManager
 * (the notebook's directory as its work directory), runs cell by cell, loses its kernel in `finally`, and
 * then the service writes the output notebook (after the kernel is gone, so no code of the notebook can
 * race the write).
 *
 * Records live in the store, so with Redis they outlive the service. An execution that was queued or
 * running when this instance stopped (gracefully or not) is marked `error: interrupted by restart`.
 * Events (notebook_start, start/end per cell, notebook_complete/notebook_error) go to subscribers of this
 * process: the chunked POST streams them.
 */
import { randomUUID } from 'node:crypto';
import { EVERYONE, type Visibility } from '../auth/tenant.js';
import type { Config } from '../config/index.js';
import { conflict, DomainError, invalidInput, notFound, unavailable } from '../errors.js';
import type { KernelManager } from '../kernels/kernel-manager.js';
import type { LiveKernel } from '../kernels/live-kernel.js';
import type { Logger } from '../logger.js';
import type { Store } from '../store/store.js';
import {
  errorStatus,
  INTERRUPTED_BY_RESTART,
  isFinished,
  toModel,
  type ExecutionEvent,
  type ExecutionModel,
  type ExecutionRecord,
  type ExecutionRequest,
} from './model.js';
import { injectParameters, parseNotebook, serializeNotebook, type Notebook } from './notebook.js';
import { NotebookRoot } from './paths.js';
import { WorkQueue } from './queue.js';
import { NotebookRunner, type CellEvent, type RunOutcome } from './runner.js';
import { workDirMismatch } from './work-dir-check.js';

export type ExecutionListener = (event: ExecutionEvent) => void;

export interface ExecutionManagerDeps {
  config: Pick<Config, 'notebookRoot' | 'maxConcurrentExecutions' | 'instance' | 'defaultKernelName'>;
  kernels: KernelManager;
  store: Store;
  log: Logger;
  clock?: () => number;
  newId?: () => string;
}

/** An execution of this process, from submission until its final event. */
interface Job {
  record: ExecutionRecord;
  notebook: Notebook;
  workDir: string;
  kernelName: string;
  listeners: Set<ExecutionListener>;
  runner?: NotebookRunner;
  kernelId?: string;
  /** Why it must stop (shutdown, delete, service stop), once asked to. */
  cancelled?: string;
  done: Promise<void>;
  settle: () => void;
}

const SHUT_DOWN = 'shut down by request';
const DELETED = 'the execution was deleted';

export class ExecutionManager {
  readonly root: NotebookRoot;
  private readonly jobs = new Map<string, Job>();
  private readonly queue: WorkQueue;
  private readonly clock: () => number;
  private readonly newId: () => string;
  private stopping = false;
  private stopKernelWatch?: () => void;

  constructor(private readonly deps: ExecutionManagerDeps) {
    this.root = new NotebookRoot(deps.config.notebookRoot);
    this.clock = deps.clock ?? Date.now;
    this.newId = deps.newId ?? randomUUID;
    this.queue = new WorkQueue(deps.config.maxConcurrentExecutions, (id, error) =>
      deps.log.error('Execution failed unexpectedly', { execId: id, error: (error as Error)?.stack ?? String(error) }),
    );
  }

  private get store(): Store {
    return this.deps.store;
  }

  private seconds(): number {
    return this.clock() / 1000;
  }

  /** Marks the executions this instance left unfinished (a crash, or a stop) as interrupted. */
  async start(): Promise<void> {
    const onRemoved = (kernelId: string, reason: string) => {
      for (const job of this.jobs.values()) {
        if (job.kernelId === kernelId) job.runner?.abort(`the kernel died (${reason})`);
      }
    };
    this.deps.kernels.on('removed', onRemoved);
    this.stopKernelWatch = () => this.deps.kernels.off('removed', onRemoved);
    const records = await this.store.list<ExecutionRecord>('executions');
    for (const record of records) {
      if (record.instance !== this.deps.config.instance || isFinished(record.status)) continue;
      await this.store.update<ExecutionRecord>('executions', record.exec_id, {
        status: errorStatus(INTERRUPTED_BY_RESTART),
        completed_at: this.seconds(),
        kernel_id: null,
      });
      // Only a kernel kept over the restart (POLYKERNEL_KEEP_KERNELS_ON_SHUTDOWN) can still be there.
      if (record.kernel_id) await this.deps.kernels.delete(record.kernel_id, 'its execution was interrupted').catch(() => undefined);
      this.deps.log.warn('Execution interrupted by restart', { execId: record.exec_id, path: record.path });
    }
  }

  /**
   * Checks and queues an execution. `listener` (if any) is subscribed before it is queued, so it sees
   * every event; call the returned `unsubscribe` when no longer interested (the execution runs on).
   */
  async submit(
    request: ExecutionRequest,
    listener?: ExecutionListener,
    scope: Visibility = EVERYONE,
  ): Promise<{ execution: ExecutionModel; unsubscribe: () => void }> {
    if (this.stopping) throw unavailable('the service is shutting down');
    if (request.overwrite && request.outputPath === undefined) throw invalidInput('overwrite=true needs output_path');
    const notebookPath = await this.root.resolveNotebook(request.notebook);
    const outputPath = request.outputPath !== undefined ? await this.root.checkOutputPath(request.outputPath) : undefined;
    const parsed = parseNotebook(await this.root.readNotebook(notebookPath));
    const kernelName = request.jupyterKernel ?? parsed.metadata.kernelspec?.name ?? this.deps.config.defaultKernelName;
    const spec = await this.deps.kernels.specs.resolve(kernelName);
    if (!spec) {
      const known = (await this.deps.kernels.specs.names()).join(', ') || 'none';
      throw invalidInput(`kernel "${kernelName.slice(0, 64)}" is not available; available: ${known}`);
    }
    const notebook = injectParameters(parsed, request.params, spec.spec.language);
    notebook.metadata.kernelspec = { name: spec.name, display_name: spec.spec.display_name, language: spec.spec.language };

    const id = this.newId();
    const record: ExecutionRecord = {
      exec_id: id,
      path: notebookPath.rel,
      params: request.params,
      output_path: outputPath ?? null,
      overwrite: request.overwrite,
      jupyter_kernel: request.jupyterKernel ?? null,
      cell_timeout: request.cellTimeoutS ?? null,
      status: 'initializing',
      progress: null,
      last_cell_source: null,
      started_at: null,
      completed_at: null,
      instance: this.deps.config.instance,
      created_at: this.seconds(),
      kernel_id: null,
      owner: scope.owner,
    };
    await this.store.put('executions', id, record);
    let settle!: () => void;
    const done = new Promise<void>((resolve) => (settle = resolve));
    const job: Job = { record, notebook, workDir: notebookPath.dir, kernelName: spec.name, listeners: new Set(), done, settle };
    if (listener) job.listeners.add(listener);
    this.jobs.set(id, job);
    this.queue.push(id, () => this.run(job));
    this.deps.log.info('Execution queued', { execId: id, path: record.path, kernel: spec.name, waiting: this.queue.waitingCount });
    return { execution: toModel(record), unsubscribe: () => job.listeners.delete(listener!) };
  }

  private async run(job: Job): Promise<void> {
    const { log, kernels } = this.deps;
    const execId = job.record.exec_id;
    const stopped = (reason: string): RunOutcome => ({ ok: false, status: reason, error: reason });
    let outcome: RunOutcome | undefined;
    let ran = false;
    await this.patch(job, { started_at: this.seconds() });
    try {
      if (job.cancelled) {
        outcome = stopped(job.cancelled);
        return;
      }
      try {
        const { record } = await kernels.create({ lang: job.kernelName, workDir: job.workDir, owner: job.record.owner });
        job.kernelId = record.id;
        await this.patch(job, { kernel_id: record.id });
        if (job.cancelled) {
          outcome = stopped(job.cancelled);
          return;
        }
        // Before any cell: the engine mounted the directory by path, which a kernel may have swapped.
        const handle = await kernels.handle(record.id);
        const mismatch = await workDirMismatch(this.root, job.workDir, handle);
        if (mismatch) {
          log.warn('Execution refused: its kernel did not get the notebook directory', { execId, kernelId: record.id, why: mismatch });
          outcome = stopped(mismatch);
          return;
        }
        const { kernel } = handle;
        job.runner = new NotebookRunner(kernel, job.notebook, {
          cellTimeoutS: job.record.cell_timeout ?? undefined,
          clock: this.clock,
          onCellEvent: (event) => this.onCellEvent(job, event),
        });
        job.notebook.metadata.language_info = await this.languageInfo(kernel);
      } catch (error) {
        const why = error instanceof DomainError ? error.message : 'internal error (logged)';
        if (!(error instanceof DomainError)) log.error('Kernel start for an execution failed', { execId, error: (error as Error)?.stack });
        outcome = stopped(`the kernel could not start: ${why}`);
        return;
      }
      if (job.cancelled) job.runner.abort(job.cancelled);
      ran = true;
      await this.patch(job, { status: 'executing' });
      this.emit(job, { event: 'notebook_start', timestamp: this.seconds(), execution: toModel(job.record) });
      log.info('Execution started', { execId, kernelId: job.kernelId, cells: job.runner.total });
      outcome = await job.runner.run();
    } catch (error) {
      log.error('Execution failed', { execId, error: (error as Error)?.stack ?? String(error) });
      outcome = stopped('internal error (logged)');
    } finally {
      const kernelId = job.kernelId;
      job.kernelId = undefined;
      if (kernelId) await kernels.delete(kernelId, 'execution finished').catch(() => undefined);
      await this.finish(job, outcome ?? stopped('internal error (logged)'), ran);
    }
  }

  /** The kernel's language_info for the output's metadata (nbformat requires its `name`). */
  private async languageInfo(kernel: LiveKernel): Promise<Record<string, unknown> | undefined> {
    try {
      const reply = await kernel.request('shell', kernel.message('kernel_info_request', {}), 5000);
      const info = reply.content.language_info as Record<string, unknown> | undefined;
      return info && typeof info === 'object' && typeof info.name === 'string' ? info : undefined;
    } catch {
      // A courtesy for readers of the output; the run does not need it.
      return undefined;
    }
  }

  private async onCellEvent(job: Job, event: CellEvent): Promise<void> {
    if (event.event === 'start') {
      const present = await this.patch(job, { progress: event.progress, last_cell_source: event.cell.source });
      // Deleted through another replica (or by hand): nobody wants the rest of it.
      if (!present) job.runner?.abort(DELETED);
    }
    this.emit(job, event);
  }

  /** Writes the output (when the notebook ran at all), records the end, sends the final event. */
  private async finish(job: Job, outcome: RunOutcome, writeOutput: boolean): Promise<void> {
    let outputPath = job.record.output_path;
    if (writeOutput) {
      try {
        outputPath = await this.root.writeOutput(serializeNotebook(job.notebook), {
          notebookRel: job.record.path,
          explicit: job.record.output_path ?? undefined,
          overwrite: job.record.overwrite,
        });
      } catch (error) {
        const why = error instanceof DomainError ? error.message : (error as Error).message;
        this.deps.log.error('Could not write the output notebook', { execId: job.record.exec_id, error: why });
        if (outcome.ok) outcome = { ok: false, status: `could not write the output notebook: ${why}`, error: `could not write the output notebook: ${why}` };
      }
    }
    await this.patch(job, {
      status: outcome.ok ? 'completed' : errorStatus(outcome.status),
      output_path: outputPath,
      progress: job.runner?.progress ?? job.record.progress,
      completed_at: this.seconds(),
      kernel_id: null,
    });
    const execution = toModel(job.record);
    this.emit(
      job,
      outcome.ok
        ? { event: 'notebook_complete', timestamp: this.seconds(), execution }
        : { event: 'notebook_error', timestamp: this.seconds(), exec_id: execution.exec_id, output_path: outputPath, error: outcome.error, execution },
    );
    this.deps.log.info('Execution finished', { execId: execution.exec_id, status: execution.status, outputPath });
    job.listeners.clear();
    this.jobs.delete(job.record.exec_id);
    job.settle();
  }

  /** Updates the record here and in the store; false when the store no longer has it. */
  private async patch(job: Job, patch: Partial<ExecutionRecord>): Promise<boolean> {
    Object.assign(job.record, patch);
    try {
      return await this.store.update<ExecutionRecord>('executions', job.record.exec_id, patch);
    } catch (error) {
      // The store is down for a moment: the run goes on, its record catches up at the next update.
      this.deps.log.warn('Could not update an execution record', { execId: job.record.exec_id, error: (error as Error).message });
      return true;
    }
  }

  private emit(job: Job, event: ExecutionEvent): void {
    for (const listener of job.listeners) {
      try {
        listener(event);
      } catch (error) {
        this.deps.log.warn('An execution event listener failed', { execId: job.record.exec_id, error: (error as Error).message });
      }
    }
  }

  /** Asks a job to stop: a queued one ends at once, a running one at the cell in flight. */
  private cancel(job: Job, reason: string): Promise<void> {
    job.cancelled ??= reason;
    if (this.queue.withdraw(job.record.exec_id)) {
      void this.finish(job, { ok: false, status: job.cancelled, error: job.cancelled }, false);
    } else {
      job.runner?.abort(job.cancelled);
    }
    return job.done;
  }

  async get(id: string, scope: Visibility = EVERYONE): Promise<ExecutionModel> {
    return toModel(await this.record(id, scope));
  }

  /** The record, or the 404 of an unknown id when it belongs to another owner (no existence oracle). */
  private async record(id: string, scope: Visibility): Promise<ExecutionRecord> {
    const record = await this.store.get<ExecutionRecord>('executions', id);
    if (!record || !scope.sees(record.owner)) throw notFound(`no execution with id ${id.slice(0, 64)}`);
    return record;
  }

  async list(scope: Visibility = EVERYONE): Promise<ExecutionModel[]> {
    const records = (await this.store.list<ExecutionRecord>('executions')).filter((record) => scope.sees(record.owner));
    return records.sort((a, b) => a.created_at - b.created_at).map(toModel);
  }

  /**
   * Stops a queued or running execution; a finished one is left as it is. Checks at once (404, or 409
   * when another instance runs it); `done` resolves when the execution has ended.
   */
  async shutdown(id: string, scope: Visibility = EVERYONE): Promise<{ done: Promise<ExecutionModel> }> {
    const record = await this.record(id, scope);
    const job = this.jobs.get(id);
    if (job) return { done: this.cancel(job, SHUT_DOWN).then(() => this.get(id, scope)) };
    if (!isFinished(record.status)) {
      throw conflict(`execution ${id} runs in service instance "${record.instance}"; send the shutdown there`);
    }
    return { done: Promise.resolve(toModel(record)) };
  }

  /** Stops the execution if it runs here, then forgets it. Checks at once (404); `done` when it is gone. */
  async delete(id: string, scope: Visibility = EVERYONE): Promise<{ done: Promise<void> }> {
    await this.record(id, scope);
    const job = this.jobs.get(id);
    const done = (job ? this.cancel(job, DELETED) : Promise.resolve()).then(async () => {
      await this.store.delete('executions', id);
      this.deps.log.info('Execution deleted', { execId: id });
    });
    return { done };
  }

  async deleteAll(scope: Visibility = EVERYONE): Promise<void> {
    const records = (await this.store.list<ExecutionRecord>('executions')).filter((record) => scope.sees(record.owner));
    await Promise.all(
      records.map(async (record) => {
        try {
          await (await this.delete(record.exec_id, scope)).done;
        } catch (error) {
          // Deleted concurrently: that is the wanted end anyway.
          if (!(error instanceof DomainError && error.code === 'not_found')) throw error;
        }
      }),
    );
  }

  /** Subscribes to a live execution of this process; undefined when it is not running here. */
  subscribe(id: string, listener: ExecutionListener): (() => void) | undefined {
    const job = this.jobs.get(id);
    if (!job) return undefined;
    job.listeners.add(listener);
    return () => job.listeners.delete(listener);
  }

  /** On shutdown of the service: every queued or running execution ends as interrupted. */
  async stop(): Promise<void> {
    this.stopping = true;
    const jobs = [...this.jobs.values()];
    await Promise.all(jobs.map((job) => this.cancel(job, INTERRUPTED_BY_RESTART)));
    this.stopKernelWatch?.();
  }
}

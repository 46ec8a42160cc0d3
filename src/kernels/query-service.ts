/**
 * The v1 execute call: query, continue and input modes on top of the kernel manager.
 */
import type { Config } from '../config/index.js';
import { conflict } from '../errors.js';
import type { KernelManager } from './kernel-manager.js';
import { QueryRun, QueryRuns, type RunResult } from './query.js';

export type ExecuteRequest =
  | { mode: 'query'; code: string; runId?: string }
  | { mode: 'continue'; runId: string }
  | { mode: 'input'; runId: string; code: string };

export class QueryService {
  private readonly runs = new QueryRuns();

  constructor(private readonly manager: KernelManager, private readonly config: Config) {
    manager.on('removed', (kernelId, reason) => this.runs.abortKernel(kernelId, reason));
  }

  async execute(kernelId: string, request: ExecuteRequest): Promise<RunResult> {
    const run = request.mode === 'query' ? await this.startRun(kernelId, request.code, request.runId) : this.runs.get(kernelId, request.runId);
    if (request.mode === 'input') await run.sendInput(request.code);
    const result = await run.next(this.config.flushWindowMs);
    this.runs.settle(kernelId, result);
    return result;
  }

  private async startRun(kernelId: string, code: string, runId: string | undefined): Promise<QueryRun> {
    if (runId !== undefined && this.runs.has(kernelId, runId)) {
      throw conflict(`run ${runId} is still in progress; send mode "continue" or "input" for it`);
    }
    const kernel = await this.manager.liveKernel(kernelId);
    const record = await this.manager.get(kernelId);
    const run = new QueryRun(kernel, code, runId, {
      timeoutMs: record.limits.timeoutMs,
      maxOutputBytes: this.config.maxOutputBytes,
      onTimeout: () => void this.manager.delete(kernelId, 'query timeout').catch(() => undefined),
    });
    this.runs.add(kernelId, run);
    await Promise.all([run.start(), this.manager.countQuery(kernelId)]);
    return run;
  }
}

/**
 * Samples memory and CPU of every live kernel into its record (the provisioner measures: every process
 * of the kernel's container), and destroys kernels past their idle timeout, CPU credit or idle-CPU
 * budget (idle-cpu.ts).
 */
import type { Logger } from '../logger.js';
import type { KernelHandle } from './kernel-handle.js';
import type { KernelManager } from './kernel-manager.js';
import { IdleCpuBudget } from './idle-cpu.js';
import type { KernelRecord } from './kernel-record.js';

export type SampledKernels = Pick<KernelManager, 'handles' | 'delete' | 'records'>;

export class UsageMonitor {
  private timer?: NodeJS.Timeout;
  private sampling = false;

  constructor(
    private readonly kernels: SampledKernels,
    private readonly log: Logger,
    private readonly intervalMs: number,
    private readonly clock: () => number = Date.now,
    private readonly idleCpu = new IdleCpuBudget(0, 60_000),
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sampleOnce(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One round: sample, store, cull. Rounds never overlap. */
  async sampleOnce(): Promise<void> {
    if (this.sampling) return;
    this.sampling = true;
    try {
      const live = this.kernels.handles();
      this.idleCpu.retain(new Set(live.map((handle) => handle.id)));
      await Promise.all(live.map((handle) => this.sampleKernel(handle)));
    } finally {
      this.sampling = false;
    }
  }

  private async sampleKernel(handle: KernelHandle): Promise<void> {
    const { kernel, id } = handle;
    const { lastActivity, state } = kernel;
    try {
      const record = await this.kernels.records.get(id);
      if (!record || !record.containerId || state === 'dead' || state === 'restarting' || state === 'starting') return;
      const usage = await handle.usage();
      const patch: Partial<KernelRecord> = {
        lastActivity: Math.max(lastActivity, record.lastActivity),
        state,
        numQueriesExecuted: Math.max(kernel.numQueriesExecuted, record.numQueriesExecuted),
      };
      if (usage) {
        patch.memoryUsedKB = Math.round(usage.memoryBytes / 1024);
        // Monotonic: a process that exited takes its CPU time with it, but credit spent stays spent.
        patch.cpuCreditUsedMs = Math.max(record.cpuCreditUsedMs, record.cpuCreditBaseMs + Math.round(usage.cpuMs));
      }
      await this.kernels.records.update(id, patch);
      let idleCpuReason: string | undefined;
      if (usage) {
        const now = this.clock();
        // Attended: a client's execution is in progress, or a request of a client may still be running
        // (none outlives the query timeout). Neither depends on what the kernel itself reports.
        const attended = kernel.executing || now - patch.lastActivity! <= record.limits.timeoutMs + 2 * this.intervalMs;
        idleCpuReason = this.idleCpu.verdict(this.idleCpu.sample(id, now, patch.cpuCreditUsedMs!, attended));
      }
      const reason = this.cullReason({ ...record, ...patch }) ?? idleCpuReason;
      if (reason) await this.kernels.delete(id, reason);
    } catch (error) {
      this.log.debug('Usage sample failed', { kernelId: id, error: (error as Error).message });
    }
  }

  /** Why a kernel must go now, or undefined. */
  cullReason(record: KernelRecord): string | undefined {
    const { idleTimeoutMs, maxCpuCreditMs } = record.limits;
    if (idleTimeoutMs > 0 && record.state !== 'busy' && this.clock() - record.lastActivity > idleTimeoutMs) {
      return 'idle timeout';
    }
    if (maxCpuCreditMs > 0 && record.cpuCreditUsedMs > maxCpuCreditMs) return 'CPU credit exhausted';
    return undefined;
  }
}

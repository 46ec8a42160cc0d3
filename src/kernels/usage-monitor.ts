/**
 * Samples memory and CPU of every live kernel's container into the store, and destroys kernels past
 * their idle timeout or CPU credit. memoryUsed and cpuCreditUsed cover every process of the container:
 * pidusage over the container's host PIDs, or the engine's stats where those PIDs are not visible
 * (the service itself in a container without the host's PID namespace).
 */
import pidusage from 'pidusage';
import type { Logger } from '../logger.js';
import type { ContainerRuntime, ResourceUsage } from '../runtime/runtime.js';
import type { Store } from '../store/store.js';
import type { KernelManager } from './kernel-manager.js';
import type { KernelRecord } from './kernel-record.js';
import type { LiveKernel } from './live-kernel.js';

export class UsageMonitor {
  private timer?: NodeJS.Timeout;
  private sampling = false;

  constructor(
    private readonly manager: KernelManager,
    private readonly runtime: ContainerRuntime,
    private readonly store: Store,
    private readonly log: Logger,
    private readonly intervalMs: number,
    private readonly clock: () => number = Date.now,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sampleOnce(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async usageOf(containerId: string): Promise<ResourceUsage | undefined> {
    const pids = await this.runtime.processIds(containerId);
    if (pids.length > 0) {
      try {
        const stats = await pidusage(pids);
        let memoryBytes = 0;
        let cpuMs = 0;
        for (const stat of Object.values(stats)) {
          if (!stat) continue;
          memoryBytes += stat.memory;
          cpuMs += stat.ctime;
        }
        return { memoryBytes, cpuMs };
      } catch {
        // A process exited between listing and reading; the engine's figures will do for this round.
      } finally {
        // pidusage keeps per-PID history for its CPU percentage, which we do not use: drop it.
        pidusage.clear();
      }
    }
    return this.runtime.engineUsage(containerId);
  }

  /** One round: sample, store, cull. Rounds never overlap. */
  async sampleOnce(): Promise<void> {
    if (this.sampling) return;
    this.sampling = true;
    try {
      await Promise.all(this.manager.liveKernels().map((kernel) => this.sampleKernel(kernel)));
    } finally {
      this.sampling = false;
    }
  }

  private async sampleKernel(kernel: LiveKernel): Promise<void> {
    const { id, lastActivity, state } = kernel;
    try {
      const record = await this.store.get<KernelRecord>('kernels', id);
      if (!record || !record.containerId || state === 'dead' || state === 'restarting' || state === 'starting') return;
      const usage = await this.usageOf(record.containerId);
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
      await this.store.update<KernelRecord>('kernels', id, patch);
      const reason = this.cullReason({ ...record, ...patch });
      if (reason) await this.manager.delete(id, reason);
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

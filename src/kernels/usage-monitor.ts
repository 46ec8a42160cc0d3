/**
 * Samples memory and CPU of every live kernel's container into the store, and destroys kernels past
 * their idle timeout, CPU credit or idle-CPU budget (idle-cpu.ts). memoryUsed and cpuCreditUsed cover
 * every process of the container: pidusage over the container's host PIDs, or the engine's stats where
 * those PIDs are not visible (the service itself in a container without the host's PID namespace). CPU
 * time is the container's cgroup counter where the host's cgroup files are readable: it keeps the time of
 * processes that have exited, so a burner made of short-lived processes is counted in full (pidusage
 * only sees processes alive at the sample).
 */
import pidusage from 'pidusage';
import { cgroupCpuMs } from '../runtime/cgroup-files.js';
import type { Logger } from '../logger.js';
import type { ContainerRuntime, ResourceUsage } from '../runtime/runtime.js';
import type { Store } from '../store/store.js';
import type { KernelManager } from './kernel-manager.js';
import { IdleCpuBudget } from './idle-cpu.js';
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
    private readonly idleCpu = new IdleCpuBudget(0, 60_000),
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
        return { memoryBytes, cpuMs: cgroupCpuMs(containerId) ?? cpuMs };
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
      const live = this.manager.liveKernels();
      this.idleCpu.retain(new Set(live.map((kernel) => kernel.id)));
      await Promise.all(live.map((kernel) => this.sampleKernel(kernel)));
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
      let idleCpuReason: string | undefined;
      if (usage) {
        const now = this.clock();
        // Attended: a client's execution is in progress, or a request of a client may still be running
        // (none outlives the query timeout). Neither depends on what the kernel itself reports.
        const attended = kernel.executing || now - patch.lastActivity! <= record.limits.timeoutMs + 2 * this.intervalMs;
        idleCpuReason = this.idleCpu.verdict(this.idleCpu.sample(id, now, patch.cpuCreditUsedMs!, attended));
      }
      const reason = this.cullReason({ ...record, ...patch }) ?? idleCpuReason;
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

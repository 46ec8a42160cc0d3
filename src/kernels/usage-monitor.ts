/**
 * Samples memory and CPU of every live kernel of this process into its record (the provisioner measures:
 * every process of the kernel's container), and destroys kernels past their idle timeout, CPU credit or
 * idle-CPU budget (idle-cpu.ts).
 *
 * With several replicas sharing a Redis, a kernel must be culled exactly once, on what every replica knows
 * of it. So:
 * - each replica writes its kernels' figures; last activity and the counters only ever grow in the record
 *   (several replicas may see activity on one kernel; none may move it back);
 * - the leader (leader-lease.ts) alone decides idle timeouts and CPU credit, from the records of every
 *   replica's kernels, and orders a removal by writing `cullReason` to the record under its lease's fence
 *   (a leader whose lease lapsed is refused by the store, and culls nothing);
 * - the replica running the kernel carries the order out (at once when that is the leader itself, else
 *   at its next sample); the idle-CPU budget, measured only where the kernel runs, is decided there.
 * A single process is always its own leader: it culls in the round that finds a kernel past its limits,
 * as before.
 */
import type { Leadership } from '../cluster/leader-lease.js';
import type { Logger } from '../logger.js';
import type { Fence } from '../store/store.js';
import type { KernelHandle } from './kernel-handle.js';
import type { KernelManager } from './kernel-manager.js';
import { IdleCpuBudget } from './idle-cpu.js';
import type { KernelRecord, KernelState } from './kernel-record.js';

export type SampledKernels = Pick<KernelManager, 'handles' | 'delete' | 'records'> & Partial<Pick<KernelManager, 'slots'>>;

/** The figures of a record that only ever grow, whichever replica writes them. */
const NEVER_LOWER = ['lastActivity', 'numQueriesExecuted', 'cpuCreditUsedMs'] as const;

/** Kernels in these states are not judged: a start, a restart or a removal is under way. */
const UNJUDGED: readonly KernelState[] = ['dead', 'restarting', 'starting'];

/** How often the leader mends kernel slots (kernel-slots.ts reconcile). */
const RECONCILE_EVERY_MS = 30_000;

/** Without a lease (a process on its own): always the leader, with no fence to carry. */
const SOLE_PROCESS: Leadership & { unfenced: true } = { fence: () => undefined, unfenced: true };

export class UsageMonitor {
  private timer?: NodeJS.Timeout;
  private sampling = false;
  private lastReconcile = 0;

  constructor(
    private readonly kernels: SampledKernels,
    private readonly log: Logger,
    private readonly intervalMs: number,
    private readonly clock: () => number = Date.now,
    private readonly idleCpu = new IdleCpuBudget(0, 60_000),
    private readonly leadership: Leadership = SOLE_PROCESS,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sampleOnce(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One round: sample and store this process's kernels; on the leader, cull across replicas. Rounds never overlap. */
  async sampleOnce(): Promise<void> {
    if (this.sampling) return;
    this.sampling = true;
    try {
      const live = this.kernels.handles();
      this.idleCpu.retain(new Set(live.map((handle) => handle.id)));
      await Promise.all(live.map((handle) => this.sampleKernel(handle)));
      const fence = this.leadership.fence();
      if (fence || this.leadership === SOLE_PROCESS) await this.cullAsLeader(fence, new Map(live.map((handle) => [handle.id, handle])));
    } finally {
      this.sampling = false;
    }
  }

  private async sampleKernel(handle: KernelHandle): Promise<void> {
    const { kernel, id } = handle;
    const { lastActivity, state } = kernel;
    try {
      const record = await this.kernels.records.get(id);
      if (!record) return;
      // The leader ordered its removal (it runs here, so this replica carries the order out).
      if (record.cullReason) {
        await this.kernels.delete(id, record.cullReason);
        return;
      }
      if (!record.containerId || UNJUDGED.includes(state)) return;
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
      await this.kernels.records.update(id, patch, { neverLower: NEVER_LOWER });
      // Past its idle timeout or CPU credit: the leader's to order (that reason comes first, as it always has).
      if (usage && !this.cullReason({ ...record, ...patch })) {
        const now = this.clock();
        // Attended: a client's execution is in progress, or a request of a client may still be running
        // (none outlives the query timeout). Neither depends on what the kernel itself reports.
        const attended = kernel.executing || now - patch.lastActivity! <= record.limits.timeoutMs + 2 * this.intervalMs;
        const idleCpuReason = this.idleCpu.verdict(this.idleCpu.sample(id, now, patch.cpuCreditUsedMs!, attended));
        if (idleCpuReason) await this.kernels.delete(id, idleCpuReason);
      }
    } catch (error) {
      this.log.debug('Usage sample failed', { kernelId: id, error: (error as Error).message });
    }
  }

  /**
   * The leader's round: every replica's kernels judged on their records (this process's own overlaid with
   * what it knows first-hand), a removal ordered under the fence for each past its limits.
   */
  private async cullAsLeader(fence: Fence | undefined, local: ReadonlyMap<string, KernelHandle>): Promise<void> {
    try {
      for (const stored of await this.kernels.records.list()) {
        const kernel = local.get(stored.id)?.kernel;
        const record = kernel ? { ...stored, state: kernel.state, lastActivity: Math.max(stored.lastActivity, kernel.lastActivity) } : stored;
        if (record.cullReason || !record.containerId || UNJUDGED.includes(record.state)) continue;
        const reason = this.cullReason(record);
        if (!reason) continue;
        const ordered = await this.kernels.records.orderRemoval(record.id, reason, fence);
        if (ordered === 'fenced') {
          this.log.warn('Not the leader any more: the culling round stops', { epoch: fence?.epoch });
          return;
        }
        if (ordered === 'written' && kernel) await this.kernels.delete(record.id, reason).catch(() => undefined);
      }
      if (this.kernels.slots && this.clock() - this.lastReconcile >= RECONCILE_EVERY_MS) {
        this.lastReconcile = this.clock();
        const mended = await this.kernels.slots.reconcile(() => this.kernels.records.list());
        if (mended.released + mended.held > 0) this.log.warn('Mended kernel slots (KG_MAX_KERNELS) a crash or a store error left', mended);
      }
    } catch (error) {
      this.log.debug('Culling round failed', { error: (error as Error).message });
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

/**
 * Replicas sharing one store serve any kernel: a request naming a kernel this process does not hold
 * reads its record, and when the record names a live kernel, this process opens its own transport to it
 * through the provisioner (a Jupyter kernel serves several clients; no second container is ever made)
 * and registers it as attached. The kernel stays its creator's in every other way: this process never
 * holds its memory, counts it against KG_MAX_KERNELS, or removes it at its own shutdown.
 *
 * Bounded: at most POLYKERNEL_MAX_ATTACHED_KERNELS attached at once (the one unused longest is let go
 * to make room, or the request is 503 when every one is in use), and one unused for
 * POLYKERNEL_ATTACH_IDLE_MS is let go. Unknown ids cost one store read and leave nothing behind, so a
 * client naming a million ids grows nothing.
 */
import { unavailable } from '../errors.js';
import type { Logger } from '../logger.js';
import type { KernelRecord } from './kernel-record.js';
import type { KernelRecords } from './kernel-records.js';
import type { KernelRegistry } from './kernel-registry.js';
import { KeyedMutex } from './keyed-mutex.js';
import type { LiveKernel } from './live-kernel.js';

/** How long an attached kernel may take to answer on control (as adoption). */
const ATTACH_TIMEOUT_MS = 5000;

export interface AttachDeps {
  records: KernelRecords;
  registry: KernelRegistry;
  log: Logger;
  connect(record: KernelRecord): LiveKernel;
  /** Registers the attached kernel's handle. */
  register(record: KernelRecord, kernel: LiveKernel): Promise<void>;
  /** Whether a lifecycle operation (restart, delete, …) of the kernel is under way in this process. */
  busy(kernelId: string): boolean;
  maxAttached: number;
  idleMs: number;
  clock: () => number;
}

export class KernelAttachments {
  /** Attached kernels by id, with when a request last used them; in order of that use (oldest first). */
  private readonly lastUse = new Map<string, number>();
  /** Concurrent first requests for one kernel attach it once. */
  private readonly attaching = new KeyedMutex();

  constructor(private readonly deps: AttachDeps) {}

  get size(): number {
    return this.lastUse.size;
  }

  has(kernelId: string): boolean {
    return this.lastUse.has(kernelId);
  }

  /** A request used the kernel (a map move: the hot path pays no store round trip). */
  touch(kernelId: string): void {
    if (!this.lastUse.has(kernelId)) return;
    this.lastUse.delete(kernelId);
    this.lastUse.set(kernelId, this.deps.clock());
  }

  /**
   * Attaches the kernel unless the registry holds it already. False when its record is gone or names no
   * live kernel (the caller answers the usual 404). `probe: false` (a kernel whose container just died,
   * about to be restarted): the transport is opened without waiting for an answer.
   */
  attach(kernelId: string, options: { probe: boolean } = { probe: true }): Promise<boolean> {
    return this.attaching.run(kernelId, async () => {
      const { registry, records } = this.deps;
      if (registry.has(kernelId) || registry.isStarting(kernelId)) return true;
      const record = await records.get(kernelId);
      // A kernel still starting is its creator's until it is ready (its id is handed out only then).
      if (!record || record.state === 'dead' || record.state === 'starting' || !record.containerId) return false;
      this.makeRoom();
      const kernel = this.deps.connect(record);
      try {
        if (options.probe) {
          // On control, as adoption does: a kernel busy with a long computation answers there at once.
          await kernel.waitReady(ATTACH_TIMEOUT_MS, 250, 'control');
          kernel.setState(record.state === 'busy' ? 'busy' : 'idle');
          // The shell's answer (busy, then idle on iopub) tells the state once a computation in progress ends.
          void kernel.send('shell', kernel.message('kernel_info_request', {})).catch(() => undefined);
        }
        kernel.numQueriesExecuted = record.numQueriesExecuted;
        kernel.lastActivity = record.lastActivity;
        // A delete elsewhere while this waited: the record says so.
        if (!(await records.get(kernelId))) {
          kernel.close();
          return false;
        }
        await this.deps.register(record, kernel);
      } catch (error) {
        kernel.close();
        // Deleted meanwhile (by any replica): it did not answer because it is gone, the usual 404.
        if (!(await records.get(kernelId).catch(() => record))) return false;
        this.deps.log.warn('Could not attach to a kernel of another replica', { kernelId, error: (error as Error).message });
        throw unavailable(`kernel ${kernelId} does not answer this replica (${(error as Error).message}); try again shortly`);
      }
      this.lastUse.set(kernelId, this.deps.clock());
      this.deps.log.debug('Attached to a kernel of another replica', { kernelId, attached: this.lastUse.size });
      return true;
    });
  }

  /** The kernel left the registry (removed, let go): it is no longer attached. */
  forget(kernelId: string): void {
    this.lastUse.delete(kernelId);
  }

  /** Lets go of every attached kernel unused for POLYKERNEL_ATTACH_IDLE_MS. */
  sweep(): void {
    const now = this.deps.clock();
    for (const [kernelId, usedAt] of [...this.lastUse]) {
      const handle = this.deps.registry.peek(kernelId);
      const lastUsed = Math.max(usedAt, handle?.kernel.lastActivity ?? 0);
      if (now - lastUsed >= this.deps.idleMs && !this.inUse(kernelId)) this.detach(kernelId);
    }
  }

  /** Closes this process's transport to an attached kernel; the kernel itself goes on. */
  detach(kernelId: string): void {
    this.lastUse.delete(kernelId);
    const handle = this.deps.registry.take(kernelId);
    handle?.kernel.close();
    if (handle) this.deps.log.debug('Let go of a kernel of another replica', { kernelId });
  }

  /** Every attached kernel's id. */
  ids(): string[] {
    return [...this.lastUse.keys()];
  }

  private inUse(kernelId: string): boolean {
    const kernel = this.deps.registry.peek(kernelId)?.kernel;
    return this.deps.busy(kernelId) || (kernel !== undefined && (kernel.executing || kernel.listened || kernel.state === 'restarting'));
  }

  private makeRoom(): void {
    if (this.lastUse.size < this.deps.maxAttached) return;
    for (const kernelId of this.lastUse.keys()) {
      if (this.inUse(kernelId)) continue;
      this.detach(kernelId);
      return;
    }
    throw unavailable(`this replica holds POLYKERNEL_MAX_ATTACHED_KERNELS (${this.deps.maxAttached}) kernels of other replicas, all in use; try again shortly`);
  }
}

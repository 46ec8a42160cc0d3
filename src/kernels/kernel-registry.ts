/**
 * The kernels of this process (jupyter_client's MultiKernelManager): live ones with their handles, those
 * still starting, and why recently removed ones went. An id is resolved here once per request.
 */
import { unknownKernel } from '../errors.js';
import type { KernelHandle, ProvisionedKernelHandle } from './kernel-handle.js';
import type { KernelRecord } from './kernel-record.js';
import type { LiveKernel } from './live-kernel.js';

/** Removals remembered, so that a caller that was waiting on a kernel can say why it went. */
const GRAVEYARD_SIZE = 1000;

export class KernelRegistry {
  private readonly live = new Map<string, ProvisionedKernelHandle>();
  private readonly starting = new Map<string, Promise<KernelRecord>>();
  private readonly graveyard = new Map<string, { reason: string; owner?: string }>();

  add(handle: ProvisionedKernelHandle): void {
    this.live.set(handle.id, handle);
  }

  /** Takes a kernel out; returns its handle when it was live. */
  take(id: string): ProvisionedKernelHandle | undefined {
    const handle = this.live.get(id);
    this.live.delete(id);
    return handle;
  }

  has(id: string): boolean {
    return this.live.has(id);
  }

  /** The live handle, without waiting for a start. */
  peek(id: string): ProvisionedKernelHandle | undefined {
    return this.live.get(id);
  }

  get size(): number {
    return this.live.size;
  }

  handles(): ProvisionedKernelHandle[] {
    return [...this.live.values()];
  }

  kernels(): LiveKernel[] {
    return this.handles().map((handle) => handle.kernel);
  }

  /** Tracks a start in progress until it settles. */
  trackStart(id: string, started: Promise<KernelRecord>): void {
    this.starting.set(id, started);
    void started.catch(() => undefined).finally(() => this.starting.delete(id));
  }

  isStarting(id: string): boolean {
    return this.starting.has(id);
  }

  /** The record of a kernel still starting, once its start settles (undefined if it failed). */
  startOf(id: string): Promise<KernelRecord | undefined> | undefined {
    return this.starting.get(id)?.catch(() => undefined);
  }

  /** Resolves once every start in progress has settled. */
  async startsSettled(): Promise<void> {
    await Promise.allSettled([...this.starting.values()]);
  }

  /** The kernel's handle, once a start in progress has settled; the one "unknown kernel" error otherwise. */
  async resolve(id: string): Promise<KernelHandle> {
    await this.startOf(id);
    const handle = this.live.get(id);
    if (!handle || handle.kernel.state === 'dead') throw unknownKernel(id, this.removalReason(id));
    return handle;
  }

  /** The stored record overlaid with what this process knows first-hand and stores only periodically. */
  withLiveFigures(record: KernelRecord): KernelRecord {
    const kernel = this.live.get(record.id)?.kernel;
    if (!kernel) return record;
    return {
      ...record,
      state: kernel.state,
      lastActivity: Math.max(record.lastActivity, kernel.lastActivity),
      numQueriesExecuted: Math.max(record.numQueriesExecuted, kernel.numQueriesExecuted),
    };
  }

  remember(record: Pick<KernelRecord, 'id' | 'owner'>, reason: string): void {
    this.graveyard.delete(record.id);
    this.graveyard.set(record.id, { reason, owner: record.owner });
    if (this.graveyard.size > GRAVEYARD_SIZE) this.graveyard.delete(this.graveyard.keys().next().value!);
  }

  removalReason(id: string): string | undefined {
    return this.graveyard.get(id)?.reason;
  }

  /** Whose a recently removed kernel was (undefined owner: no tenant's), if it went recently. */
  removedKernel(id: string): { owner?: string } | undefined {
    const grave = this.graveyard.get(id);
    return grave && { owner: grave.owner };
  }

  wasRemoved(id: string): boolean {
    return this.graveyard.has(id);
  }
}

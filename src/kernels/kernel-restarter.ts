/**
 * What happens when a kernel's container dies without the service causing it (jupyter_client's
 * KernelRestarter): with POLYKERNEL_RESTART_DEAD_KERNELS the kernel is restarted in place, as Jupyter
 * servers do, within a budget of restarts a minute (jupyter_server's restart_limit); otherwise, or past
 * the budget, it is removed.
 */
import type { Logger } from '../logger.js';
import type { DeathReason } from './provisioner.js';

/** At most this many automatic restarts of one kernel ... */
export const RESTART_LIMIT = 5;
/** ... within this window: a kernel that keeps dying goes. */
export const RESTART_WINDOW_MS = 60_000;

export interface RestarterActions {
  /** Clients are told the kernel died (its runs end); a restart follows. */
  died(kernelId: string, reason: DeathReason): void;
  restart(kernelId: string): Promise<unknown>;
  /** Removes the kernel if `containerId` is still its container. */
  remove(kernelId: string, containerId: string, reason: DeathReason): Promise<void>;
}

export class KernelRestarter {
  /** When each kernel was restarted automatically, within the window. */
  private readonly restarts = new Map<string, number[]>();

  constructor(
    private readonly enabled: boolean,
    private readonly actions: RestarterActions,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
  ) {}

  /** A live kernel's container died. */
  onDeath(kernelId: string, containerId: string, reason: DeathReason): void {
    this.log.warn('Kernel container died', { kernelId, containerId: containerId.slice(0, 12), reason });
    if (this.enabled && this.withinBudget(kernelId)) {
      // Clients see "restarting", then a fresh kernel; a restart that fails removes the kernel.
      this.actions.died(kernelId, reason);
      void this.actions.restart(kernelId).then(
        () => this.log.info('Restarted a kernel whose container died', { kernelId, reason }),
        (error: Error) => this.log.warn('Could not restart a kernel whose container died', { kernelId, error: error.message }),
      );
      return;
    }
    void this.actions
      .remove(kernelId, containerId, reason)
      .catch((error: Error) => this.log.error('Cleanup after a container death failed', { kernelId, error: error.message }));
  }

  /** The kernel is gone: its budget goes with it. */
  forget(kernelId: string): void {
    this.restarts.delete(kernelId);
  }

  private withinBudget(kernelId: string): boolean {
    const now = this.clock();
    const recent = (this.restarts.get(kernelId) ?? []).filter((at) => now - at < RESTART_WINDOW_MS);
    if (recent.length >= RESTART_LIMIT) return false;
    this.restarts.set(kernelId, [...recent, now]);
    return true;
  }
}

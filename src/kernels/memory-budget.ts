/**
 * The host memory budget: the memory caps of every kernel this process holds — live, starting, and
 * waiting in a warm pool — add up to at most POLYKERNEL_MEMORY_BUDGET_KB, so that kernels filling their
 * caps cannot overcommit the host (the engine's OOM killer would then pick victims anywhere, the service
 * and other kernels included).
 *
 * A reservation is taken synchronously before a kernel's container is started, under the kernel's id, and
 * released when the kernel goes (every failure path of a start ends in the manager's destroy, which
 * releases). Check and take are one synchronous step, so concurrent creates cannot overshoot. A pooled
 * kernel keeps its id when it is handed out: its reservation becomes the new kernel's and is resized to
 * the cap the create asks for.
 *
 * A create past the budget is refused with 503, as Backend.AI answers when no agent has room
 * (InstanceNotAvailable): the host is full now, and a retry succeeds once kernels go. A cap larger than
 * the whole budget can never fit, and is a 406 like any limit above the server's caps.
 */
import { limitExceeded, unavailable } from '../errors.js';

export class MemoryBudget {
  private readonly held = new Map<string, number>();
  private heldKB = 0;

  /** `budgetKB` 0 = no budget (reservations are still counted, for the figures). */
  constructor(readonly budgetKB: number) {}

  get usedKB(): number {
    return this.heldKB;
  }

  /**
   * Sets the reservation of `key` to `capKB`, or throws (leaving every reservation as it was) when the
   * increase does not fit. Re-reserving a key resizes its reservation.
   */
  reserve(key: string, capKB: number): void {
    const current = this.held.get(key) ?? 0;
    if (this.budgetKB > 0) {
      if (capKB > this.budgetKB) {
        throw limitExceeded(`a memory cap of ${capKB} KB exceeds this host's memory budget of ${this.budgetKB} KB (POLYKERNEL_MEMORY_BUDGET_KB)`);
      }
      const after = this.heldKB - current + capKB;
      if (capKB > current && after > this.budgetKB) {
        throw unavailable(
          `the host's memory budget is taken: kernels hold ${this.heldKB} KB of POLYKERNEL_MEMORY_BUDGET_KB=${this.budgetKB} KB ` +
            `and this kernel needs ${capKB} KB; delete a kernel, ask for a smaller resourceLimits.maxMem, or try again later`,
        );
      }
    }
    this.held.set(key, capKB);
    this.heldKB += capKB - current;
  }

  /** Records a kernel that exists whatever the budget says (one adopted after a restart of the service). */
  hold(key: string, capKB: number): void {
    const current = this.held.get(key) ?? 0;
    this.held.set(key, capKB);
    this.heldKB += capKB - current;
  }

  /** Gives a reservation back; releasing an unknown key is a no-op, so every path may call it. */
  release(key: string): void {
    const current = this.held.get(key);
    if (current === undefined) return;
    this.held.delete(key);
    this.heldKB -= current;
  }

  has(key: string): boolean {
    return this.held.has(key);
  }
}

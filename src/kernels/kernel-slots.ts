/**
 * KG_MAX_KERNELS across every replica sharing the store: each kernel holds a claim in the store's
 * 'kernel-slots' set, taken in one atomic step that counts the claims of every replica (a Lua script on
 * Redis; one synchronous step in the in-process store). A kernel's claim goes through:
 * - admitted: taken with a TTL (POLYKERNEL_KERNEL_CLAIM_TTL_MS), only while fewer than the max are held,
 *   so a replica that crashes between its claim and its kernel being ready frees the slot by itself;
 * - ready: held until released (a live kernel keeps its slot until it is removed, however long it lives);
 *   a claim that lapsed meanwhile is taken again only under the max, else the kernel fails to start;
 * - adopted (kernels of an earlier run): held whatever the count, since they exist already;
 * - removed, or its start failed: released.
 * A held claim whose release was lost (a crash between the record's removal and the release, a store
 * error then) is found by `reconcile`, run by the leader: a held claim whose kernel has no record goes.
 *
 * Warm-pool kernels hold no claim: as before, they count once handed out (a create takes a warm kernel,
 * then admission), and only the memory budget bounds the pool itself.
 */
import { tooManyKernels } from '../errors.js';
import type { Store } from '../store/store.js';

const SET = 'kernel-slots';

export class KernelSlots {
  constructor(
    private readonly store: Store,
    /** KG_MAX_KERNELS; 0 = no bound (claims are still taken, so that a bound set later counts every kernel). */
    private readonly max: number,
    private readonly ttlMs: number,
  ) {}

  private refused(): Error {
    return tooManyKernels(`the kernel limit (KG_MAX_KERNELS=${this.max}) is reached; delete a kernel first`);
  }

  /** A slot for a kernel about to start, lapsing unless `hold` confirms it; throws 402 when none is free. */
  async take(id: string): Promise<void> {
    if (!(await this.store.claimSlot(SET, id, this.max, this.ttlMs))) throw this.refused();
  }

  /** The kernel is ready: its slot is held until released. */
  async hold(id: string): Promise<void> {
    if (!(await this.store.claimSlot(SET, id, this.max))) throw this.refused();
  }

  /** An adopted kernel exists already: its slot is held whatever the count. */
  async holdExisting(id: string): Promise<void> {
    await this.store.claimSlot(SET, id, 0);
  }

  async release(id: string): Promise<void> {
    await this.store.releaseSlot(SET, id);
  }

  /**
   * Releases held slots whose kernel has no record (`kernelIds` lists the records). Slots are read before
   * the records: a slot is held only once its kernel's record exists, so one held then without a record
   * afterwards is a kernel that is gone. Claims still lapsing are left to their TTL. Answers how many went.
   */
  async reconcile(kernelIds: () => Promise<ReadonlySet<string>>): Promise<number> {
    const held = (await this.store.slots(SET)).filter((claim) => claim.expiresAt === undefined);
    if (held.length === 0) return 0;
    const ids = await kernelIds();
    const gone = held.filter((claim) => !ids.has(claim.member));
    for (const claim of gone) await this.store.releaseSlot(SET, claim.member);
    return gone.length;
  }

  /** The claims held now (tests and the leader's figures). */
  async count(): Promise<number> {
    return (await this.store.slots(SET)).length;
  }
}

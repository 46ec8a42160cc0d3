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
 * `reconcile`, run by the leader, mends what a crash or a store error left: a held claim whose kernel has
 * no record goes (a release that was lost), and a live kernel without a claim gets one (a hold that was
 * lost, as an adoption's while the store was briefly away). A record still `starting` without a claim is
 * a start whose replica crashed: it gets none, so its slot stays free.
 *
 * Warm-pool kernels hold no claim: as before, they count once handed out (a create takes a warm kernel,
 * then admission), and only the memory budget bounds the pool itself.
 */
import { tooManyKernels } from '../errors.js';
import type { Store } from '../store/store.js';
import type { KernelRecord } from './kernel-record.js';

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
   * Releases held slots whose kernel has no record, and holds one for each live kernel that has none
   * (`records` lists the kernel records). Slots are read before the records: a slot is held only once its
   * kernel's record exists, so one held then without a record afterwards is a kernel that is gone; and a
   * record leaves `starting` only once its slot is held, so a live record without a claim lost it. Claims
   * still lapsing are left to their TTL. Holding is by kernel id, so it never counts a kernel twice.
   */
  async reconcile(records: () => Promise<Pick<KernelRecord, 'id' | 'state'>[]>): Promise<{ released: number; held: number }> {
    const claims = await this.store.slots(SET);
    const listed = await records();
    const ids = new Set(listed.map((record) => record.id));
    const claimed = new Set(claims.map((claim) => claim.member));
    const gone = claims.filter((claim) => claim.expiresAt === undefined && !ids.has(claim.member));
    const unclaimed = listed.filter((record) => !claimed.has(record.id) && record.state !== 'starting' && record.state !== 'dead');
    for (const claim of gone) await this.store.releaseSlot(SET, claim.member);
    for (const record of unclaimed) await this.holdExisting(record.id);
    return { released: gone.length, held: unclaimed.length };
  }

  /** The claims held now (tests and the leader's figures). */
  async count(): Promise<number> {
    return (await this.store.slots(SET)).length;
  }
}

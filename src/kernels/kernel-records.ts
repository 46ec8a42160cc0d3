/**
 * The one writer of kernel records and clientSessionToken claims in the store. Everything else reads
 * through the manager, which overlays what this process knows first-hand.
 */
import { conflict } from '../errors.js';
import type { Fence, Store, UpdateOptions } from '../store/store.js';
import type { KernelRecord } from './kernel-record.js';

interface TokenClaim {
  kernelId: string;
  lang: string;
  /** When the claim was made (the claimer's clock): a claim whose kernel never got a record lapses. */
  claimedAt?: number;
}

/** How often a create polls a token claimed by a kernel starting elsewhere (another replica). */
const CLAIM_POLL_MS = 50;

/** Where a clientSessionToken is claimed: per owner, so one tenant's token never names another's kernel. */
const tokenKey = (owner: string | undefined, token: string) => (owner === undefined ? token : `key:${owner}:${token}`);

export class KernelRecords {
  constructor(
    private readonly store: Store,
    /** POLYKERNEL_KERNEL_CLAIM_TTL_MS: a claim (or a starting record) older than this is given up for dead. */
    private readonly claimTtlMs = 60_000,
    private readonly clock: () => number = Date.now,
  ) {}

  get(id: string): Promise<KernelRecord | undefined> {
    return this.store.get<KernelRecord>('kernels', id);
  }

  list(): Promise<KernelRecord[]> {
    return this.store.list<KernelRecord>('kernels');
  }

  put(record: KernelRecord): Promise<void> {
    return this.store.put('kernels', record.id, record);
  }

  /** False when the record is gone. */
  update(id: string, patch: Partial<KernelRecord>, options?: UpdateOptions<KernelRecord>): Promise<boolean> {
    return this.store.update<KernelRecord>('kernels', id, patch, options);
  }

  /**
   * The leader orders a kernel's removal (`cullReason`), under its lease's fence: refused ('fenced') when
   * the lease is no longer the writer's. Unfenced only in a process that is alone (no lease).
   */
  async orderRemoval(id: string, reason: string, fence: Fence | undefined): Promise<'written' | 'missing' | 'fenced'> {
    if (fence) return this.store.updateFenced<KernelRecord>('kernels', id, { cullReason: reason }, fence);
    return (await this.store.update<KernelRecord>('kernels', id, { cullReason: reason })) ? 'written' : 'missing';
  }

  /** Deletes a kernel's record and its token claim, if the claim is still this kernel's. */
  async delete(record: Pick<KernelRecord, 'id' | 'owner' | 'clientSessionToken'>): Promise<void> {
    await this.store.delete('kernels', record.id);
    if (record.clientSessionToken === undefined) return;
    // Compare-and-delete: a claim another create took over meanwhile stays.
    await this.store.deleteIf<TokenClaim>('tokens', tokenKey(record.owner, record.clientSessionToken), 'kernelId', record.id);
  }

  /**
   * Claims an owner's clientSessionToken for a new kernel, or returns the kernel holding it (REPL
   * continuity; Backend.AI's get-or-create): one kernel per token however many creates race, on this
   * replica or others sharing the store. A kernel still starting is waited for — `starting` gives the
   * outcome of a start in this process; one on another replica is polled in the store — so that the
   * kernel returned is ready, and a start that fails frees the token for this create instead of handing
   * it a kernel that never lived. A claim whose kernel is gone (dead, no record past the claim TTL: its
   * claimer crashed) is taken over by compare-and-delete, so that of several creates taking over, one wins.
   */
  async claimToken(
    owner: string | undefined,
    token: string,
    claim: Omit<TokenClaim, 'claimedAt'>,
    starting: (kernelId: string) => Promise<KernelRecord | undefined> | undefined,
  ): Promise<KernelRecord | undefined> {
    const key = tokenKey(owner, token);
    // Every claim lapses within the TTL, so the loop ends by then; the margin covers a store's slowness.
    const deadline = this.clock() + this.claimTtlMs + 5000;
    let vanished = 0;
    while (this.clock() < deadline) {
      if (await this.store.putIfAbsent<TokenClaim>('tokens', key, { ...claim, claimedAt: this.clock() })) return undefined;
      const held = await this.store.get<TokenClaim>('tokens', key);
      if (!held) {
        // Released in between: claimed again at once; a token that keeps flapping is polled, not spun on.
        if (++vanished > 3) await new Promise((resolve) => setTimeout(resolve, CLAIM_POLL_MS));
        continue;
      }
      if (held.lang !== claim.lang) {
        throw conflict(`clientSessionToken "${token}" is in use by a ${held.lang} kernel; use another token for ${claim.lang}`);
      }
      const local = starting(held.kernelId);
      const record = local ? await local : await this.store.get<KernelRecord>('kernels', held.kernelId);
      if (record && record.state !== 'dead' && record.state !== 'starting') return record;
      // Starting elsewhere (its record not written yet, or written as starting) and not too old: wait.
      const since = record?.createdAt ?? held.claimedAt ?? 0;
      const inProgress = !local && record?.state !== 'dead' && this.clock() - since < this.claimTtlMs;
      if (inProgress) await new Promise((resolve) => setTimeout(resolve, CLAIM_POLL_MS));
      else await this.store.deleteIf<TokenClaim>('tokens', key, 'kernelId', held.kernelId);
    }
    throw conflict(`clientSessionToken "${token}" is being claimed concurrently; try again`);
  }

  /** Gives up the claim made for `kernelId` by a create that failed before its kernel existed. */
  async releaseClaim(owner: string | undefined, token: string, kernelId: string): Promise<void> {
    await this.store.deleteIf<TokenClaim>('tokens', tokenKey(owner, token), 'kernelId', kernelId);
  }
}

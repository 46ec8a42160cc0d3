/**
 * The one writer of kernel records and clientSessionToken claims in the store. Everything else reads
 * through the manager, which overlays what this process knows first-hand.
 */
import { conflict } from '../errors.js';
import type { Store } from '../store/store.js';
import type { KernelRecord } from './kernel-record.js';

interface TokenClaim {
  kernelId: string;
  lang: string;
}

/** Where a clientSessionToken is claimed: per owner, so one tenant's token never names another's kernel. */
const tokenKey = (owner: string | undefined, token: string) => (owner === undefined ? token : `key:${owner}:${token}`);

export class KernelRecords {
  constructor(private readonly store: Store) {}

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
  update(id: string, patch: Partial<KernelRecord>): Promise<boolean> {
    return this.store.update<KernelRecord>('kernels', id, patch);
  }

  /** Deletes a kernel's record and its token claim, if the claim is still this kernel's. */
  async delete(record: Pick<KernelRecord, 'id' | 'owner' | 'clientSessionToken'>): Promise<void> {
    await this.store.delete('kernels', record.id);
    if (record.clientSessionToken === undefined) return;
    const key = tokenKey(record.owner, record.clientSessionToken);
    const claim = await this.store.get<TokenClaim>('tokens', key);
    if (claim?.kernelId === record.id) await this.store.delete('tokens', key);
  }

  /**
   * Claims an owner's clientSessionToken for a new kernel. Returns the kernel already holding it when that
   * kernel lives (REPL continuity); a claim by a kernel that is gone is taken over. `starting` gives the
   * record of a kernel still starting, which is not stored as ready yet.
   */
  async claimToken(
    owner: string | undefined,
    token: string,
    claim: TokenClaim,
    starting: (kernelId: string) => Promise<KernelRecord | undefined> | undefined,
  ): Promise<KernelRecord | undefined> {
    const key = tokenKey(owner, token);
    for (let attempt = 0; attempt < 3; attempt++) {
      if (await this.store.putIfAbsent('tokens', key, claim)) return undefined;
      const held = await this.store.get<TokenClaim>('tokens', key);
      if (!held) continue;
      if (held.lang !== claim.lang) {
        throw conflict(`clientSessionToken "${token}" is in use by a ${held.lang} kernel; use another token for ${claim.lang}`);
      }
      const record = (await starting(held.kernelId)) ?? (await this.store.get<KernelRecord>('kernels', held.kernelId));
      if (record && record.state !== 'dead') return record;
      await this.store.delete('tokens', key);
    }
    throw conflict(`clientSessionToken "${token}" is being claimed concurrently; try again`);
  }

  /** Gives up a claim made for a create that failed before its kernel existed. */
  async releaseClaim(owner: string | undefined, token: string): Promise<void> {
    await this.store.delete('tokens', tokenKey(owner, token));
  }
}

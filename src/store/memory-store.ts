/**
 * The embedded default for a single host: everything in this process, lost on restart. It implements the
 * coordination primitives with the same semantics as RedisStore (each one a synchronous step, so atomic
 * in this process), so code tested against it behaves the same with Redis; with one process there is
 * nobody to coordinate with: its one lease holder is always the leader.
 */
import { EventEmitter } from 'node:events';
import type { Fence, LeaseName, Namespace, SlotClaim, SlotSet, Store, Topic, TopicListener, UpdateOptions } from './store.js';

interface HeldLease {
  holder: string;
  epoch: number;
  expiresAt: number;
}

export class MemoryStore implements Store {
  private readonly data = new Map<Namespace, Map<string, string>>();
  /** Per slot set: member -> expiry (ms; Infinity = held until released). */
  private readonly slotSets = new Map<SlotSet, Map<string, number>>();
  private readonly leases = new Map<LeaseName, HeldLease>();
  private readonly epochs = new Map<LeaseName, number>();
  /** Managers sharing this store in one process (tests, one process hosting several apps) hear each other. */
  private readonly topics = new EventEmitter().setMaxListeners(0);

  constructor(private readonly clock: () => number = Date.now) {}

  private table(ns: Namespace): Map<string, string> {
    let table = this.data.get(ns);
    if (!table) this.data.set(ns, (table = new Map()));
    return table;
  }

  // Records are stored serialised so that callers can never share or mutate a stored object, exactly
  // as with Redis.
  async get<T>(ns: Namespace, id: string): Promise<T | undefined> {
    const raw = this.table(ns).get(id);
    return raw === undefined ? undefined : (JSON.parse(raw) as T);
  }

  async put<T>(ns: Namespace, id: string, value: T): Promise<void> {
    this.table(ns).set(id, JSON.stringify(value));
  }

  async putIfAbsent<T>(ns: Namespace, id: string, value: T): Promise<boolean> {
    const table = this.table(ns);
    if (table.has(id)) return false;
    table.set(id, JSON.stringify(value));
    return true;
  }

  async update<T extends object>(ns: Namespace, id: string, patch: Partial<T>, options: UpdateOptions<T> = {}): Promise<boolean> {
    const table = this.table(ns);
    const raw = table.get(id);
    if (raw === undefined) return false;
    const stored = JSON.parse(raw) as Record<string, unknown>;
    const neverLower = new Set<string>(options.neverLower ?? []);
    // Fields set to undefined are skipped, not deleted: RedisStore's HSET of the given fields cannot delete.
    const fields = Object.entries(patch).filter(([field, value]) => {
      if (value === undefined) return false;
      if (!neverLower.has(field)) return true;
      const current = stored[field];
      return typeof current !== 'number' || typeof value !== 'number' || value > current;
    });
    table.set(id, JSON.stringify({ ...stored, ...Object.fromEntries(fields) }));
    return true;
  }

  async delete(ns: Namespace, id: string): Promise<boolean> {
    return this.table(ns).delete(id);
  }

  async deleteIf<T extends object>(ns: Namespace, id: string, field: keyof T & string, expected: unknown): Promise<boolean> {
    const table = this.table(ns);
    const raw = table.get(id);
    if (raw === undefined) return false;
    // Compared as encoded, as RedisStore compares the stored field.
    if (JSON.stringify((JSON.parse(raw) as Record<string, unknown>)[field]) !== JSON.stringify(expected)) return false;
    return table.delete(id);
  }

  async list<T>(ns: Namespace): Promise<T[]> {
    return [...this.table(ns).values()].map((raw) => JSON.parse(raw) as T);
  }

  /** The set with its expired claims dropped (so it holds at most the live claims). */
  private slotSet(set: SlotSet): Map<string, number> {
    let claims = this.slotSets.get(set);
    if (!claims) this.slotSets.set(set, (claims = new Map()));
    const now = this.clock();
    for (const [member, expiresAt] of claims) if (expiresAt <= now) claims.delete(member);
    return claims;
  }

  async claimSlot(set: SlotSet, member: string, max: number, ttlMs?: number): Promise<boolean> {
    const claims = this.slotSet(set);
    if (!claims.has(member) && max > 0 && claims.size >= max) return false;
    claims.set(member, ttlMs === undefined ? Infinity : this.clock() + ttlMs);
    return true;
  }

  async releaseSlot(set: SlotSet, member: string): Promise<boolean> {
    return this.slotSet(set).delete(member);
  }

  async slots(set: SlotSet): Promise<SlotClaim[]> {
    return [...this.slotSet(set)].map(([member, expiresAt]) => (expiresAt === Infinity ? { member } : { member, expiresAt }));
  }

  /** The lease while it lasts. */
  private held(name: LeaseName): HeldLease | undefined {
    const lease = this.leases.get(name);
    if (lease && lease.expiresAt <= this.clock()) this.leases.delete(name);
    return this.leases.get(name);
  }

  private holds(fence: Fence): boolean {
    const lease = this.held(fence.lease);
    return lease !== undefined && lease.holder === fence.holder && lease.epoch === fence.epoch;
  }

  async acquireLease(name: LeaseName, holder: string, ttlMs: number): Promise<Fence | undefined> {
    if (this.held(name)) return undefined;
    const epoch = (this.epochs.get(name) ?? 0) + 1;
    this.epochs.set(name, epoch);
    this.leases.set(name, { holder, epoch, expiresAt: this.clock() + ttlMs });
    return { lease: name, holder, epoch };
  }

  async renewLease(fence: Fence, ttlMs: number): Promise<boolean> {
    if (!this.holds(fence)) return false;
    this.leases.get(fence.lease)!.expiresAt = this.clock() + ttlMs;
    return true;
  }

  async releaseLease(fence: Fence): Promise<boolean> {
    if (!this.holds(fence)) return false;
    this.epochs.delete(fence.lease);
    return this.leases.delete(fence.lease);
  }

  async updateFenced<T extends object>(ns: Namespace, id: string, patch: Partial<T>, fence: Fence): Promise<'written' | 'missing' | 'fenced'> {
    if (!this.holds(fence)) return 'fenced';
    return (await this.update(ns, id, patch)) ? 'written' : 'missing';
  }

  async publish(topic: Topic, message: string): Promise<void> {
    // Delivered later, as over Redis: a publisher never runs its subscribers' reactions inside its own call.
    setImmediate(() => this.topics.emit(topic, message));
  }

  async subscribe(topic: Topic, listener: TopicListener): Promise<() => void> {
    const hear = (message: string) => listener.message(message);
    this.topics.on(topic, hear);
    return () => this.topics.off(topic, hear);
  }

  async ping(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {}
}

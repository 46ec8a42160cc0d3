/**
 * Shared state behind one small interface: namespaced JSON records, plus the few atomic primitives that
 * keep several replicas sharing one Redis coordinated. Kernels, the clientSessionToken index, sessions,
 * executions and judged submissions all live here, so that with Redis they survive a restart of the
 * service and are seen by every replica. Each primitive is one atomic step in either store (a Lua script
 * in Redis, a synchronous step in memory): a read-then-write in the caller would race another replica.
 */
export type Namespace = 'kernels' | 'tokens' | 'sessions' | 'executions' | 'submissions' | 'submission-index' | 'pending-callbacks' | 'kernel-claims';

/** Bounded sets of claims (slotsets): KG_MAX_KERNELS's kernels of every replica together. */
export type SlotSet = 'kernel-slots';

/** Leases one process holds at a time: the leader's, under which cluster-wide work runs once. */
export type LeaseName = 'leader';

/**
 * What a lease's holder carries to prove it still holds it. `epoch` is the fencing epoch: every taking of
 * the lease gets a larger one while it is contended (held, lapsed, taken again), so a write guarded by a
 * stale fence (a holder that paused past its lease while another took it) is told apart from the current
 * holder's and refused. A release (a clean shutdown: nobody holds the lease) leaves nothing in the store,
 * so the epoch starts over; a fence still never matches another tenure, since a guarded write must match
 * epoch and holder, and holder names are unique per process (LeaderLease makes them so).
 */
export interface Fence {
  lease: LeaseName;
  holder: string;
  epoch: number;
}

/** A claim held in a slot set; `expiresAt` (ms since the epoch, the store's clock) absent = held until released. */
export interface SlotClaim {
  member: string;
  expiresAt?: number;
}

export interface UpdateOptions<T> {
  /**
   * Numeric fields that never move back: each is written only when its new value is larger than the
   * stored one (a last-activity time or a counter that several replicas write, each knowing only its part).
   */
  neverLower?: readonly (keyof T & string)[];
}

/** A publish/subscribe channel between the replicas sharing the store (cluster-events.ts). */
export type Topic = 'kernel-events';

/** What hears a topic. `onGap`: messages may have been missed (the subscriber's connection was lost). */
export interface TopicListener {
  message(message: string): void;
  onGap?(): void;
}

export interface Store {
  get<T>(ns: Namespace, id: string): Promise<T | undefined>;
  put<T>(ns: Namespace, id: string, value: T): Promise<void>;
  /** Writes only when no record with this id exists; true when it wrote. */
  putIfAbsent<T>(ns: Namespace, id: string, value: T): Promise<boolean>;
  /** Merges fields into an existing record (undefined ones are ignored); false (and no write) when there is none. */
  update<T extends object>(ns: Namespace, id: string, patch: Partial<T>, options?: UpdateOptions<T>): Promise<boolean>;
  delete(ns: Namespace, id: string): Promise<boolean>;
  /**
   * Compare-and-delete: deletes the record only while its `field` equals `expected`; true when it
   * deleted. A claim is given up only by (or taken over from) the claimer it names, never from one that
   * took it over meanwhile.
   */
  deleteIf<T extends object>(ns: Namespace, id: string, field: keyof T & string, expected: unknown): Promise<boolean>;
  list<T>(ns: Namespace): Promise<T[]>;

  /**
   * Takes or renews `member`'s claim in the slot set `set`, bounded cluster-wide. Claims past their expiry
   * are dropped first. A member without a claim gets one only while fewer than `max` claims are held
   * (0 = no bound); a member holding one keeps it whatever the count, its expiry set anew. `ttlMs`: the
   * claim lapses after this long unless renewed (a claimer that crashed frees its slot by itself);
   * undefined = held until released. True when `member` holds a claim after the call.
   */
  claimSlot(set: SlotSet, member: string, max: number, ttlMs?: number): Promise<boolean>;
  /** Gives up `member`'s claim; true when it held one. */
  releaseSlot(set: SlotSet, member: string): Promise<boolean>;
  /** The claims held now (expired ones are not). */
  slots(set: SlotSet): Promise<SlotClaim[]>;

  /**
   * Takes the lease `name` for `holder` for `ttlMs` when nobody holds it, with a new fencing epoch larger
   * than any given since the lease was last released; undefined when another holds it.
   */
  acquireLease(name: LeaseName, holder: string, ttlMs: number): Promise<Fence | undefined>;
  /** Compare-and-extend: the lease lasts `ttlMs` from now if `fence` still holds it; false when it was lost. */
  renewLease(fence: Fence, ttlMs: number): Promise<boolean>;
  /** Gives the lease up if `fence` still holds it (another may take it at once; its epoch starts over); true when it did. */
  releaseLease(fence: Fence): Promise<boolean>;
  /**
   * `update`, only while `fence` holds its lease, checked in the same atomic step as the write: 'fenced'
   * (nothing written) when the lease is another's or lapsed, 'missing' when there is no record.
   */
  updateFenced<T extends object>(ns: Namespace, id: string, patch: Partial<T>, fence: Fence): Promise<'written' | 'missing' | 'fenced'>;

  /**
   * Sends a message to every subscriber of `topic`, this process's included. Best effort: a replica whose
   * subscription is down meanwhile misses it (Redis pub/sub keeps nothing), and hears `onGap` instead.
   */
  publish(topic: Topic, message: string): Promise<void>;
  /** Hears `topic` until the returned function is called. */
  subscribe(topic: Topic, listener: TopicListener): Promise<() => void>;
  /** Answers whether the backing store can be reached right now. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * Which replica leads: the one holding the store's 'leader' lease. Work that must happen once across the
 * replicas sharing a Redis (culling idle kernels, reconciling kernel slots) runs only on the leader, and
 * its writes carry the lease's fence, checked by the store in the same atomic step as the write: a leader
 * that paused (a GC pause, a frozen VM) past its lease while another took over is refused when it wakes,
 * before it has noticed anything itself.
 *
 * The lease is taken with SET NX PX and a fencing epoch from INCR (one script), renewed every third of
 * its TTL by compare-and-extend, released on shutdown (so another replica takes over at once instead of
 * after the TTL). A replica that dies without releasing it is replaced within the TTL plus one renewal
 * interval. This process also stops believing it leads a little before the lease can lapse in the store,
 * measured from before each renewal was sent. With the in-process store, this process is the only holder:
 * always the leader.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Logger } from '../logger.js';
import type { Fence, Store } from '../store/store.js';

/** What guarded work asks: whether this process leads now, and the fence its writes carry. */
export interface Leadership {
  /** The fence while this process believes it leads; undefined when it does not. */
  fence(): Fence | undefined;
}

export interface LeaderLeaseOptions {
  /** POLYKERNEL_LEADER_LEASE_MS. */
  ttlMs: number;
  /** Unique per process: two processes never hold one lease as the same holder. */
  holder?: string;
  /** Default: a third of the TTL, so two renewals may fail before the lease lapses. */
  renewEveryMs?: number;
  clock?: () => number;
}

export interface LeaderLeaseEvents {
  acquired: [fence: Fence];
  lost: [fence: Fence];
}

/** A name for this process in the lease: readable in Redis, unique across processes and restarts. */
export function leaseHolderName(instance: string): string {
  return `${instance}@${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
}

export class LeaderLease extends EventEmitter<LeaderLeaseEvents> implements Leadership {
  readonly holder: string;
  private readonly ttlMs: number;
  private readonly renewEveryMs: number;
  private readonly clock: () => number;
  private held?: { fence: Fence; believedUntil: number };
  private timer?: NodeJS.Timeout;
  private ticking?: Promise<void>;
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    options: LeaderLeaseOptions,
  ) {
    super();
    this.ttlMs = options.ttlMs;
    this.holder = options.holder ?? leaseHolderName('polykernel');
    this.renewEveryMs = options.renewEveryMs ?? Math.max(1, Math.floor(options.ttlMs / 3));
    this.clock = options.clock ?? Date.now;
  }

  /**
   * Tries to take the lease now, then keeps it (or keeps trying) in the background. Once stopped, a lease
   * is not started again: its holder name is its own for one tenure of the store's epoch (see Fence).
   */
  start(): Promise<void> {
    if (this.stopped) throw new Error('a stopped leader lease cannot be started again; make a new one');
    this.timer = setInterval(() => void this.tick(), this.renewEveryMs);
    this.timer.unref();
    return this.tick();
  }

  fence(): Fence | undefined {
    if (!this.held || this.clock() >= this.held.believedUntil) return undefined;
    return this.held.fence;
  }

  isLeader(): boolean {
    return this.fence() !== undefined;
  }

  /** One step: renew the lease held, or try to take it. Steps never overlap. */
  tick(): Promise<void> {
    this.ticking ??= this.step().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async step(): Promise<void> {
    if (this.stopped) return;
    // Believed from before the request was sent: the store's expiry is counted from later than that.
    const sentAt = this.clock();
    const believedUntil = sentAt + this.ttlMs - Math.max(1, Math.floor(this.ttlMs / 10));
    try {
      if (this.held) {
        const fence = this.held.fence;
        if (await this.store.renewLease(fence, this.ttlMs)) {
          if (this.held?.fence === fence) this.held.believedUntil = believedUntil;
          return;
        }
        this.held = undefined;
        this.log.warn('Lost the leader lease', { holder: this.holder, epoch: fence.epoch });
        this.emit('lost', fence);
      }
      const fence = await this.store.acquireLease('leader', this.holder, this.ttlMs);
      if (!fence) return;
      if (this.stopped) {
        await this.store.releaseLease(fence);
        return;
      }
      this.held = { fence, believedUntil };
      this.log.info('This replica leads', { holder: this.holder, epoch: fence.epoch });
      this.emit('acquired', fence);
    } catch (error) {
      // The store unreachable: the lease held is believed until its time is up, then given up for lost.
      this.log.debug('Leader lease step failed', { error: (error as Error).message });
      if (this.held && this.clock() >= this.held.believedUntil) {
        const { fence } = this.held;
        this.held = undefined;
        this.emit('lost', fence);
      }
    }
  }

  /**
   * Stops renewing; `release` (a shutdown) gives the lease up so another replica takes over at once.
   * Without it the lease lapses by itself, as when a replica dies.
   */
  async stop(release = true): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.ticking;
    const held = this.held;
    this.held = undefined;
    if (held && release) await this.store.releaseLease(held.fence).catch(() => false);
  }
}

/**
 * Per-key request rate limit as Backend.AI's manager does it: a fixed window (15 minutes by default) that
 * the first request of a key opens; every request until it expires counts, answered or refused; the next
 * request after it opens a new window. Every response to a keyed caller carries
 * X-RateLimit-Limit / X-RateLimit-Remaining / X-RateLimit-Reset (seconds until the window expires) /
 * X-RateLimit-Window (its size in seconds); a refused one is 429 with Retry-After.
 *
 * Only keys that authenticated get a counter, so the map is bounded by the number of valid keys; counters
 * of revoked keys are dropped at once and expired ones swept as they are met.
 */
export interface RateDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Seconds until the window expires (at least 1 while one is open). */
  resetS: number;
  windowS: number;
}

interface Window {
  openedAt: number;
  count: number;
}

export class FixedWindowLimiter {
  private readonly windows = new Map<string, Window>();
  private lastSweep = 0;

  constructor(
    private readonly windowMs: number,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Counts one request of `keyId` against `limit` (0 = unlimited, still counted for the headers). */
  hit(keyId: string, limit: number): RateDecision {
    const now = this.clock();
    this.sweep(now);
    let window = this.windows.get(keyId);
    if (!window || now - window.openedAt >= this.windowMs) {
      window = { openedAt: now, count: 0 };
      this.windows.set(keyId, window);
    }
    window.count++;
    const resetS = Math.max(1, Math.ceil((window.openedAt + this.windowMs - now) / 1000));
    const windowS = Math.round(this.windowMs / 1000);
    if (limit <= 0) return { allowed: true, limit: 0, remaining: 0, resetS, windowS };
    return { allowed: window.count <= limit, limit, remaining: Math.max(0, limit - window.count), resetS, windowS };
  }

  forget(keyIds: Iterable<string>): void {
    for (const id of keyIds) this.windows.delete(id);
  }

  get size(): number {
    return this.windows.size;
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < this.windowMs) return;
    this.lastSweep = now;
    for (const [id, window] of this.windows) if (now - window.openedAt >= this.windowMs) this.windows.delete(id);
  }
}

/**
 * Warm pools: per language, a few kernels already started and answering, handed out on create so that
 * a create costs a store write instead of a container start plus a kernel boot. A pooled kernel has never
 * run user code and has its own id, socket directory and key from its launch: once handed out it is
 * exactly a cold kernel that started earlier. It is never returned to the pool after use; the pool is
 * refilled in the background.
 */
import type { Logger } from '../logger.js';
import type { LiveKernel } from './live-kernel.js';

export interface LaunchedKernel {
  id: string;
  lang: string;
  image: string;
  runtime: string;
  containerId: string;
  connDir: string;
  /** The node agent it runs on (role gateway). */
  node?: string;
  key: string;
  memoryBytes: number;
  kernel: LiveKernel;
}

export interface PoolHooks {
  /** Starts a kernel for the pool and resolves once it answers. */
  launch(lang: string): Promise<LaunchedKernel>;
  /** Releases a pooled kernel that will not be handed out (shutdown, death). */
  discard(kernel: LaunchedKernel): Promise<void>;
}

export class WarmPool {
  private readonly ready = new Map<string, LaunchedKernel[]>();
  private readonly launching = new Map<string, number>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private stopped = false;

  constructor(
    private readonly sizes: Readonly<Record<string, number>>,
    private readonly hooks: PoolHooks,
    private readonly log: Logger,
    /**
     * A kernel handed out is about to run its first code: starting its replacement at once (a container
     * start and a kernel boot, half a second of CPU) would slow that run on a small machine.
     */
    private readonly refillDelayMs = 0,
  ) {}

  /** Starts filling every pool in the background. */
  fill(): void {
    for (const lang of Object.keys(this.sizes)) this.refill(lang);
  }

  /** A ready kernel of this language, or undefined (then the caller starts one cold). */
  take(lang: string): LaunchedKernel | undefined {
    const taken = this.ready.get(lang)?.shift();
    if (taken) setTimeout(() => this.refill(lang), this.refillDelayMs).unref();
    return taken;
  }

  /** Puts back a kernel that was taken but not used (the create was answered otherwise). */
  giveBack(kernel: LaunchedKernel): void {
    if (this.stopped) {
      void this.hooks.discard(kernel);
      return;
    }
    this.list(kernel.lang).unshift(kernel);
  }

  /** Forgets a pooled kernel whose container died; true when it was one of ours. */
  forget(containerId: string): boolean {
    for (const [lang, kernels] of this.ready) {
      const index = kernels.findIndex((k) => k.containerId === containerId);
      if (index >= 0) {
        const [dead] = kernels.splice(index, 1);
        void this.hooks.discard(dead!);
        this.refill(lang);
        return true;
      }
    }
    return false;
  }

  size(lang: string): number {
    return this.ready.get(lang)?.length ?? 0;
  }

  /** Per language: kernels ready to hand out, being started, and the target (GET /api/status). */
  status(): Record<string, { ready: number; starting: number; target: number }> {
    return Object.fromEntries(
      Object.entries(this.sizes).map(([lang, target]) => [lang, { ready: this.size(lang), starting: this.launching.get(lang) ?? 0, target }]),
    );
  }

  /** Resolves when every pool holds its target number of ready kernels (tests, benchmarks). */
  async whenFull(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (Object.entries(this.sizes).every(([lang, size]) => this.size(lang) >= size)) return true;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return false;
  }

  async drain(): Promise<void> {
    this.stopped = true;
    // Launches in flight discard their kernel themselves once stopped; wait for them so none outlives us.
    await Promise.allSettled([...this.inFlight]);
    const all = [...this.ready.values()].flat();
    this.ready.clear();
    await Promise.allSettled(all.map((kernel) => this.hooks.discard(kernel)));
  }

  private list(lang: string): LaunchedKernel[] {
    let kernels = this.ready.get(lang);
    if (!kernels) this.ready.set(lang, (kernels = []));
    return kernels;
  }

  private refill(lang: string): void {
    const target = this.sizes[lang] ?? 0;
    const inFlight = this.launching.get(lang) ?? 0;
    const missing = target - this.size(lang) - inFlight;
    for (let i = 0; i < missing && !this.stopped; i++) {
      this.launching.set(lang, (this.launching.get(lang) ?? 0) + 1);
      const launch = this.hooks
        .launch(lang)
        .then(
          (kernel) => {
            if (this.stopped) return this.hooks.discard(kernel);
            this.list(lang).push(kernel);
          },
          (error: Error) => {
            // A pool that cannot start kernels (image missing, engine down) must not spin: try again later.
            this.log.warn('Warm pool launch failed', { lang, error: error.message });
            if (!this.stopped) setTimeout(() => this.refill(lang), 5000).unref();
          },
        )
        .finally(() => {
          this.launching.set(lang, (this.launching.get(lang) ?? 1) - 1);
          this.inFlight.delete(launch);
        });
      this.inFlight.add(launch);
    }
  }
}

/**
 * The idle-CPU budget: how much CPU a kernel used, over a sliding window, while nobody was using it —
 * no execution of a client in progress, and no request of a client for longer than the kernel's query
 * timeout (every request a client makes ends within it: a query past it destroys the kernel, a batch
 * step past it is killed). CPU used then belongs to processes that outlived their query: a detached
 * burner behind a kernel that reports idle. Judge0 bounds each run's CPU time and Backend.AI culls by
 * utilisation over a time window; here a kernel past POLYKERNEL_IDLE_CPU_MS within
 * POLYKERNEL_IDLE_CPU_WINDOW_MS is destroyed, and its removal reason says so.
 *
 * Fed by the usage sampler with the kernel's cumulative CPU time, which must include processes that have
 * exited (the container's cgroup counter), or burners that each live less than a sampling interval
 * would never be seen.
 */

interface Track {
  /** Cumulative CPU (ms) at the last sample. */
  cpuMs: number;
  /** Idle CPU (ms) per sample within the window, oldest first. */
  samples: { at: number; ms: number }[];
}

export class IdleCpuBudget {
  private readonly tracks = new Map<string, Track>();

  constructor(
    /** 0 = no budget. */
    readonly budgetMs: number,
    readonly windowMs: number,
  ) {}

  /**
   * Records one sample: the kernel's cumulative CPU time `cpuMs` at `at`, and whether it was attended
   * since the previous sample. Returns the idle CPU within the window ending at `at`.
   */
  sample(kernelId: string, at: number, cpuMs: number, attended: boolean): number {
    const track = this.tracks.get(kernelId);
    if (!track) {
      // First sight (a new kernel, a warm one handed out, an adopted one): its past is not judged.
      this.tracks.set(kernelId, { cpuMs, samples: [] });
      return 0;
    }
    // A counter that went back (a restart in a fresh cgroup) starts over from its new value.
    const delta = cpuMs >= track.cpuMs ? cpuMs - track.cpuMs : cpuMs;
    track.cpuMs = cpuMs;
    if (!attended && delta > 0) track.samples.push({ at, ms: delta });
    while (track.samples.length > 0 && track.samples[0]!.at <= at - this.windowMs) track.samples.shift();
    return track.samples.reduce((sum, sample) => sum + sample.ms, 0);
  }

  /** Why the kernel must go, or undefined. */
  verdict(idleMs: number): string | undefined {
    if (this.budgetMs <= 0 || idleMs <= this.budgetMs) return undefined;
    return (
      `CPU used while idle: ${Math.round(idleMs)} ms in ${this.windowMs / 1000} s with no request of a client in progress, ` +
      `more than POLYKERNEL_IDLE_CPU_MS=${this.budgetMs} per POLYKERNEL_IDLE_CPU_WINDOW_MS=${this.windowMs} ` +
      '(a process kept running after its query ended; stop background work before the query returns)'
    );
  }

  /** Drops the state of kernels that are no longer live (bounded by the live kernels). */
  retain(liveIds: Set<string>): void {
    for (const id of this.tracks.keys()) if (!liveIds.has(id)) this.tracks.delete(id);
  }
}

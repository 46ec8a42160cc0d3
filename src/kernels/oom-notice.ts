/**
 * Out-of-memory kills the kernel survives. When the kernel process itself is killed by its memory cap, its
 * container dies and the run ends with `[kernel died: out-of-memory]` (QueryRun.abort). But a program the
 * kernel started (a subprocess, a runner language's compiled program, a batch step) can be the one the
 * cap kills: the kernel lives on and says only "killed" or exit code 137. The container's cgroup counts OOM
 * kills, so a run that ends after new ones gets a stderr item saying so (issue #6).
 *
 * Under runsc any OOM kill takes the whole sandbox down (the sentry is the process the host kills), so
 * this only ever adds to runs under runc.
 */
import type { ContainerRuntime } from '../runtime/runtime.js';
import type { ConsoleItem, RunResult } from './query.js';

interface Seen {
  containerId: string;
  /** OOM kills of the container already reported (or there before the first run). */
  reported: number;
}

export class OomNotices {
  private readonly kernels = new Map<string, Promise<Seen | undefined>>();

  constructor(
    private readonly runtime: ContainerRuntime,
    private readonly containerOf: (kernelId: string) => Promise<string>,
  ) {}

  /** Before a run starts: the first run of a kernel takes the count so far as its baseline. */
  async begin(kernelId: string): Promise<void> {
    if (!this.runtime.oomKills) return;
    let seen = this.kernels.get(kernelId);
    if (!seen) {
      seen = this.baseline(kernelId);
      this.kernels.set(kernelId, seen);
    }
    await seen;
  }

  private async baseline(kernelId: string): Promise<Seen | undefined> {
    try {
      const containerId = await this.containerOf(kernelId);
      const kills = await this.runtime.oomKills!(containerId);
      return kills === undefined ? undefined : { containerId, reported: kills };
    } catch {
      return undefined;
    }
  }

  /** When a run ends: adds the notice to its last result if the cap killed something meanwhile. */
  async end(kernelId: string, result: RunResult, maxMemKB: number | undefined): Promise<void> {
    if (result.status !== 'finished' && result.status !== 'exec-timeout') return;
    const seen = await this.kernels.get(kernelId);
    if (!seen) return;
    const kills = await this.runtime.oomKills!(seen.containerId).catch(() => undefined);
    if (kills === undefined || kills <= seen.reported) return;
    seen.reported = kills;
    const died = result.console.some((item) => item[0] === 'stderr' && item[1].includes('[kernel died'));
    if (died) return;
    const cap = maxMemKB ? ` (maxMem ${maxMemKB} KB)` : '';
    const notice: ConsoleItem = ['stderr', `\n[out of memory: a process of this kernel was killed by its memory cap${cap}]\n`];
    result.console.push(notice);
  }

  /** A restarted container has a fresh cgroup, a removed kernel none: count again from its next run. */
  forget(kernelId: string): void {
    this.kernels.delete(kernelId);
  }
}

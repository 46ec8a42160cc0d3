/**
 * Out-of-memory kills the kernel survives. When the kernel process itself is killed by its memory cap, its
 * container dies and the run ends with `[kernel died: out-of-memory]` (QueryRun.abort). But a program the
 * kernel started (a subprocess, a runner language's compiled program, a batch step) can be the one the
 * cap kills: the kernel lives on and says only "killed" or exit code 137. The provisioner counts OOM kills
 * (the container's cgroup), so a run that ends after new ones gets a stderr item saying so.
 *
 * Under runsc any OOM kill takes the whole sandbox down (the sentry is the process the host kills), so
 * this only ever adds to runs under runc.
 */
import type { KernelHandle } from '../kernels/kernel-handle.js';
import type { ConsoleItem, RunResult } from './query.js';

/** OOM kills of a kernel already reported (or there before its first run). */
interface Seen {
  reported: number;
}

export class OomNotices {
  private readonly kernels = new Map<string, Promise<Seen | undefined>>();

  /** Before a run starts: the first run of a kernel takes the count so far as its baseline. */
  async begin(kernel: Pick<KernelHandle, 'id' | 'oomKills'>): Promise<void> {
    let seen = this.kernels.get(kernel.id);
    if (!seen) {
      seen = this.baseline(kernel);
      this.kernels.set(kernel.id, seen);
    }
    await seen;
  }

  private async baseline(kernel: Pick<KernelHandle, 'oomKills'>): Promise<Seen | undefined> {
    const kills = await kernel.oomKills().catch(() => undefined);
    return kills === undefined ? undefined : { reported: kills };
  }

  /**
   * When a run ends: adds the notice to its last result if the cap killed something meanwhile.
   * `endedOnKernelMessage`: the run finished on a message of the kernel (a query's execute_reply and idle
   * status), so the count carried with the kernel's messages (oomKillsSeen) will do: it was read after the
   * kernel sent that message, so after anything killed before the kernel saw the death. A batch step or a
   * timeout ends without one: the count is asked for.
   */
  async end(kernel: Pick<KernelHandle, 'id' | 'oomKills' | 'oomKillsSeen' | 'limits'>, result: RunResult, endedOnKernelMessage = false): Promise<void> {
    if (result.status !== 'finished' && result.status !== 'exec-timeout') return;
    const seen = await this.kernels.get(kernel.id);
    if (!seen) return;
    const carried = endedOnKernelMessage && result.status === 'finished' ? kernel.oomKillsSeen?.() : undefined;
    const kills = carried ?? (await kernel.oomKills().catch(() => undefined));
    if (kills === undefined || kills <= seen.reported) return;
    seen.reported = kills;
    const died = result.console.some((item) => item[0] === 'stderr' && item[1].includes('[kernel died'));
    if (died) return;
    const maxMemKB = kernel.limits.maxMemKB;
    const cap = maxMemKB ? ` (maxMem ${maxMemKB} KB)` : '';
    const notice: ConsoleItem = ['stderr', `\n[out of memory: a process of this kernel was killed by its memory cap${cap}]\n`];
    result.console.push(notice);
  }

  /** A restarted container has a fresh cgroup, a removed kernel none: count again from its next run. */
  forget(kernelId: string): void {
    this.kernels.delete(kernelId);
  }
}

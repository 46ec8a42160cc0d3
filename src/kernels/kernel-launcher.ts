/**
 * Launching a kernel up to the moment clients may use it: the provisioner starts it, the service
 * connects and waits for its answer, then the provisioner seals it. Also the same for a restart in place.
 * A kernel's death while it starts fails the start at once, with its reason, instead of after
 * POLYKERNEL_START_TIMEOUT_MS (e.g. a memory cap too small for the kernel: under runsc an idle ipykernel
 * needs about 80 MB).
 */
import type { Config } from '../config/index.js';
import { kernelFailed } from '../errors.js';
import type { Logger } from '../logger.js';
import { LiveKernel } from './live-kernel.js';
import type { DeathReason, KernelProvisioner, KernelRef, LaunchRequest } from './provisioner.js';
import type { LaunchedKernel } from './warm-pool.js';

export type LauncherConfig = Pick<Config, 'startTimeoutMs' | 'containerRuntime' | 'containerRuntimeByLang'>;

export class KernelLauncher {
  /** Kernels (by container) starting or restarting: their death fails that start at once. */
  private readonly starting = new Map<string, (reason: DeathReason) => void>();

  constructor(
    private readonly config: LauncherConfig,
    private readonly provisioner: KernelProvisioner,
    private readonly log: Logger,
    private readonly clock: () => number,
  ) {}

  runtimeFor(lang: string): string {
    return this.config.containerRuntimeByLang[lang] ?? this.config.containerRuntime;
  }

  /** A connection to a provisioned kernel; clients may use it once the kernel answered and was sealed. */
  connect(ref: KernelRef): LiveKernel {
    const onBadFrame = (error: Error) => this.log.warn('Dropped a bad frame from a kernel', { kernelId: ref.id, error: error.message });
    return new LiveKernel(ref.id, () => this.provisioner.connect(ref, onBadFrame), this.clock);
  }

  /**
   * Starts a kernel and resolves once it answers and is sealed. The kernel is not registered: the caller
   * decides whether it becomes a kernel now or waits in the warm pool. On failure everything it holds is
   * released before the error propagates.
   */
  async launch(request: LaunchRequest & { image: string }): Promise<LaunchedKernel> {
    let ref: KernelRef | undefined;
    let kernel: LiveKernel | undefined;
    try {
      const placed = await this.provisioner.launch(request);
      ref = { id: request.id, lang: request.lang, key: request.key, runtime: request.runtime, ...placed };
      kernel = this.connect(ref);
      await this.untilReady(kernel, ref, request.memoryBytes);
      await this.provisioner.seal(ref);
      return { ...ref, image: request.image, memoryBytes: request.memoryBytes, kernel };
    } catch (error) {
      kernel?.close();
      if (ref) await this.provisioner.remove(ref);
      throw error;
    }
  }

  /**
   * A fresh kernel process for `kernel`: the provisioner restarts it, then the connection is made anew
   * and the kernel sealed once it answers. The caller holds client messages meanwhile.
   */
  async restart(kernel: LiveKernel, ref: KernelRef, memoryBytes: number): Promise<void> {
    await this.provisioner.restart(ref);
    kernel.reconnect();
    kernel.setState('starting');
    await this.untilReady(kernel, ref, memoryBytes);
    await this.provisioner.seal(ref);
  }

  /** A warm kernel given the requested memory cap, or undefined (it is discarded; one starts cold instead). */
  async fitWarm(warm: LaunchedKernel, memoryBytes: number): Promise<LaunchedKernel | undefined> {
    if (warm.memoryBytes === memoryBytes) return warm;
    try {
      await this.provisioner.updateLimits(warm, { memoryBytes });
      return warm;
    } catch (error) {
      // E.g. a cap below what the idle kernel already uses.
      this.log.debug('Warm kernel could not take the requested limits', { kernelId: warm.id, error: (error as Error).message });
      await this.discard(warm);
      return undefined;
    }
  }

  /** Releases a launched kernel that will not be used (a pooled kernel at shutdown or death). */
  async discard(launched: LaunchedKernel): Promise<void> {
    launched.kernel.close();
    await this.provisioner.remove(launched);
  }

  /** Fails the start of the kernel in this container, if one is starting; true when one was. */
  startDied(containerId: string, reason: DeathReason): boolean {
    const fail = this.starting.get(containerId);
    fail?.(reason);
    return fail !== undefined;
  }

  private async untilReady(kernel: LiveKernel, ref: KernelRef, memoryBytes: number): Promise<void> {
    let onDeath!: (reason: DeathReason) => void;
    const died = new Promise<never>((_, reject) => {
      onDeath = (reason) => {
        const hint = reason === 'out-of-memory' ? `: a memory cap of ${memoryBytes / 1024} KB is too small for this kernel` : '';
        reject(kernelFailed(`its container died while it started (${reason})${hint}`));
      };
    });
    died.catch(() => undefined);
    this.starting.set(ref.containerId, onDeath);
    try {
      // The container may have died before it was registered here.
      void this.provisioner.inspect(ref).then((state) => {
        if (state && !state.running) onDeath(state.deathReason ?? 'killed');
      }, () => undefined);
      await Promise.race([kernel.waitReady(this.config.startTimeoutMs), died]);
    } finally {
      this.starting.delete(ref.containerId);
    }
  }
}

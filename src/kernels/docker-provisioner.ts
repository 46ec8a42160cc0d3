/**
 * The provisioner for kernels in containers of the local Docker engine (provisioner.ts says what a
 * provisioner is). A kernel here is a container plus a host socket directory under
 * `<stateDir>/<instance>/<kernelId>`, bind-mounted into it; the kernel's ZMQ sockets are IPC files there.
 *
 * The directory is writable by the kernel only while its container runs nothing but the image's
 * launcher; `seal` takes it back once the kernel answers, and every root operation on it goes through
 * conn-dir.ts, which never follows a link the kernel may have planted.
 */
import { mkdir, readdir, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/index.js';
import { DomainError } from '../errors.js';
import type { Logger } from '../logger.js';
import { containerConnectionInfo, hostConnectionInfo } from '../protocol/connection-file.js';
import { cgroupCpuMs } from '../runtime/cgroup-files.js';
import { processFigures } from '../runtime/proc-stat.js';
import { CONTAINER_WORK_DIR, KERNEL_USER, LABELS, type ContainerRuntime, type ResourceUsage } from '../runtime/runtime.js';
import { KernelConnection } from '../transport/kernel-connection.js';
import type { KernelTransport } from '../transport/kernel-transport.js';
import { createConnectionDir, instanceConnectionDirs, removeConnectionDir, sealConnectionDir } from './conn-dir.js';
import type {
  CommandOutputListener,
  DeathReason,
  FoundKernel,
  KernelCommand,
  KernelDeathListener,
  KernelProvisioner,
  KernelRef,
  LaunchRequest,
} from './provisioner.js';

export type DockerProvisionerConfig = Pick<
  Config,
  'stateDir' | 'instance' | 'cpus' | 'pidsLimit' | 'workDirSizeMB' | 'tmpSizeMB'
>;

const ROOT_USER = '0:0';

export class DockerProvisioner implements KernelProvisioner {
  /**
   * This instance's socket directories, one per kernel: only this instance's, so that the reaper at start
   * never touches another instance's kernels sharing the state directory.
   */
  private readonly kernelsDir: string;
  /** Containers this provisioner is stopping or removing: their death is not news. */
  private readonly expectingDeath = new Set<string>();
  /** Container removals in flight (see remove). */
  private readonly removals = new Set<Promise<unknown>>();
  private stopDeathWatch?: () => void;
  private stopped = false;

  constructor(
    private readonly config: DockerProvisionerConfig,
    private readonly runtime: ContainerRuntime,
    private readonly log: Logger,
  ) {
    this.kernelsDir = instanceConnectionDirs(config.stateDir, config.instance);
  }

  async start(onDeath: KernelDeathListener): Promise<void> {
    this.stopDeathWatch = this.runtime.onDeath((containerId, reason, labels) => {
      if (!this.expectingDeath.has(containerId)) onDeath(labels[LABELS.kernelId], containerId, reason);
    });
    await mkdir(this.kernelsDir, { recursive: true, mode: 0o711 });
  }

  async launch(request: LaunchRequest): Promise<Pick<KernelRef, 'containerId' | 'connDir'>> {
    // A kernel's directory is named after it (a pooled kernel's too): the reaper relies on it.
    const connDir = path.join(this.kernelsDir, request.id);
    let containerId = '';
    try {
      await createConnectionDir(connDir, JSON.stringify(containerConnectionInfo(request.key, request.lang)));
      const container = await this.runtime.startKernel({
        kernelId: request.id,
        lang: request.lang,
        image: request.image,
        hostConnDir: connDir,
        memoryBytes: request.memoryBytes,
        cpus: this.config.cpus,
        pidsLimit: this.config.pidsLimit,
        workDirSizeMB: this.config.workDirSizeMB,
        tmpSizeMB: this.config.tmpSizeMB,
        runtime: request.runtime,
        env: request.env,
        workDirBind: request.workDir,
        labels: request.pooled ? { [LABELS.pool]: 'true' } : undefined,
      });
      containerId = container.containerId;
      return { containerId, connDir };
    } catch (error) {
      if (containerId) await this.runtime.remove(containerId).catch(() => undefined);
      await removeConnectionDir(connDir);
      throw error;
    }
  }

  connect(ref: KernelRef, onBadFrame: (error: Error) => void): KernelTransport {
    return new KernelConnection(hostConnectionInfo(ref.connDir, containerConnectionInfo(ref.key, ref.lang)), onBadFrame);
  }

  seal(ref: KernelRef): Promise<void> {
    return sealConnectionDir(ref.connDir);
  }

  /**
   * The old container is stopped (every process of the old kernel dead) before its socket directory is
   * touched; that directory is then thrown away and a new one made, and the container started again
   * (which resolves its bind mount anew).
   */
  async restart(ref: KernelRef): Promise<void> {
    // The stop's death is ours; a death once the new process runs is news (the runtime drops die events
    // of containers that run again, so a late report of the stop is not taken for one).
    this.expectingDeath.add(ref.containerId);
    try {
      await this.runtime.stop(ref.containerId);
      await removeConnectionDir(ref.connDir);
      await createConnectionDir(ref.connDir, JSON.stringify(containerConnectionInfo(ref.key, ref.lang)));
      await this.runtime.start(ref.containerId);
    } finally {
      this.expectingDeath.delete(ref.containerId);
    }
  }

  interrupt(ref: KernelRef): Promise<void> {
    return this.runtime.signal(ref.containerId, 'SIGINT');
  }

  updateLimits(ref: KernelRef, limits: { memoryBytes: number }): Promise<void> {
    return this.runtime.updateLimits(ref.containerId, { memoryBytes: limits.memoryBytes, cpus: this.config.cpus });
  }

  exec(ref: KernelRef, command: KernelCommand, onOutput: CommandOutputListener): Promise<{ exitCode: number }> {
    return this.runtime.exec(
      ref.containerId,
      {
        cmd: command.cmd,
        stdin: command.stdin,
        signal: command.signal,
        env: command.env,
        user: command.as === 'root' ? ROOT_USER : KERNEL_USER,
        workingDir: command.workingDir ?? CONTAINER_WORK_DIR,
      },
      onOutput,
    );
  }

  /**
   * Every process of the container: their /proc figures over its host PIDs, or the engine's stats where
   * those PIDs are not visible (the service itself in a container without the host's PID namespace). CPU
   * time is the container's cgroup counter where the host's cgroup files are readable: it keeps the time of
   * processes that have exited, so a burner made of short-lived processes is counted in full (/proc only
   * shows processes alive at the sample).
   */
  async usage(ref: KernelRef): Promise<ResourceUsage | undefined> {
    const pids = await this.runtime.processIds(ref.containerId);
    if (pids.length > 0) {
      const figures = await processFigures(pids);
      if (figures.read > 0) return { memoryBytes: figures.memoryBytes, cpuMs: cgroupCpuMs(ref.containerId) ?? figures.cpuMs };
      // Every process listed exited before its read: the engine's figures will do for this round.
    }
    return this.runtime.engineUsage(ref.containerId);
  }

  async oomKills(ref: KernelRef): Promise<number | undefined> {
    return this.runtime.oomKills ? this.runtime.oomKills(ref.containerId) : undefined;
  }

  async inspect(ref: Pick<KernelRef, 'containerId'>): Promise<{ running: boolean; deathReason?: DeathReason } | undefined> {
    const state = await this.runtime.inspect(ref.containerId);
    return state && { running: state.running, deathReason: state.deathReason };
  }

  /**
   * The directory goes at once, while the container may still be dying: the removal takes every directory
   * before it reads it and follows no link, so a kernel still writing (a start that failed before the
   * seal) cannot steer it. The container is force-removed in the background because the engine needs
   * 100-400 ms to kill and remove one, which would otherwise triple the cost of a one-shot run.
   */
  async remove(ref: Pick<KernelRef, 'id' | 'containerId' | 'connDir'>): Promise<void> {
    if (ref.containerId) this.removeContainerInBackground(ref.id, ref.containerId);
    if (ref.connDir) await removeConnectionDir(ref.connDir);
  }

  private removeContainerInBackground(kernelId: string, containerId: string): void {
    this.expectingDeath.add(containerId);
    const removal = this.removeRetrying(containerId)
      .catch((error: Error) => this.log.error('Could not remove kernel container', { kernelId, error: error.message }))
      .finally(() => {
        this.expectingDeath.delete(containerId);
        this.removals.delete(removal);
      });
    this.removals.add(removal);
  }

  /**
   * While the engine is unreachable a removal is retried, so that a kernel deleted meanwhile does not leave
   * its container running; once the service stops, the next start's reaper removes it instead.
   */
  private async removeRetrying(containerId: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.runtime.remove(containerId);
      } catch (error) {
        if (!(error instanceof DomainError && error.code === 'unavailable') || this.stopped) throw error;
        if (attempt === 0) this.log.warn('Container removal deferred until the engine answers', { containerId: containerId.slice(0, 12) });
        await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** attempt, 5000)));
      }
    }
  }

  async settled(): Promise<void> {
    while (this.removals.size > 0) await Promise.allSettled([...this.removals]);
  }

  async list(): Promise<FoundKernel[]> {
    const containers = await this.runtime.listManaged();
    return containers.map((c) => ({ id: c.labels[LABELS.kernelId] ?? '', containerId: c.containerId, running: c.running }));
  }

  async reap(keep: { containers: ReadonlySet<string>; kernels: (kernelId: string) => boolean }): Promise<void> {
    for (const container of await this.runtime.listManaged()) {
      // Pooled containers of an earlier run are leftovers too: their pool lived in that process.
      if (keep.containers.has(container.containerId) || this.expectingDeath.has(container.containerId)) continue;
      this.log.info('Removing leftover container', { containerId: container.containerId.slice(0, 12) });
      await this.runtime.remove(container.containerId);
    }
    for (const name of await readdir(this.kernelsDir)) {
      if (keep.kernels(name)) continue;
      this.log.info('Removing leftover socket directory', { name });
      await removeConnectionDir(path.join(this.kernelsDir, name));
    }
  }

  ping(): Promise<boolean> {
    return this.runtime.ping();
  }

  stop(): void {
    this.stopped = true;
    this.stopDeathWatch?.();
  }

  async removeState(): Promise<void> {
    await rmdir(this.kernelsDir).catch(() => undefined);
  }
}

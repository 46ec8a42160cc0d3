/**
 * The only importer of dockerode. Every Docker quirk is handled here:
 * - 404 on remove/inspect = already gone; 304 on stop = already stopped.
 * - Container deaths come from the events stream (die, oom), which is reopened when it breaks.
 * - Host PIDs of a container are read from its cgroup (v1 cgroupfs or v2), falling back to `top`.
 */
import { readFile } from 'node:fs/promises';
import Docker from 'dockerode';
import { unavailable } from '../errors.js';
import type { Logger } from '../logger.js';
import {
  LABELS,
  type ContainerRuntime,
  type ContainerState,
  type DeathListener,
  type DeathReason,
  type KernelContainerSpec,
  type KernelImage,
  type ResourceUsage,
} from './runtime.js';

export const CONTAINER_WORK_DIR = '/home/work';
export const KERNEL_USER = '1000:1000';

function statusCode(error: unknown): number | undefined {
  return (error as { statusCode?: number }).statusCode;
}

function isEngineDown(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'EACCES';
}

function deathReasonOf(state: { OOMKilled?: boolean; ExitCode?: number }): DeathReason {
  if (state.OOMKilled) return 'out-of-memory';
  const code = state.ExitCode ?? 0;
  // 137 = 128 + SIGKILL: killed from outside (docker kill, the OOM killer without the flag set).
  return code === 137 ? 'killed' : `exit code ${code}`;
}

export class DockerRuntime implements ContainerRuntime {
  private readonly docker: Docker;
  private readonly deathListeners = new Set<DeathListener>();
  private eventStream?: NodeJS.ReadableStream;
  private closed = false;

  constructor(private readonly log: Logger, private readonly instance: string, options: Docker.DockerOptions = {}) {
    this.docker = new Docker(options);
  }

  /** Engine calls go through here so that an unreachable engine is a clear 503, not a stack trace. */
  private async call<T>(what: string, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      if (isEngineDown(error)) throw unavailable(`the Docker engine is unreachable (${what}); try again shortly`);
      throw error;
    }
  }

  async startKernel(spec: KernelContainerSpec): Promise<ContainerState> {
    const tmpfs: Record<string, string> = {
      '/tmp': `rw,nosuid,nodev,size=${spec.tmpSizeMB}m,mode=1777`,
    };
    const binds = [`${spec.hostConnDir}:/conn`];
    if (spec.workDirBind) binds.push(`${spec.workDirBind}:${CONTAINER_WORK_DIR}`);
    // exec: compiled languages build and run their programs in the work directory.
    else tmpfs[CONTAINER_WORK_DIR] = `rw,exec,nosuid,nodev,size=${spec.workDirSizeMB}m,uid=1000,gid=1000,mode=0755`;
    const labels = {
      ...spec.labels,
      [LABELS.managed]: 'true',
      [LABELS.instance]: this.instance,
      [LABELS.kernelId]: spec.kernelId,
      [LABELS.lang]: spec.lang,
    };
    this.log.debug('Starting kernel container', { kernelId: spec.kernelId, image: spec.image });
    const container = await this.call('create container', () =>
      this.docker.createContainer({
        name: `polykernel-${spec.kernelId}`,
        Image: spec.image,
        Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
        Labels: labels,
        User: KERNEL_USER,
        WorkingDir: CONTAINER_WORK_DIR,
        NetworkDisabled: true,
        StopTimeout: 1,
        HostConfig: {
          NetworkMode: 'none',
          Binds: binds,
          Tmpfs: tmpfs,
          ReadonlyRootfs: true,
          CapDrop: ['ALL'],
          SecurityOpt: ['no-new-privileges'],
          PidsLimit: spec.pidsLimit,
          Memory: spec.memoryBytes,
          // Swap equal to memory = no swap at all: the cap is a real cap.
          MemorySwap: spec.memoryBytes,
          NanoCpus: Math.round(spec.cpus * 1e9),
          // An init as PID 1 reaps zombies and forwards SIGINT (interrupt) to the kernel.
          Init: true,
          Runtime: spec.runtime,
          IpcMode: 'private',
          Ulimits: [{ Name: 'core', Soft: 0, Hard: 0 }],
        },
      }),
    );
    try {
      await this.call('start container', () => container.start());
    } catch (error) {
      await this.remove(container.id);
      throw error;
    }
    this.log.info('Started kernel container', { kernelId: spec.kernelId, containerId: container.id.slice(0, 12) });
    return { containerId: container.id, labels, running: true };
  }

  async remove(containerId: string): Promise<void> {
    try {
      await this.call('remove container', () => this.docker.getContainer(containerId).remove({ force: true, v: true }));
      this.log.debug('Removed container', { containerId: containerId.slice(0, 12) });
    } catch (error) {
      // 404: already gone; 409: removal already in progress. Both mean it is going away.
      if (statusCode(error) === 404 || statusCode(error) === 409) return;
      throw error;
    }
  }

  async signal(containerId: string, signal: string): Promise<void> {
    try {
      await this.call('signal container', () => this.docker.getContainer(containerId).kill({ signal }));
    } catch (error) {
      // 409: not running. Nothing to signal.
      if (statusCode(error) === 409 || statusCode(error) === 404) return;
      throw error;
    }
  }

  async restart(containerId: string): Promise<ContainerState> {
    // t=0: the kernel's state is thrown away anyway, so there is nothing to wait for.
    await this.call('restart container', () => this.docker.getContainer(containerId).restart({ t: 0 }));
    const state = await this.inspect(containerId);
    if (!state) throw unavailable('the kernel container vanished during restart');
    return state;
  }

  async updateLimits(containerId: string, limits: { memoryBytes: number; cpus: number }): Promise<void> {
    await this.call('update container', () =>
      this.docker.getContainer(containerId).update({
        Memory: limits.memoryBytes,
        MemorySwap: limits.memoryBytes,
        NanoCpus: Math.round(limits.cpus * 1e9),
      }),
    );
  }

  async inspect(containerId: string): Promise<ContainerState | undefined> {
    try {
      const info = await this.call('inspect container', () => this.docker.getContainer(containerId).inspect());
      return {
        containerId: info.Id,
        labels: info.Config.Labels ?? {},
        running: info.State.Running,
        pid: info.State.Pid || undefined,
        deathReason: info.State.Running ? undefined : deathReasonOf(info.State),
      };
    } catch (error) {
      if (statusCode(error) === 404) return undefined;
      throw error;
    }
  }

  async listManaged(): Promise<ContainerState[]> {
    const containers = await this.call('list containers', () =>
      this.docker.listContainers({
        all: true,
        filters: { label: [`${LABELS.managed}=true`, `${LABELS.instance}=${this.instance}`] },
      }),
    );
    return containers.map((c) => ({ containerId: c.Id, labels: c.Labels, running: c.State === 'running' }));
  }

  async listKernelImages(): Promise<KernelImage[]> {
    const images = await this.call('list images', () =>
      this.docker.listImages({ filters: { label: [LABELS.kernelspec] } }),
    );
    return images.flatMap((image) =>
      (image.RepoTags ?? [])
        .filter((tag) => tag !== '<none>:<none>')
        .map((tag) => ({ image: tag, labels: image.Labels ?? {} })),
    );
  }

  async processIds(containerId: string): Promise<number[]> {
    const candidates = [
      `/sys/fs/cgroup/pids/docker/${containerId}/cgroup.procs`,
      `/sys/fs/cgroup/memory/docker/${containerId}/cgroup.procs`,
      `/sys/fs/cgroup/system.slice/docker-${containerId}.scope/cgroup.procs`,
      `/sys/fs/cgroup/docker/${containerId}/cgroup.procs`,
    ];
    for (const file of candidates) {
      try {
        const text = await readFile(file, 'utf8');
        return text.split('\n').filter(Boolean).map(Number);
      } catch {
        // Not this cgroup layout; try the next.
      }
    }
    try {
      const top = (await this.docker.getContainer(containerId).top({ ps_args: '-o pid' })) as {
        Processes?: string[][];
      };
      return (top.Processes ?? []).map((row) => Number(row[0])).filter(Number.isInteger);
    } catch {
      return [];
    }
  }

  async engineUsage(containerId: string): Promise<ResourceUsage | undefined> {
    try {
      const stats = (await this.docker.getContainer(containerId).stats({ stream: false })) as {
        memory_stats?: { usage?: number; stats?: { cache?: number } };
        cpu_stats?: { cpu_usage?: { total_usage?: number } };
      };
      const memory = (stats.memory_stats?.usage ?? 0) - (stats.memory_stats?.stats?.cache ?? 0);
      return {
        memoryBytes: Math.max(0, memory),
        cpuMs: Math.round((stats.cpu_stats?.cpu_usage?.total_usage ?? 0) / 1e6),
      };
    } catch {
      return undefined;
    }
  }

  onDeath(listener: DeathListener): () => void {
    this.deathListeners.add(listener);
    if (!this.eventStream) void this.watchEvents();
    return () => this.deathListeners.delete(listener);
  }

  private async watchEvents(): Promise<void> {
    if (this.closed) return;
    try {
      const stream = (await this.docker.getEvents({
        filters: {
          type: ['container'],
          event: ['die'],
          label: [`${LABELS.managed}=true`, `${LABELS.instance}=${this.instance}`],
        },
      })) as NodeJS.ReadableStream;
      this.eventStream = stream;
      let pending = '';
      stream.on('data', (chunk: Buffer) => {
        pending += chunk.toString('utf8');
        let newline: number;
        while ((newline = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          if (line.trim()) void this.handleDeathEvent(line);
        }
      });
      const reopen = () => {
        this.eventStream = undefined;
        if (!this.closed) setTimeout(() => void this.watchEvents(), 1000).unref();
      };
      stream.on('end', reopen);
      stream.on('error', reopen);
    } catch (error) {
      this.log.warn('Docker events unavailable; retrying', { error: (error as Error).message });
      if (!this.closed) setTimeout(() => void this.watchEvents(), 1000).unref();
    }
  }

  private async handleDeathEvent(line: string): Promise<void> {
    let event: { id?: string; Actor?: { Attributes?: Record<string, string> } };
    try {
      event = JSON.parse(line);
    } catch {
      return;
    }
    if (!event.id) return;
    const labels = event.Actor?.Attributes ?? {};
    // The die event carries the exit code but not the OOM flag; inspect says which it was.
    const state = await this.inspect(event.id).catch(() => undefined);
    const exitCode = Number(labels.exitCode ?? 0);
    const reason: DeathReason = state?.deathReason ?? deathReasonOf({ ExitCode: exitCode });
    for (const listener of this.deathListeners) listener(event.id, reason, labels);
  }

  async ping(): Promise<boolean> {
    try {
      await this.docker.ping();
      return true;
    } catch {
      return false;
    }
  }

  close(): void {
    this.closed = true;
    const stream = this.eventStream as (NodeJS.ReadableStream & { destroy?: () => void }) | undefined;
    stream?.destroy?.();
    this.deathListeners.clear();
  }
}

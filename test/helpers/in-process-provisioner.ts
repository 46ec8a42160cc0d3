/**
 * A provisioner for unit tests of the kernel layer: each "container" is the runner's JavaScript kernel
 * started in this process on IPC sockets in a temporary directory, so the manager's parts talk the real
 * Jupyter protocol to a real kernel, with no Docker engine. Tests make kernels die (`kill`), make
 * launches fail, and share one provisioner between two managers to test adoption.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type {
  CommandOutputListener,
  DeathReason,
  FoundKernel,
  KernelCommand,
  KernelDeathListener,
  KernelProvisioner,
  KernelRef,
  LaunchRequest,
  ResourceUsage,
} from '../../src/kernels/provisioner.js';
import { silentLogger } from '../../src/logger.js';
import { containerConnectionInfo, hostConnectionInfo } from '../../src/protocol/connection-file.js';
import type { Executor } from '../../src/runner/executor.js';
import { RunnerKernel } from '../../src/runner/kernel.js';
import { findLanguage } from '../../src/runner/languages.js';
import { makeExecutor } from '../../src/runner/setup.js';
import { KernelSockets } from '../../src/runner/sockets.js';
import { KernelConnection } from '../../src/transport/kernel-connection.js';
import type { KernelTransport } from '../../src/transport/kernel-transport.js';

interface Placed {
  id: string;
  lang: string;
  key: string;
  containerId: string;
  connDir: string;
  running: boolean;
  deathReason?: DeathReason;
  sockets?: KernelSockets;
  executor?: Executor;
}

export class InProcessProvisioner implements KernelProvisioner {
  /** Every "container" of this provisioner, by container id, running or not. */
  readonly placed = new Map<string, Placed>();
  readonly sealed = new Set<string>();
  readonly restarts: string[] = [];
  /** Launches to fail before they start anything (e.g. an engine refusing). */
  failLaunches = 0;
  /** Runs inside `seal`, before it: a test makes a kernel die at that moment. */
  onSeal?: (ref: KernelRef) => Promise<void>;
  /**
   * Every manager started on this provisioner hears its deaths (as every replica's provisioner would hear
   * the engine's); a test removes one to have a death heard by one replica only.
   */
  readonly deathListeners = new Set<KernelDeathListener>();
  private count = 0;
  private root = '';

  static async create(): Promise<InProcessProvisioner> {
    const provisioner = new InProcessProvisioner();
    provisioner.root = await mkdtemp(path.join(os.tmpdir(), 'pk-provisioner-'));
    return provisioner;
  }

  async start(onDeath: KernelDeathListener): Promise<void> {
    this.deathListeners.add(onDeath);
  }

  async launch(request: LaunchRequest): Promise<Pick<KernelRef, 'containerId' | 'connDir'>> {
    if (this.failLaunches > 0) {
      this.failLaunches--;
      throw new Error('launch refused by the test');
    }
    const containerId = `container-${++this.count}`;
    const connDir = path.join(this.root, request.id);
    await mkdir(connDir, { recursive: true });
    const placed: Placed = { id: request.id, lang: request.lang, key: request.key, containerId, connDir, running: false };
    this.placed.set(containerId, placed);
    await this.boot(placed);
    return { containerId, connDir };
  }

  private async boot(placed: Placed): Promise<void> {
    const language = findLanguage('javascript')!;
    const info = hostConnectionInfo(placed.connDir, containerConnectionInfo(placed.key, placed.lang));
    placed.sockets = await KernelSockets.bind(info, () => undefined);
    const kernel = new RunnerKernel({
      language,
      executor: (output) => (placed.executor = makeExecutor(language, output, placed.connDir)),
      sockets: placed.sockets,
      log: silentLogger,
      version: Promise.resolve(process.versions.node),
      exit: () => this.kill(placed.containerId, 'exit code 0'),
    });
    kernel.start();
    placed.running = true;
    placed.deathReason = undefined;
  }

  private async halt(placed: Placed): Promise<void> {
    placed.running = false;
    placed.sockets?.close();
    placed.sockets = undefined;
    await placed.executor?.shutdown().catch(() => undefined);
    placed.executor = undefined;
  }

  /** The kernel's "container" dies on its own: reported as the engine would. */
  async kill(containerId: string, reason: DeathReason = 'killed'): Promise<void> {
    const placed = this.placed.get(containerId);
    if (!placed || !placed.running) return;
    await this.halt(placed);
    placed.deathReason = reason;
    for (const listener of this.deathListeners) listener(placed.id, containerId, reason);
  }

  containerOf(kernelId: string): string | undefined {
    return [...this.placed.values()].find((p) => p.id === kernelId)?.containerId;
  }

  connect(ref: KernelRef, onBadFrame: (error: Error) => void): KernelTransport {
    return new KernelConnection(hostConnectionInfo(ref.connDir, containerConnectionInfo(ref.key, ref.lang)), onBadFrame);
  }

  async seal(ref: KernelRef): Promise<void> {
    await this.onSeal?.(ref);
    this.sealed.add(ref.id);
  }

  async restart(ref: KernelRef): Promise<void> {
    const placed = this.placed.get(ref.containerId);
    if (!placed) throw new Error(`no container ${ref.containerId}`);
    this.restarts.push(ref.id);
    this.sealed.delete(ref.id);
    await this.halt(placed);
    await this.boot(placed);
  }

  async interrupt(): Promise<void> {}

  async updateLimits(): Promise<void> {}

  exec(ref: KernelRef, command: KernelCommand, onOutput: CommandOutputListener): Promise<{ exitCode: number }> {
    return new Promise((resolve, reject) => {
      const child = spawn(command.cmd[0]!, command.cmd.slice(1), { cwd: ref.connDir, env: { ...process.env, ...command.env } });
      child.stdout.on('data', (chunk: Buffer) => onOutput('stdout', chunk));
      child.stderr.on('data', (chunk: Buffer) => onOutput('stderr', chunk));
      child.stdin.end(command.stdin ?? '');
      child.once('error', reject);
      child.once('close', (code) => resolve({ exitCode: code ?? 137 }));
    });
  }

  async usage(): Promise<ResourceUsage> {
    return { memoryBytes: process.memoryUsage().rss, cpuMs: 0 };
  }

  async oomKills(): Promise<number> {
    return 0;
  }

  async inspect(ref: Pick<KernelRef, 'containerId'>): Promise<{ running: boolean; deathReason?: DeathReason } | undefined> {
    const placed = this.placed.get(ref.containerId);
    return placed && { running: placed.running, deathReason: placed.deathReason };
  }

  async remove(ref: Pick<KernelRef, 'id' | 'containerId' | 'connDir'>): Promise<void> {
    const placed = this.placed.get(ref.containerId);
    if (placed) {
      this.placed.delete(ref.containerId);
      await this.halt(placed);
    }
    if (ref.connDir) await rm(ref.connDir, { recursive: true, force: true });
  }

  async settled(): Promise<void> {}

  async list(): Promise<FoundKernel[]> {
    return [...this.placed.values()].map((p) => ({ id: p.id, containerId: p.containerId, running: p.running }));
  }

  async reap(keep: { containers: ReadonlySet<string>; kernels: (kernelId: string) => boolean }): Promise<void> {
    for (const placed of [...this.placed.values()]) {
      if (!keep.containers.has(placed.containerId)) await this.remove(placed);
    }
    for (const name of await readdir(this.root)) if (!keep.kernels(name)) await rm(path.join(this.root, name), { recursive: true, force: true });
  }

  async ping(): Promise<boolean> {
    return true;
  }

  stop(): void {}

  async removeState(): Promise<void> {}

  /** Every kernel gone, its directory too. */
  async dispose(): Promise<void> {
    for (const placed of [...this.placed.values()]) await this.remove(placed);
    await rm(this.root, { recursive: true, force: true });
  }
}

/**
 * Kernel lifecycle: create, find, restart, interrupt, delete, adopt after a restart of the service, and
 * react to container deaths. One set of kernels for every API surface (v1, Jupyter, executions).
 *
 * A kernel = one container + one host socket directory + one store record (+ a LiveKernel in this
 * process). Every path that acquires one of them releases all of them on failure (`destroy`).
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/index.js';
import {
  conflict,
  DomainError,
  invalidInput,
  kernelFailed,
  limitExceeded,
  notFound,
  tooManyKernels,
  unavailable,
} from '../errors.js';
import type { Logger } from '../logger.js';
import { containerConnectionInfo, hostConnectionInfo, newKernelKey } from '../protocol/connection-file.js';
import type { ContainerRuntime, DeathReason } from '../runtime/runtime.js';
import { LABELS } from '../runtime/runtime.js';
import type { Store } from '../store/store.js';
import type { KernelRecord, KernelState, ResourceLimits } from './kernel-record.js';
import type { KernelSpecEntry, KernelSpecRegistry } from './kernel-specs.js';
import { createConnectionDir, instanceConnectionDirs, removeConnectionDir, sealConnectionDir } from './conn-dir.js';
import { KeyedMutex } from './keyed-mutex.js';
import { LiveKernel } from './live-kernel.js';
import { MemoryBudget } from './memory-budget.js';
import { WarmPool, type LaunchedKernel } from './warm-pool.js';

export interface CreateKernelRequest {
  /** Kernel name or alias; the default kernel when absent. */
  lang?: string;
  clientSessionToken?: string;
  /** The API key (tenant) owning the kernel; its clientSessionTokens are its own. Absent = admin/open mode. */
  owner?: string;
  limits?: { maxMemKB?: number; timeoutMs?: number };
  /** Variables for the kernel's environment (already filtered by the API layer). */
  env?: Record<string, string>;
  /** Host directory to mount as the kernel's work directory (notebook executions). */
  workDir?: string;
}

export interface CreateKernelResult {
  record: KernelRecord;
  /** False when a live kernel with the same clientSessionToken was returned instead. */
  created: boolean;
}

/** Where a clientSessionToken is claimed: per owner, so one tenant's token never names another's kernel. */
const tokenKey = (owner: string | undefined, token: string) => (owner === undefined ? token : `key:${owner}:${token}`);

interface TokenClaim {
  kernelId: string;
  lang: string;
}

export interface KernelEvents {
  /** Execution state changed as the service sees it (restarting, dead, …). */
  state: [kernelId: string, state: KernelState];
  /** The kernel is gone; `reason` says why (deleted, out-of-memory, idle timeout, …). */
  removed: [kernelId: string, reason: string];
  /** The kernel's container died and the kernel is restarted in place (POLYKERNEL_RESTART_DEAD_KERNELS). */
  died: [kernelId: string, reason: string];
}

export class KernelManager extends EventEmitter<KernelEvents> {
  private readonly live = new Map<string, LiveKernel>();
  /** Restart, delete, interrupt and death handling of one kernel run one at a time (see KeyedMutex). */
  private readonly lifecycle = new KeyedMutex();
  /**
   * This instance's socket directories, one per kernel: only this instance's, so that the reaper at start
   * never touches another instance's kernels sharing the state directory.
   */
  private readonly kernelsDir: string;
  private readonly starting = new Map<string, Promise<KernelRecord>>();
  /** Kernels being restarted or removed by us: their container's death is expected. */
  private readonly expectingDeath = new Set<string>();
  /** Why recently removed kernels went away, so a caller that was waiting on one can say why. */
  private readonly graveyard = new Map<string, { reason: string; owner?: string }>();
  /** Capacity held by creates in flight, so concurrent creates cannot overshoot KG_MAX_KERNELS. */
  private reserved = 0;
  private stopDeathWatch?: () => void;
  /** Container removals in flight (see destroy). */
  private readonly removals = new Set<Promise<unknown>>();
  /** When kernels were restarted after their container died (POLYKERNEL_RESTART_DEAD_KERNELS). */
  private readonly autoRestarts = new Map<string, number[]>();
  /** Containers whose kernel is starting: their death fails the start at once (see untilReady). */
  private readonly launching = new Map<string, (reason: DeathReason) => void>();
  /**
   * Why the kernels of an earlier run are not adopted yet (the engine or the store was unreachable at
   * start); retried in the background, and until then creates and live operations answer 503 (issue #6).
   */
  private adoptionPending?: string;
  private adoptionRetry?: NodeJS.Timeout;
  private stopped = false;
  readonly pool: WarmPool;
  /** Memory caps of live, starting and pooled kernels against POLYKERNEL_MEMORY_BUDGET_KB (memory-budget.ts). */
  readonly memory: MemoryBudget;

  constructor(
    private readonly config: Config,
    private readonly runtime: ContainerRuntime,
    private readonly store: Store,
    readonly specs: KernelSpecRegistry,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
  ) {
    super();
    this.kernelsDir = instanceConnectionDirs(config.stateDir, config.instance);
    this.memory = new MemoryBudget(config.memoryBudgetKB);
    const sizes: Record<string, number> = { ...config.poolSizes };
    if (config.prespawnCount > 0) sizes[config.defaultKernelName] ??= config.prespawnCount;
    this.pool = new WarmPool(
      sizes,
      { launch: (lang) => this.launchPooled(lang), discard: (kernel) => this.discardLaunched(kernel).finally(() => this.memory.release(kernel.id)) },
      log,
      config.poolRefillDelayMs,
    );
  }

  /**
   * Adopts the kernels the store knows whose containers still run; removes every other leftover. When the
   * Docker engine or the store cannot be reached, the service starts anyway and adoption is retried until
   * it succeeds (issue #6).
   */
  async start(): Promise<void> {
    this.stopDeathWatch = this.runtime.onDeath((containerId, reason, labels) =>
      this.onContainerDeath(containerId, reason, labels),
    );
    await mkdir(this.kernelsDir, { recursive: true, mode: 0o711 });
    try {
      await this.adoptAll();
      this.pool.fill();
    } catch (error) {
      if (!(error instanceof DomainError && error.code === 'unavailable')) throw error;
      this.adoptionPending = error.message;
      this.log.warn('Could not adopt the kernels of an earlier run yet; retrying in the background', { error: error.message });
      this.retryAdoption();
    }
  }

  private retryAdoption(): void {
    this.adoptionRetry = setTimeout(() => {
      this.adoptAll().then(
        () => {
          this.adoptionPending = undefined;
          this.log.info('Adopted the kernels of an earlier run');
          if (!this.stopped) this.pool.fill();
        },
        (error: Error) => {
          this.adoptionPending = error.message;
          if (!this.stopped) this.retryAdoption();
        },
      );
    }, 2000);
    this.adoptionRetry.unref();
  }

  /** Idempotent, so that a retry after a partial failure adopts the rest. */
  private async adoptAll(): Promise<void> {
    const records = await this.store.list<KernelRecord>('kernels');
    const containers = await this.runtime.listManaged();
    const runningById = new Map(
      containers.filter((c) => c.running).map((c) => [c.labels[LABELS.kernelId], c.containerId] as const),
    );
    const adopted = new Set<string>();
    // In parallel: each adoption waits for its kernel's answer.
    await Promise.all(
      records.map(async (record) => {
        if (this.live.has(record.id)) {
          adopted.add(record.containerId);
          return;
        }
        if (runningById.get(record.id) === record.containerId) {
          try {
            await this.adopt(record);
            adopted.add(record.containerId);
            return;
          } catch (error) {
            this.live.get(record.id)?.close();
            this.live.delete(record.id);
            this.log.warn('Could not re-adopt kernel', { kernelId: record.id, error: (error as Error).message });
          }
        }
        await this.destroy(record, 'not running after a restart of the service');
      }),
    );
    for (const container of containers) {
      // Pooled containers of an earlier run are leftovers too: their pool lived in that process.
      if (!adopted.has(container.containerId)) {
        this.log.info('Removing leftover container', { containerId: container.containerId.slice(0, 12) });
        await this.runtime.remove(container.containerId);
      }
    }
    await this.reapSocketDirs();
  }

  /**
   * Removes the socket directories that no kernel of this instance owns any more: those of kernels that
   * vanished while the service was down, and of pooled kernels of an earlier run. Runs after every such
   * container was removed above, so no kernel can be writing in them.
   */
  private async reapSocketDirs(): Promise<void> {
    // A kernel's directory is named after it (a pooled kernel's too).
    for (const name of await readdir(this.kernelsDir)) {
      if (this.live.has(name) || this.starting.has(name)) continue;
      this.log.info('Removing leftover socket directory', { name });
      await removeConnectionDir(path.join(this.kernelsDir, name));
    }
  }

  private async adopt(record: KernelRecord): Promise<void> {
    const kernel = this.connect(record);
    kernel.numQueriesExecuted = record.numQueriesExecuted;
    kernel.owner = record.owner;
    kernel.limits = record.limits;
    // On control: a kernel busy with a long computation answers there at once, while on shell it would
    // answer only once the computation ends, and look dead meanwhile (issue #6).
    // The last service may have stopped between a start and its seal: clients wait until it is sealed.
    kernel.hold();
    try {
      await kernel.waitReady(5000, 250, 'control');
      await sealConnectionDir(record.connDir);
    } finally {
      kernel.release();
    }
    // As the last service left it until the shell tells: a kernel_info on shell is answered (busy, then
    // idle on iopub) once the computation in progress, if any, is over.
    kernel.state = record.state === 'busy' ? 'busy' : 'idle';
    void kernel.send('shell', kernel.message('kernel_info_request', {})).catch(() => undefined);
    kernel.lastActivity = record.lastActivity;
    this.memory.hold(record.id, record.limits.maxMemKB);
    this.log.info('Re-adopted kernel', { kernelId: record.id, containerId: record.containerId.slice(0, 12), state: kernel.state });
  }

  private connect(record: KernelRecord): LiveKernel {
    const kernel = this.newLiveKernel(record.id, record.connDir, record.key, record.lang);
    this.live.set(record.id, kernel);
    return kernel;
  }

  private newLiveKernel(id: string, connDir: string, key: string, kernelName: string): LiveKernel {
    const info = hostConnectionInfo(connDir, containerConnectionInfo(key, kernelName));
    return new LiveKernel(id, info, this.clock, (error) =>
      this.log.warn('Dropped a bad frame from a kernel', { kernelId: id, error: error.message }),
    );
  }

  /** Checks a request's limits against the server's caps; fills in defaults. */
  resolveLimits(requested: CreateKernelRequest['limits'] = {}): ResourceLimits {
    const maxMemKB = requested.maxMemKB ?? this.config.defaultMaxMemKB;
    const timeoutMs = requested.timeoutMs ?? this.config.defaultTimeoutMs;
    if (maxMemKB > this.config.maxMemKBCap) {
      throw limitExceeded(`resourceLimits.maxMem ${maxMemKB} KB exceeds this server's limit of ${this.config.maxMemKBCap} KB`);
    }
    if (maxMemKB < 16384) throw invalidInput('resourceLimits.maxMem must be at least 16384 KB (16 MB)');
    if (timeoutMs > this.config.timeoutCapMs) {
      throw limitExceeded(`resourceLimits.timeout ${timeoutMs} ms exceeds this server's limit of ${this.config.timeoutCapMs} ms`);
    }
    return {
      maxMemKB,
      timeoutMs,
      idleTimeoutMs: this.config.idleTimeoutMs,
      maxCpuCreditMs: this.config.maxCpuCreditMs,
    };
  }

  async resolveSpec(lang: string | undefined): Promise<KernelSpecEntry> {
    const name = lang ?? this.config.defaultKernelName;
    const entry = await this.specs.resolve(name);
    if (!entry) {
      const known = (await this.specs.names()).join(', ') || 'none (run `npm run images`)';
      throw invalidInput(`unknown lang "${name}"; available: ${known}`);
    }
    return entry;
  }

  async create(request: CreateKernelRequest): Promise<CreateKernelResult> {
    // A new kernel's container could be taken for a leftover by the adoption still to come.
    if (this.adoptionPending) throw this.notAdoptedYet();
    const spec = await this.resolveSpec(request.lang);
    const limits = this.resolveLimits(request.limits);
    // A pooled kernel cannot take another environment or work directory: those need a cold start.
    const warm = request.env && Object.keys(request.env).length > 0 || request.workDir ? undefined : this.pool.take(spec.name);
    const id = warm?.id ?? randomUUID();
    const token = request.clientSessionToken === undefined ? undefined : tokenKey(request.owner, request.clientSessionToken);
    try {
      if (token !== undefined) {
        const existing = await this.claimToken(token, { kernelId: id, lang: spec.name });
        if (existing) {
          if (warm) this.pool.giveBack(warm);
          return { record: existing, created: false };
        }
      }
      this.memory.reserve(id, limits.maxMemKB);
      this.reserveCapacity();
    } catch (error) {
      this.undoMemoryReservation(id, warm);
      if (warm) this.pool.giveBack(warm);
      if (token !== undefined && !(error instanceof DomainError && error.code === 'conflict')) {
        await this.store.delete('tokens', token);
      }
      throw error;
    }
    const started = this.startKernel(id, spec, limits, request, warm).finally(() => {
      this.reserved--;
      this.starting.delete(id);
      if (!this.live.has(id)) this.undoMemoryReservation(id, warm);
    });
    this.starting.set(id, started);
    return { record: await started, created: true };
  }

  /**
   * Claims a clientSessionToken for a new kernel. Returns the kernel already holding it when that kernel
   * lives (REPL continuity); a claim by a kernel that is gone is taken over.
   */
  private async claimToken(token: string, claim: TokenClaim): Promise<KernelRecord | undefined> {
    for (let attempt = 0; attempt < 3; attempt++) {
      if (await this.store.putIfAbsent('tokens', token, claim)) return undefined;
      const held = await this.store.get<TokenClaim>('tokens', token);
      if (!held) continue;
      if (held.lang !== claim.lang) {
        throw conflict(`clientSessionToken "${token}" is in use by a ${held.lang} kernel; use another token for ${claim.lang}`);
      }
      const pending = this.starting.get(held.kernelId);
      const record = pending ? await pending.catch(() => undefined) : await this.store.get<KernelRecord>('kernels', held.kernelId);
      if (record && record.state !== 'dead') return record;
      await this.store.delete('tokens', token);
    }
    throw conflict(`clientSessionToken "${token}" is being claimed concurrently; try again`);
  }

  /**
   * A create that did not make a kernel gives its memory back: a cold one all of it, a warm one that went
   * back to its pool (not destroyed) keeps its pool cap.
   */
  private undoMemoryReservation(id: string, warm: LaunchedKernel | undefined): void {
    if (warm && !this.graveyard.has(id)) this.memory.hold(id, warm.memoryBytes / 1024);
    else this.memory.release(id);
  }

  private reserveCapacity(): void {
    const max = this.config.maxKernels;
    if (max > 0 && this.live.size + this.reserved >= max) {
      throw tooManyKernels(`the kernel limit (KG_MAX_KERNELS=${max}) is reached; delete a kernel first`);
    }
    this.reserved++;
  }

  private async startKernel(
    id: string,
    spec: KernelSpecEntry,
    limits: ResourceLimits,
    request: CreateKernelRequest,
    warm: LaunchedKernel | undefined,
  ): Promise<KernelRecord> {
    const now = this.clock();
    const record: KernelRecord = {
      id,
      lang: spec.name,
      image: spec.image,
      runtime: warm?.runtime ?? this.runtimeFor(spec.name),
      containerId: warm?.containerId ?? '',
      connDir: warm?.connDir ?? path.join(this.kernelsDir, id),
      key: warm?.key ?? newKernelKey(),
      createdAt: now,
      lastActivity: now,
      state: 'starting',
      limits,
      clientSessionToken: request.clientSessionToken,
      owner: request.owner,
      numQueriesExecuted: 0,
      memoryUsedKB: 0,
      cpuCreditUsedMs: 0,
      cpuCreditBaseMs: 0,
      connections: 0,
    };
    try {
      await this.store.put('kernels', id, record);
    } catch (error) {
      // Store unreachable (503): the warm kernel goes back to its pool instead of leaking (issue #6).
      if (warm) this.pool.giveBack(warm);
      throw error;
    }
    try {
      let launched = warm;
      if (launched && launched.memoryBytes !== limits.maxMemKB * 1024) {
        try {
          await this.runtime.updateLimits(launched.containerId, { memoryBytes: limits.maxMemKB * 1024, cpus: this.config.cpus });
        } catch (error) {
          // E.g. a cap below what the idle kernel already uses: start this one cold instead.
          this.log.debug('Warm kernel could not take the requested limits', { kernelId: id, error: (error as Error).message });
          await this.discardLaunched(launched);
          launched = undefined;
        }
      }
      launched ??= await this.launch(id, spec, record, limits.maxMemKB * 1024, request);
      record.containerId = launched.containerId;
      record.connDir = launched.connDir;
      record.key = launched.key;
      launched.kernel.limits = limits;
      launched.kernel.owner = request.owner;
      this.live.set(id, launched.kernel);
      record.state = launched.kernel.state;
      record.lastActivity = this.clock();
      await this.store.update<KernelRecord>('kernels', id, {
        containerId: record.containerId,
        connDir: record.connDir,
        key: record.key,
        state: record.state,
        lastActivity: record.lastActivity,
      });
      this.log.info('Kernel ready', { kernelId: id, lang: spec.name, warm: launched === warm, ms: this.clock() - now });
      return record;
    } catch (error) {
      await this.destroy(record, 'failed to start');
      if (error instanceof DomainError) throw error;
      throw kernelFailed(`the ${spec.name} kernel failed to start: ${(error as Error).message}`);
    }
  }

  private runtimeFor(lang: string): string {
    return this.config.containerRuntimeByLang[lang] ?? this.config.containerRuntime;
  }

  /**
   * Starts a kernel container and waits until the kernel answers. The LiveKernel is not registered:
   * the caller decides whether it becomes a kernel now or waits in the warm pool. On failure, the
   * container and socket directory are released before the error propagates.
   */
  private async launch(
    id: string,
    spec: KernelSpecEntry,
    ids: { connDir: string; key: string; runtime: string },
    memoryBytes: number,
    options: { env?: Record<string, string>; workDir?: string; pooled?: boolean } = {},
  ): Promise<LaunchedKernel> {
    let containerId = '';
    let kernel: LiveKernel | undefined;
    try {
      await createConnectionDir(ids.connDir, JSON.stringify(containerConnectionInfo(ids.key, spec.name)));
      const container = await this.runtime.startKernel({
        kernelId: id,
        lang: spec.name,
        image: spec.image,
        hostConnDir: ids.connDir,
        memoryBytes,
        cpus: this.config.cpus,
        pidsLimit: this.config.pidsLimit,
        workDirSizeMB: this.config.workDirSizeMB,
        tmpSizeMB: this.config.tmpSizeMB,
        runtime: ids.runtime,
        env: options.env ?? {},
        workDirBind: options.workDir,
        labels: options.pooled ? { [LABELS.pool]: 'true' } : undefined,
      });
      containerId = container.containerId;
      kernel = this.newLiveKernel(id, ids.connDir, ids.key, spec.name);
      await this.untilReady(kernel, containerId, memoryBytes);
      await sealConnectionDir(ids.connDir);
      return { id, lang: spec.name, image: spec.image, runtime: ids.runtime, containerId, connDir: ids.connDir, key: ids.key, memoryBytes, kernel };
    } catch (error) {
      kernel?.close();
      if (containerId) await this.runtime.remove(containerId).catch(() => undefined);
      await removeConnectionDir(ids.connDir);
      throw error;
    }
  }

  /**
   * Waits for the kernel's first answer, or fails as soon as its container dies: e.g. a memory cap too
   * small for the kernel (under runsc an idle ipykernel needs about 80 MB) is reported at once, with its
   * reason, instead of after POLYKERNEL_START_TIMEOUT_MS.
   */
  private async untilReady(kernel: LiveKernel, containerId: string, memoryBytes: number): Promise<void> {
    let onDeath!: (reason: DeathReason) => void;
    const died = new Promise<never>((_, reject) => {
      onDeath = (reason) => {
        const hint = reason === 'out-of-memory' ? `: a memory cap of ${memoryBytes / 1024} KB is too small for this kernel` : '';
        reject(kernelFailed(`its container died while it started (${reason})${hint}`));
      };
    });
    died.catch(() => undefined);
    this.launching.set(containerId, onDeath);
    try {
      // The container may have died before it was registered here.
      void this.runtime.inspect(containerId).then((state) => {
        if (state && !state.running) onDeath(state.deathReason ?? 'killed');
      }, () => undefined);
      await Promise.race([kernel.waitReady(this.config.startTimeoutMs), died]);
    } finally {
      this.launching.delete(containerId);
    }
  }

  /** A kernel for the warm pool: its own id, directory and key, the default limits. */
  private async launchPooled(lang: string): Promise<LaunchedKernel> {
    const spec = await this.resolveSpec(lang);
    const id = randomUUID();
    const ids = { connDir: path.join(this.kernelsDir, id), key: newKernelKey(), runtime: this.runtimeFor(spec.name) };
    this.memory.reserve(id, this.config.defaultMaxMemKB);
    return this.launch(id, spec, ids, this.config.defaultMaxMemKB * 1024, { pooled: true }).catch((error: Error) => {
      this.memory.release(id);
      throw error;
    });
  }

  private async discardLaunched(launched: LaunchedKernel): Promise<void> {
    launched.kernel.close();
    this.expectingDeath.add(launched.containerId);
    try {
      await this.runtime.remove(launched.containerId);
    } finally {
      this.expectingDeath.delete(launched.containerId);
    }
    await removeConnectionDir(launched.connDir);
  }

  /** The stored record with the live figures of this process merged in; 404 when unknown. */
  async get(id: string): Promise<KernelRecord> {
    const pending = this.starting.get(id);
    if (pending) await pending.catch(() => undefined);
    const record = await this.store.get<KernelRecord>('kernels', id);
    if (!record) {
      // A kernel that died (out of memory, timeout, …) says why, as liveKernel does.
      const why = this.graveyard.get(id)?.reason;
      throw notFound(why ? `kernel ${id} is gone (${why})` : `no kernel with id ${id}`);
    }
    return this.withLiveFigures(record);
  }

  async list(): Promise<KernelRecord[]> {
    const records = await this.store.list<KernelRecord>('kernels');
    return records.map((record) => this.withLiveFigures(record));
  }

  /** The stored record overlaid with what this process knows first-hand and stores only periodically. */
  private withLiveFigures(record: KernelRecord): KernelRecord {
    const kernel = this.live.get(record.id);
    if (!kernel) return record;
    return {
      ...record,
      state: kernel.state,
      lastActivity: Math.max(record.lastActivity, kernel.lastActivity),
      numQueriesExecuted: Math.max(record.numQueriesExecuted, kernel.numQueriesExecuted),
    };
  }

  /** The live connection of a kernel, for those that exchange messages with it; 404 when unknown. */
  async liveKernel(id: string): Promise<LiveKernel> {
    const pending = this.starting.get(id);
    if (pending) await pending.catch(() => undefined);
    const kernel = this.live.get(id);
    if (!kernel && this.adoptionPending) throw this.notAdoptedYet();
    if (!kernel || kernel.state === 'dead') {
      const why = this.graveyard.get(id)?.reason;
      throw notFound(why ? `kernel ${id} is gone (${why})` : `no kernel with id ${id}`);
    }
    return kernel;
  }

  private notAdoptedYet(): DomainError {
    return unavailable(`the kernels of an earlier run are not re-adopted yet: ${this.adoptionPending}`);
  }

  /** Why a kernel that was removed went away, if it went recently. */
  removalReason(id: string): string | undefined {
    return this.graveyard.get(id)?.reason;
  }

  /** Removes a kernel; one being restarted is removed once its restart has ended. */
  delete(id: string, reason = 'deleted'): Promise<void> {
    return this.lifecycle.run(id, async () => {
      const record = await this.get(id);
      await this.destroy(record, reason);
    });
  }

  interrupt(id: string): Promise<void> {
    return this.lifecycle.run(id, async () => {
      const record = await this.get(id);
      await this.liveKernel(id);
      await this.runtime.signal(record.containerId, 'SIGINT');
    });
  }

  /**
   * A fresh kernel process in the same container: globals and imports are gone, idle resets, age and
   * CPU credit keep accumulating. Restarts of one kernel run one after the other, never overlapping.
   */
  restart(id: string): Promise<KernelRecord> {
    return this.lifecycle.run(id, () => this.restartNow(id));
  }

  /**
   * The old container is stopped (every process of the old kernel dead) before its socket directory is
   * touched; that directory is then thrown away and a new one made for the new start. Client messages
   * wait (`hold`) until the new kernel has bound its sockets and the directory is sealed, so client code
   * never runs while the kernel can write there (conn-dir.ts).
   */
  private async restartNow(id: string): Promise<KernelRecord> {
    const record = await this.get(id);
    const kernel = await this.liveKernel(id);
    // An unreachable engine is a 503 that leaves the kernel as it was, not a failed restart that destroys it.
    if (!(await this.runtime.ping())) throw unavailable('the Docker engine is unreachable (restart container); try again shortly');
    this.expectingDeath.add(record.containerId);
    kernel.state = 'restarting';
    kernel.hold();
    this.emit('state', id, 'restarting');
    try {
      await this.runtime.stop(record.containerId);
      await removeConnectionDir(record.connDir);
      await createConnectionDir(record.connDir, JSON.stringify(containerConnectionInfo(record.key, record.lang)));
      await this.runtime.start(record.containerId);
      kernel.reconnect();
      kernel.state = 'starting';
      await kernel.waitReady(this.config.startTimeoutMs);
      await sealConnectionDir(record.connDir);
    } catch (error) {
      await this.destroy(record, 'failed to restart');
      throw kernelFailed(`kernel ${id} failed to restart: ${(error as Error).message}`);
    } finally {
      this.expectingDeath.delete(record.containerId);
      kernel.release();
    }
    const patch: Partial<KernelRecord> = {
      state: kernel.state,
      lastActivity: this.clock(),
      cpuCreditBaseMs: record.cpuCreditUsedMs,
    };
    await this.store.update<KernelRecord>('kernels', id, patch);
    this.emit('state', id, kernel.state);
    return { ...record, ...patch };
  }

  async setConnections(id: string, connections: number): Promise<void> {
    await this.store.update<KernelRecord>('kernels', id, { connections });
  }

  /** Live kernels of this process, for the usage sampler and the culler. */
  liveKernels(): LiveKernel[] {
    return [...this.live.values()];
  }

  /**
   * Releases everything a kernel holds: its connection, container, socket directory, record and token.
   * Safe to call more than once and on a half-created kernel.
   *
   * The kernel is unreachable when this resolves; its container is force-removed in the background
   * (tracked, awaited by `settled()` and on shutdown) because the engine needs 100-400 ms to kill and
   * remove a container, which would otherwise triple the cost of a one-shot run.
   */
  async destroy(record: KernelRecord, reason: string): Promise<void> {
    const kernel = this.live.get(record.id);
    const wasLive = kernel !== undefined;
    this.live.delete(record.id);
    this.autoRestarts.delete(record.id);
    kernel?.close();
    this.remember(record, reason);
    this.memory.release(record.id);
    if (record.containerId) this.removeContainerInBackground(record.id, record.containerId);
    // At once, while the container may still be dying: the removal takes every directory before it reads
    // it and follows no link, so a kernel still writing (a start that failed before the seal) cannot
    // steer it (conn-dir.ts).
    await removeConnectionDir(record.connDir);
    await this.store.delete('kernels', record.id);
    if (record.clientSessionToken !== undefined) {
      const key = tokenKey(record.owner, record.clientSessionToken);
      const claim = await this.store.get<TokenClaim>('tokens', key);
      if (claim?.kernelId === record.id) await this.store.delete('tokens', key);
    }
    if (wasLive) {
      this.emit('state', record.id, 'dead');
      this.emit('removed', record.id, reason);
    }
    this.log.info('Kernel removed', { kernelId: record.id, reason });
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
   * its container running (issue #6); once the service stops, the next start's reaper removes it instead.
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

  /** Resolves when every container removal started so far has finished. */
  async settled(): Promise<void> {
    while (this.removals.size > 0) await Promise.allSettled([...this.removals]);
  }

  /** Whose a recently removed kernel was (undefined owner: no tenant's), if it went recently. */
  removedKernel(id: string): { owner?: string } | undefined {
    const grave = this.graveyard.get(id);
    return grave && { owner: grave.owner };
  }

  private remember(record: KernelRecord, reason: string): void {
    const id = record.id;
    this.graveyard.set(id, { reason, owner: record.owner });
    // Bounded: only the most recent removals are kept.
    if (this.graveyard.size > 1000) this.graveyard.delete(this.graveyard.keys().next().value!);
  }

  private onContainerDeath(containerId: string, reason: DeathReason, labels: Record<string, string>): void {
    this.launching.get(containerId)?.(reason);
    if (this.expectingDeath.has(containerId)) return;
    const id = labels[LABELS.kernelId];
    if (!id || !this.live.has(id)) {
      this.pool.forget(containerId);
      return;
    }
    this.log.warn('Kernel container died', { kernelId: id, containerId: containerId.slice(0, 12), reason });
    if (this.config.restartDeadKernels && this.mayAutoRestart(id)) {
      // As jupyter_server's autorestart: clients see "restarting", then a fresh kernel. restart() removes
      // the kernel when the restart fails. (Without a restart, `removed` tells, once the kernel is gone.)
      this.emit('died', id, reason);
      void this.restart(id).then(
        () => this.log.info('Restarted a kernel whose container died', { kernelId: id, reason }),
        (error: Error) => this.log.warn('Could not restart a kernel whose container died', { kernelId: id, error: error.message }),
      );
      return;
    }
    void this.lifecycle
      .run(id, async () => {
        const record = await this.store.get<KernelRecord>('kernels', id);
        if (record && record.containerId === containerId) await this.destroy(record, reason);
      })
      .catch((error: Error) => this.log.error('Cleanup after a container death failed', { kernelId: id, error: error.message }));
  }

  /** At most 5 automatic restarts a minute (jupyter_server's restart_limit): a kernel that keeps dying goes. */
  private mayAutoRestart(id: string): boolean {
    const now = this.clock();
    const recent = (this.autoRestarts.get(id) ?? []).filter((at) => now - at < 60_000);
    if (recent.length >= 5) return false;
    this.autoRestarts.set(id, [...recent, now]);
    return true;
  }

  /** On shutdown of the service: keep kernels for re-adoption, or remove them all. */
  async stop(keepKernels: boolean): Promise<void> {
    this.stopped = true;
    clearTimeout(this.adoptionRetry);
    this.stopDeathWatch?.();
    await this.pool.drain();
    await Promise.allSettled([...this.starting.values()]);
    if (keepKernels) {
      await this.settled();
      for (const kernel of this.live.values()) {
        await this.store
          .update<KernelRecord>('kernels', kernel.id, {
            lastActivity: kernel.lastActivity,
            numQueriesExecuted: kernel.numQueriesExecuted,
            // The next service adopts a busy kernel as busy (see adopt).
            state: kernel.state,
          })
          .catch(() => false);
        kernel.connection.close();
      }
      this.live.clear();
      return;
    }
    const records = await this.store.list<KernelRecord>('kernels').catch(() => []);
    const mine = records.filter((record) => this.live.has(record.id));
    await Promise.allSettled(mine.map((record) => this.destroy(record, 'service shut down')));
    await this.settled();
    // Empty now, unless a removal failed: then the next start's reaper finds what is left.
    await rmdir(this.kernelsDir).catch(() => undefined);
  }
}

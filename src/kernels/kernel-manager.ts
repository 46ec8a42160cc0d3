/**
 * The kernels of every API surface (v1, Jupyter, executions): create, find, restart, interrupt, delete.
 * A facade over small parts, along jupyter_client's lines:
 * - the registry (kernel-registry.ts) resolves an id once per request into a KernelHandle;
 * - admission (kernel-admission.ts) checks spec, limits, capacity and memory; a kernel's slot under
 *   KG_MAX_KERNELS is a claim shared by every replica (kernel-slots.ts), held from admission to removal;
 * - the provisioner (provisioner.ts) places kernels, and the launcher (kernel-launcher.ts) waits for them;
 * - adoption (kernel-adoption.ts) takes back the kernels of an earlier run;
 * - the restarter (kernel-restarter.ts) decides what a death means;
 * - KernelRecords (kernel-records.ts) is the one writer of kernel and token records.
 *
 * A kernel = a provisioned container + a store record + a LiveKernel in this process. Every path that
 * acquires one of them releases all of them on failure (`destroy`). Restart, delete, interrupt and death
 * handling of one kernel run one at a time (KeyedMutex).
 *
 * Replicas sharing one store serve each other's kernels: a request naming a kernel this process does not
 * hold attaches to it (kernel-attach.ts), and deletes, restarts and deaths are told to the other replicas
 * (cluster-events.ts), which drop, reconnect or treat the death as their own.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { Config } from '../config/index.js';
import { DomainError, kernelFailed, unavailable, unknownKernel } from '../errors.js';
import type { Logger } from '../logger.js';
import { newKernelKey } from '../protocol/connection-file.js';
import type { Store } from '../store/store.js';
import { KernelAdmission, type RequestedLimits } from './kernel-admission.js';
import { KernelAdoption } from './kernel-adoption.js';
import { KernelAttachments } from './kernel-attach.js';
import { ClusterEvents, type KernelEvent } from './cluster-events.js';
import { ProvisionedKernelHandle, type KernelHandle } from './kernel-handle.js';
import { KernelLauncher } from './kernel-launcher.js';
import { newKernelRecord, type KernelRecord, type KernelState, type ResourceLimits } from './kernel-record.js';
import { KernelRecords } from './kernel-records.js';
import { KernelRegistry } from './kernel-registry.js';
import { KernelRestarter } from './kernel-restarter.js';
import { KernelSlots } from './kernel-slots.js';
import type { KernelSpecEntry, KernelSpecRegistry } from './kernel-specs.js';
import { KeyedMutex } from './keyed-mutex.js';
import type { LiveKernel } from './live-kernel.js';
import type { MemoryBudget } from './memory-budget.js';
import type { DeathReason, KernelProvisioner, KernelRef } from './provisioner.js';
import { WarmPool, type LaunchedKernel } from './warm-pool.js';

export interface CreateKernelRequest {
  /** Kernel name or alias; the default kernel when absent. */
  lang?: string;
  clientSessionToken?: string;
  /** The API key (tenant) owning the kernel; its clientSessionTokens are its own. Absent = admin/open mode. */
  owner?: string;
  limits?: RequestedLimits;
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

export interface KernelEvents {
  /** Execution state changed as the service sees it (restarting, dead, …). */
  state: [kernelId: string, state: KernelState];
  /** The kernel is gone; `reason` says why (deleted, out-of-memory, idle timeout, …). */
  removed: [kernelId: string, reason: string];
  /** The kernel's container died and the kernel is restarted in place (POLYKERNEL_RESTART_DEAD_KERNELS). */
  died: [kernelId: string, reason: string];
  /** A client interrupts the kernel: sent just before the signal, so that a run it ends knows why. */
  interrupting: [kernelId: string];
}

export class KernelManager extends EventEmitter<KernelEvents> {
  readonly records: KernelRecords;
  /** The kernels' slots under KG_MAX_KERNELS, counted across replicas. */
  readonly slots: KernelSlots;
  readonly pool: WarmPool;
  private readonly registry = new KernelRegistry();
  private readonly lifecycle = new KeyedMutex();
  private readonly admission: KernelAdmission;
  private readonly launcher: KernelLauncher;
  private readonly adoption: KernelAdoption;
  private readonly restarter: KernelRestarter;
  private readonly attachments: KernelAttachments;
  private readonly cluster: ClusterEvents;
  private readonly store: Store;
  /** Deaths this process has reacted to (heard from the provisioner and from another replica: once). */
  private readonly deathsSeen = new Set<string>();
  private syncTimer?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    private readonly config: Config,
    private readonly provisioner: KernelProvisioner,
    store: Store,
    readonly specs: KernelSpecRegistry,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
  ) {
    super();
    this.records = new KernelRecords(store, config.kernelClaimTtlMs, clock);
    this.store = store;
    this.slots = new KernelSlots(store, config.maxKernels, config.kernelClaimTtlMs);
    this.admission = new KernelAdmission(config, specs, this.slots);
    this.launcher = new KernelLauncher(config, provisioner, log, clock);
    this.restarter = new KernelRestarter(
      config.restartDeadKernels,
      {
        died: (id, reason) => this.emit('died', id, reason),
        restart: (id) => this.restartAfterDeath(id),
        remove: (id, containerId, reason) =>
          this.lifecycle.run(id, async () => {
            // A kernel that died as its start ended: its record names its container once the start is over.
            await this.registry.startOf(id);
            const record = await this.records.get(id);
            if (record && record.containerId === containerId) await this.destroy(record, reason);
          }),
      },
      log,
      clock,
    );
    this.adoption = new KernelAdoption({
      records: this.records,
      registry: this.registry,
      provisioner,
      log,
      connect: (record) => this.launcher.connect(record),
      adopted: async (record, kernel) => {
        this.register(record, kernel, await specs.resolve(record.lang).catch(() => undefined), record.limits, record.owner, record.generation);
        this.memory.hold(record.id, record.limits.maxMemKB);
        // Not worth a live kernel: a hold the store missed is mended by the leader's reconcile.
        await this.slots.holdExisting(record.id).catch((error: Error) => log.warn('Could not hold the kernel slot', { kernelId: record.id, error: error.message }));
      },
      destroy: (record, reason) => this.destroy(record, reason),
    });
    this.attachments = new KernelAttachments({
      records: this.records,
      registry: this.registry,
      log,
      connect: (record) => this.launcher.connect(record),
      register: async (record, kernel) => {
        this.register(record, kernel, await specs.resolve(record.lang).catch(() => undefined), record.limits, record.owner, record.generation);
      },
      busy: (id) => this.lifecycle.busy(id),
      maxAttached: config.maxAttachedKernels,
      idleMs: config.attachIdleMs,
      clock,
    });
    this.cluster = new ClusterEvents(store, log, { event: (event) => this.onClusterEvent(event), gap: () => void this.resyncAll() });
    const sizes: Record<string, number> = { ...config.poolSizes };
    if (config.prespawnCount > 0) sizes[config.defaultKernelName] ??= config.prespawnCount;
    this.pool = new WarmPool(
      sizes,
      { launch: (lang) => this.launchPooled(lang), discard: (kernel) => this.launcher.discard(kernel).finally(() => this.memory.release(kernel.id)) },
      log,
      config.poolRefillDelayMs,
    );
  }

  /** Memory caps of live, starting and pooled kernels against POLYKERNEL_MEMORY_BUDGET_KB. */
  get memory(): MemoryBudget {
    return this.admission.memory;
  }

  /** Adopts the kernels of an earlier run (retried in the background while the engine or store is away). */
  async start(): Promise<void> {
    await this.provisioner.start((id, containerId, reason) => this.onDeath(id, containerId, reason));
    await this.adoption.start(() => this.pool.fill());
    await this.cluster.start();
    // Off every request's path: idle attached kernels are let go, and what a lost event left is caught up.
    this.syncTimer = setInterval(() => {
      this.attachments.sweep();
      void this.resyncAll();
    }, this.config.clusterSyncMs);
    this.syncTimer.unref();
  }

  resolveLimits(requested?: RequestedLimits): ResourceLimits {
    return this.admission.resolveLimits(requested);
  }

  async create(request: CreateKernelRequest): Promise<CreateKernelResult> {
    this.adoption.assertDone();
    const spec = await this.admission.resolveSpec(request.lang);
    const limits = this.admission.resolveLimits(request.limits);
    // A pooled kernel cannot take another environment or work directory: those need a cold start.
    const coldOnly = (request.env && Object.keys(request.env).length > 0) || request.workDir !== undefined;
    const warm = coldOnly ? undefined : this.pool.take(spec.name);
    const id = warm?.id ?? randomUUID();
    const token = request.clientSessionToken;
    try {
      if (token !== undefined) {
        const claim = { kernelId: id, lang: spec.name };
        const existing = await this.records.claimToken(request.owner, token, claim, (kernelId) => this.registry.startOf(kernelId));
        if (existing) {
          if (warm) this.pool.giveBack(warm);
          return { record: existing, created: false };
        }
      }
      await this.admission.admit(id, limits.maxMemKB);
    } catch (error) {
      if (warm) this.pool.giveBack(warm);
      if (token !== undefined && !(error instanceof DomainError && error.code === 'conflict')) {
        await this.records.releaseClaim(request.owner, token, id);
      }
      throw error;
    }
    const started = this.startKernel(id, spec, limits, request, warm).finally(async () => {
      // A warm kernel that went back to its pool (not destroyed) keeps its pool cap.
      const keptKB = warm && !this.registry.wasRemoved(id) ? warm.memoryBytes / 1024 : undefined;
      const ready = this.registry.has(id);
      this.admission.startEnded(id, { ready, keptKB });
      // A start that failed before it had a record to destroy (the store refused it) frees its token here,
      // or other replicas would wait for the kernel until the claim lapses.
      if (!ready && token !== undefined) await this.records.releaseClaim(request.owner, token, id).catch(() => undefined);
    });
    this.registry.trackStart(id, started);
    return { record: await started, created: true };
  }

  private async startKernel(
    id: string,
    spec: KernelSpecEntry,
    limits: ResourceLimits,
    request: CreateKernelRequest,
    warm: LaunchedKernel | undefined,
  ): Promise<KernelRecord> {
    const now = this.clock();
    const placement = warm ?? { runtime: this.launcher.runtimeFor(spec.name), containerId: '', connDir: '', key: newKernelKey() };
    const { runtime, containerId, connDir, key } = placement;
    const record = newKernelRecord({ id, lang: spec.name, image: spec.image, runtime, containerId, connDir, key, node: warm?.node }, limits, request, now);
    try {
      await this.records.put(record);
    } catch (error) {
      // Store unreachable (503): the warm kernel goes back to its pool instead of leaking.
      if (warm) this.pool.giveBack(warm);
      throw error;
    }
    try {
      const memoryBytes = limits.maxMemKB * 1024;
      const launched =
        (warm && (await this.launcher.fitWarm(warm, memoryBytes))) ??
        (await this.launcher.launch({ id, lang: spec.name, image: spec.image, runtime, key, memoryBytes, env: request.env ?? {}, workDir: request.workDir }));
      const ready = { containerId: launched.containerId, connDir: launched.connDir, node: launched.node, key: launched.key, state: launched.kernel.state, lastActivity: this.clock() };
      Object.assign(record, ready);
      this.register(record, launched.kernel, spec, limits, request.owner);
      // Its slot is held from now on (or, lapsed meanwhile and taken by another, the start fails: 402).
      await this.slots.hold(id);
      await this.records.update(id, ready);
      this.log.info('Kernel ready', { kernelId: id, lang: spec.name, warm: launched === warm, ms: this.clock() - now });
      return record;
    } catch (error) {
      await this.destroy(record, 'failed to start');
      if (error instanceof DomainError) throw error;
      throw kernelFailed(`the ${spec.name} kernel failed to start: ${(error as Error).message}`);
    }
  }

  private register(
    ref: KernelRef,
    kernel: LiveKernel,
    spec: KernelSpecEntry | undefined,
    limits: ResourceLimits,
    owner: string | undefined,
    generation = 0,
  ): void {
    const placed: KernelRef = { id: ref.id, lang: ref.lang, key: ref.key, containerId: ref.containerId, connDir: ref.connDir, runtime: ref.runtime, node: ref.node };
    const handle = new ProvisionedKernelHandle(kernel, placed, spec, limits, owner, this.provisioner, (id, reason) => this.delete(id, reason));
    handle.generation = generation;
    this.registry.add(handle);
  }

  /** A kernel for the warm pool: its own id, directory and key, the default limits. */
  private async launchPooled(lang: string): Promise<LaunchedKernel> {
    const spec = await this.admission.resolveSpec(lang);
    const id = randomUUID();
    const maxMemKB = this.config.defaultMaxMemKB;
    this.memory.reserve(id, maxMemKB);
    const request = { id, lang: spec.name, image: spec.image, runtime: this.launcher.runtimeFor(spec.name), key: newKernelKey() };
    return this.launcher.launch({ ...request, memoryBytes: maxMemKB * 1024, env: {}, pooled: true }).catch((error: Error) => {
      this.memory.release(id);
      throw error;
    });
  }

  /** The stored record with the live figures of this process merged in; 404 when unknown. */
  async get(id: string): Promise<KernelRecord> {
    await this.registry.startOf(id);
    const record = await this.records.get(id);
    // Read anyway: what it says of a kernel held here may show an event this process missed.
    this.reconcile(id, record);
    if (!record) throw unknownKernel(id, this.registry.removalReason(id));
    return this.registry.withLiveFigures(record);
  }

  async list(): Promise<KernelRecord[]> {
    return (await this.records.list()).map((record) => this.registry.withLiveFigures(record));
  }

  /** The kernel as a request uses it, resolved once per request; 404 when unknown, 503 before adoption. */
  async handle(id: string): Promise<KernelHandle> {
    if (this.registry.has(id)) this.attachments.touch(id);
    // A kernel this replica removed is gone for every replica: the 404 below, never an attach to a kernel
    // dying under a delete whose record is not yet gone (that attach would fail with a 503).
    else if (!this.registry.isStarting(id) && !this.registry.wasRemoved(id)) {
      this.adoption.assertDone();
      // Another replica's kernel: attached on its first request here (a gone or dead one stays the 404 below).
      await this.attachments.attach(id);
    }
    return this.registry.resolve(id);
  }

  /** Live kernels of this process, for the usage sampler, the culler and the Jupyter kernel list. */
  handles(): KernelHandle[] {
    return this.registry.handles();
  }

  liveKernels(): LiveKernel[] {
    return this.registry.kernels();
  }

  /** Why a kernel that was removed went away, if it went recently. */
  removalReason(id: string): string | undefined {
    return this.registry.removalReason(id);
  }

  /** Whose a recently removed kernel was (undefined owner: no tenant's), if it went recently. */
  removedKernel(id: string): { owner?: string } | undefined {
    return this.registry.removedKernel(id);
  }

  /** Removes a kernel; one being restarted is removed once its restart has ended. */
  delete(id: string, reason = 'deleted'): Promise<void> {
    return this.lifecycle.run(id, async () => this.destroy(await this.get(id), reason));
  }

  interrupt(id: string): Promise<void> {
    return this.lifecycle.run(id, async () => {
      const record = await this.get(id);
      await this.handle(id);
      this.emit('interrupting', id);
      await this.provisioner.interrupt(record);
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
   * Client messages wait (`hold`) until the new kernel has bound its sockets and is sealed, so client code
   * never runs while the kernel can write what the service reads (see the provisioner's restart).
   */
  private async restartNow(id: string): Promise<KernelRecord> {
    const record = await this.get(id);
    const { kernel } = await this.handle(id);
    // An unreachable engine is a 503 that leaves the kernel as it was, not a failed restart that destroys it.
    if (!(await this.provisioner.ping())) throw unavailable('the Docker engine is unreachable (restart container); try again shortly');
    const generation = (record.generation ?? 0) + 1;
    kernel.setState('restarting');
    kernel.hold();
    this.emit('state', id, 'restarting');
    // The other replicas holding the kernel hold their clients' messages too until the new one is sealed.
    await this.cluster.publish({ kind: 'restarting', kernelId: id, generation });
    try {
      await this.launcher.restart(kernel, record, record.limits.maxMemKB * 1024);
    } catch (error) {
      await this.destroy(record, 'failed to restart');
      throw kernelFailed(`kernel ${id} failed to restart: ${(error as Error).message}`);
    } finally {
      kernel.release();
    }
    const patch: Partial<KernelRecord> = { state: kernel.state, lastActivity: this.clock(), cpuCreditBaseMs: record.cpuCreditUsedMs, generation };
    const held = this.registry.peek(id);
    if (held) held.generation = generation;
    await this.records.update(id, patch);
    await this.cluster.publish({ kind: 'restarted', kernelId: id, generation });
    this.emit('state', id, kernel.state);
    return { ...record, ...patch };
  }

  async setConnections(id: string, connections: number): Promise<void> {
    await this.records.update(id, { connections });
  }

  /**
   * Releases everything a kernel holds: its connection, container, socket directory, record and token.
   * Safe to call more than once and on a half-created kernel. The kernel is unreachable when this resolves;
   * its container goes in the background (awaited by `settled()` and on shutdown).
   */
  /** `record`: the stored record, or what the process knows of a kernel whose record the store lost. */
  private async destroy(record: RemovableKernel, reason: string): Promise<void> {
    const handle = this.registry.take(record.id);
    this.attachments.forget(record.id);
    handle?.kernel.close();
    this.restarter.forget(record.id);
    this.registry.remember(record, reason);
    this.memory.release(record.id);
    await this.provisioner.remove(record);
    await this.records.delete(record);
    // After the record: a slot held without a record is what the leader's reconcile releases.
    await this.slots.release(record.id).catch((error: Error) => this.log.warn('Could not release the kernel slot', { kernelId: record.id, error: error.message }));
    await this.cluster.publish({ kind: 'deleted', kernelId: record.id, generation: handle?.generation ?? 0, reason });
    if (handle) {
      this.emit('state', record.id, 'dead');
      this.emit('removed', record.id, reason);
    }
    this.log.info('Kernel removed', { kernelId: record.id, reason });
  }

  private onDeath(id: string | undefined, containerId: string, reason: DeathReason): void {
    if (this.stopped || this.launcher.startDied(containerId, reason)) return;
    const handle = id ? this.registry.peek(id) : undefined;
    if (id && handle) {
      void this.cluster.publish({ kind: 'died', kernelId: id, generation: handle.generation, containerId, reason });
      this.reactToDeath(handle, containerId, reason);
    } else if (!(id && this.adoption.diedWhileAdopted(id, reason)) && !this.pool.forget(containerId) && id) {
      void this.deathOfUnheld(id, containerId, reason).catch((error: Error) =>
        this.log.warn('Could not handle the death of a kernel of another replica', { kernelId: id, error: error.message }),
      );
    }
  }

  /** Once per container and generation, however many times (provisioner, other replicas) it is told. */
  private reactToDeath(handle: ProvisionedKernelHandle, containerId: string, reason: DeathReason): void {
    if (handle.placement.containerId !== containerId) return;
    const key = `${containerId}:${handle.generation}`;
    if (this.deathsSeen.has(key)) return;
    this.deathsSeen.add(key);
    if (this.deathsSeen.size > DEATHS_REMEMBERED) this.deathsSeen.delete(this.deathsSeen.values().next().value!);
    this.restarter.onDeath(handle.id, containerId, reason);
  }

  /**
   * The provisioner told this process of the death of a kernel it does not hold (another replica's):
   * the others are told, and this one acts as they do, so that the death is handled even when the
   * replica holding it never hears of it from its own provisioner.
   */
  private async deathOfUnheld(id: string, containerId: string, reason: DeathReason): Promise<void> {
    const record = await this.records.get(id);
    if (!record || record.containerId !== containerId || record.state === 'dead') return;
    await this.cluster.publish({ kind: 'died', kernelId: id, generation: record.generation ?? 0, containerId, reason });
    // The restart needs a connection to the kernel; the container is dead, so no answer is waited for.
    if (this.config.restartDeadKernels) await this.attachments.attach(id, { probe: false });
    const handle = this.registry.peek(id);
    if (handle) this.reactToDeath(handle, containerId, reason);
    else this.restarter.onDeath(id, containerId, reason);
  }

  /**
   * A restart after a death, which every replica holding the kernel reacts to: the one that claims the
   * kernel's generation in the store restarts it; the others hold their clients' messages until its
   * "restarted" event (or the record) tells them the new generation.
   */
  private restartAfterDeath(id: string): Promise<unknown> {
    return this.lifecycle.run(id, async () => {
      const handle = this.registry.peek(id);
      if (!handle) return;
      const generation = handle.generation;
      const record = await this.records.get(id);
      if (!record || (record.generation ?? 0) !== generation) return this.reconcileNow(id, record);
      const claim = `${id}:${generation}`;
      if (!(await this.store.putIfAbsent('kernel-claims', claim, { at: this.clock() }))) {
        this.holdForRestartElsewhere(handle);
        return;
      }
      try {
        await this.restartNow(id);
      } finally {
        await this.store.delete('kernel-claims', claim).catch(() => false);
      }
    });
  }

  /** Another replica restarts the kernel: clients' messages wait, as for a restart made here. */
  private holdForRestartElsewhere(handle: ProvisionedKernelHandle): void {
    const { kernel } = handle;
    if (kernel.state === 'dead') return;
    if (kernel.state !== 'restarting') {
      kernel.setState('restarting');
      this.emit('state', handle.id, 'restarting');
    }
    kernel.hold();
    // The "restarted" event may be lost: the record tells once a restart has had its time.
    const check = setTimeout(() => void this.resync(handle.id), this.config.startTimeoutMs + this.config.clusterSyncMs);
    check.unref();
  }

  private onClusterEvent(event: KernelEvent): void {
    if (this.stopped) return;
    const handle = this.registry.peek(event.kernelId);
    if (!handle) return;
    switch (event.kind) {
      case 'deleted':
        this.dropRemoved(event.kernelId, event.reason ?? 'deleted');
        return;
      case 'restarting':
        if (event.generation > handle.generation && !this.lifecycle.busy(event.kernelId)) this.holdForRestartElsewhere(handle);
        return;
      case 'restarted':
        if (event.generation > handle.generation) void this.resync(event.kernelId);
        return;
      case 'died':
        if (event.containerId && event.generation === handle.generation) this.reactToDeath(handle, event.containerId, (event.reason ?? 'killed') as DeathReason);
    }
  }

  /**
   * Another replica removed the kernel (its container and record are gone): this process lets go of it as
   * its own delete does, so its runs end and its clients hear why.
   */
  private dropRemoved(id: string, reason: string): void {
    const handle = this.registry.take(id);
    if (!handle) return;
    const attached = this.attachments.has(id);
    this.attachments.forget(id);
    handle.kernel.close();
    this.restarter.forget(id);
    this.registry.remember({ id, owner: handle.owner }, reason);
    if (!attached) this.memory.release(id);
    this.emit('state', id, 'dead');
    this.emit('removed', id, reason);
    this.log.info('Kernel removed by another replica', { kernelId: id, reason });
  }

  /** Compares what the store says of a kernel held here with what this process holds (off the hot path). */
  private reconcile(id: string, record: KernelRecord | undefined): void {
    const handle = this.registry.peek(id);
    if (!handle || this.registry.isStarting(id) || this.lifecycle.busy(id)) return;
    if (!record || (record.generation ?? 0) > handle.generation || record.state === 'dead') void this.resync(id);
  }

  private resync(id: string): Promise<void> {
    return this.lifecycle.run(id, async () => this.reconcileNow(id, await this.records.get(id))).catch((error: Error) =>
      this.log.debug('Could not re-check a kernel against its record', { kernelId: id, error: error.message }),
    );
  }

  /** Runs inside the kernel's lifecycle mutex. */
  private async reconcileNow(id: string, record: KernelRecord | undefined): Promise<void> {
    const handle = this.registry.peek(id);
    if (!handle || this.stopped) return;
    if (!record) {
      if (this.attachments.has(id)) return this.dropRemoved(id, this.registry.removalReason(id) ?? 'deleted');
      // A kernel of this process whose record is gone: deleted elsewhere, or lost by the store. Either
      // way it goes by the one destroy path, or its container would outlive every record of it.
      return this.destroy({ ...handle.placement, owner: handle.owner }, 'deleted');
    }
    // The record names another container, or says the kernel died: this process's transport is to
    // nothing anyone serves. It lets go; the container the record names is not this one's to remove.
    if (record.state === 'dead' || record.containerId !== handle.placement.containerId) return this.dropRemoved(id, 'died');
    const generation = record.generation ?? 0;
    if (generation > handle.generation) {
      // Restarted by another replica: the old process's transport and pending requests go, as after a
      // restart made here; clients' messages wait until the new process answers.
      const { kernel } = handle;
      kernel.hold();
      try {
        if (kernel.state !== 'restarting') {
          kernel.setState('restarting');
          this.emit('state', id, 'restarting');
        }
        kernel.reconnect();
        kernel.setState('starting');
        await kernel.waitReady(this.config.startTimeoutMs);
        handle.generation = generation;
      } catch (error) {
        this.log.warn('Kernel restarted by another replica does not answer', { kernelId: id, error: (error as Error).message });
        if (this.attachments.has(id)) this.attachments.detach(id);
      } finally {
        kernel.release();
      }
      this.emit('state', id, kernel.state);
    } else if (handle.kernel.state === 'restarting') {
      // Held for a restart elsewhere that did not happen (that replica failed): as it was.
      handle.kernel.setState('idle');
      handle.kernel.release();
      this.emit('state', id, handle.kernel.state);
    }
  }

  /** Re-reads the record of every kernel held here: after a gap in the events, and periodically. */
  private async resyncAll(): Promise<void> {
    await Promise.all(
      this.registry.handles().map(async ({ id }) => {
        if (this.registry.isStarting(id) || this.lifecycle.busy(id)) return;
        const record = await this.records.get(id).catch(() => 'unreachable' as const);
        if (record !== 'unreachable') this.reconcile(id, record);
      }),
    );
  }

  /** Resolves when every container removal started so far has finished. */
  settled(): Promise<void> {
    return this.provisioner.settled();
  }

  /** On shutdown of the service: keep kernels for re-adoption, or remove them all. */
  async stop(keepKernels: boolean): Promise<void> {
    this.stopped = true;
    clearInterval(this.syncTimer);
    this.cluster.stop();
    // Other replicas' kernels: this process only lets go of its connections to them.
    for (const id of this.attachments.ids()) this.attachments.detach(id);
    this.adoption.stop();
    this.provisioner.stop();
    await this.pool.drain();
    await this.registry.startsSettled();
    if (keepKernels) {
      await this.settled();
      for (const { kernel } of this.registry.handles()) {
        // The next service adopts a busy kernel as busy.
        const { lastActivity, numQueriesExecuted, state } = kernel;
        await this.records.update(kernel.id, { lastActivity, numQueriesExecuted, state }).catch(() => false);
        kernel.connection.close();
        this.registry.take(kernel.id);
      }
      return;
    }
    const records = new Map((await this.records.list().catch(() => [])).map((record) => [record.id, record]));
    await Promise.allSettled(
      // A kernel whose record the store lost (a Redis that failed over, or is down now) is still this
      // process's: it goes too, or its container and connection would outlive the service.
      this.registry.handles().map(({ id, owner, placement }) => this.destroy(records.get(id) ?? { ...placement, owner }, 'service shut down')),
    );
    await this.settled();
    // Empty now, unless a removal failed: then the next start's reaper finds what is left.
    await this.provisioner.removeState();
  }
}
/** What removing a kernel needs: where it is, whose it is, the token it holds. */
/** Deaths remembered so that one told twice (provisioner, another replica) is handled once. */
const DEATHS_REMEMBERED = 1000;
type RemovableKernel = Pick<KernelRecord, 'id' | 'owner' | 'containerId' | 'connDir' | 'node' | 'clientSessionToken'>;


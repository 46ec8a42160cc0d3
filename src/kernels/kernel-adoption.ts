/**
 * After a restart of the service: the kernels the store knows whose containers still run are adopted
 * (connected, waited for, sealed); every other leftover of this instance is removed. When the engine or
 * the store cannot be reached at start, the service starts anyway and adoption is retried in the
 * background; until it succeeds, creates and live operations answer 503, because a new kernel's
 * container could be taken for a leftover by the adoption still to come.
 */
import { DomainError, unavailable } from '../errors.js';
import type { Logger } from '../logger.js';
import type { KernelRecord } from './kernel-record.js';
import type { KernelRecords } from './kernel-records.js';
import type { KernelRegistry } from './kernel-registry.js';
import type { LiveKernel } from './live-kernel.js';
import type { KernelProvisioner } from './provisioner.js';

const RETRY_MS = 2000;
/** How long an adopted kernel may take to answer on control. */
const ADOPT_TIMEOUT_MS = 5000;

export interface AdoptionDeps {
  records: KernelRecords;
  registry: KernelRegistry;
  provisioner: KernelProvisioner;
  log: Logger;
  connect(record: KernelRecord): LiveKernel;
  /** Registers an adopted kernel (its handle, its memory). */
  adopted(record: KernelRecord, kernel: LiveKernel): Promise<void>;
  destroy(record: KernelRecord, reason: string): Promise<void>;
}

export class KernelAdoption {
  /** Why the kernels of an earlier run are not adopted yet; undefined once they are. */
  private pendingBecause?: string;
  private retryTimer?: NodeJS.Timeout;
  private stopped = false;
  /**
   * Kernels between their connection and their registration, with the death of their container if the
   * engine reported one meanwhile: such a death reaches no registered kernel, and is noted here instead.
   */
  private readonly adopting = new Map<string, { diedBecause?: string }>();

  constructor(private readonly deps: AdoptionDeps) {}

  /** Adopts now, or (engine or store unreachable) keeps retrying; `onDone` runs once adoption succeeded. */
  async start(onDone: () => void): Promise<void> {
    try {
      await this.adoptAll();
      onDone();
    } catch (error) {
      if (!(error instanceof DomainError && error.code === 'unavailable')) throw error;
      this.pendingBecause = error.message;
      this.deps.log.warn('Could not adopt the kernels of an earlier run yet; retrying in the background', { error: error.message });
      this.retry(onDone);
    }
  }

  /** Throws 503 while the kernels of an earlier run are not adopted. */
  assertDone(): void {
    if (this.pendingBecause) throw unavailable(`the kernels of an earlier run are not re-adopted yet: ${this.pendingBecause}`);
  }

  /** A container died whose kernel is being adopted: true when so, and the adoption will fail. */
  diedWhileAdopted(kernelId: string, reason: string): boolean {
    const adopting = this.adopting.get(kernelId);
    if (!adopting) return false;
    adopting.diedBecause = reason;
    return true;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
  }

  private retry(onDone: () => void): void {
    this.retryTimer = setTimeout(() => {
      this.adoptAll().then(
        () => {
          this.pendingBecause = undefined;
          this.deps.log.info('Adopted the kernels of an earlier run');
          if (!this.stopped) onDone();
        },
        (error: Error) => {
          this.pendingBecause = error.message;
          if (!this.stopped) this.retry(onDone);
        },
      );
    }, RETRY_MS);
    this.retryTimer.unref();
  }

  /** Idempotent, so that a retry after a partial failure adopts the rest. */
  private async adoptAll(): Promise<void> {
    const { records, registry, provisioner, log } = this.deps;
    const stored = await records.list();
    const found = await provisioner.list();
    const runningById = new Map(found.filter((k) => k.running).map((k) => [k.id, k.containerId] as const));
    const adopted = new Set<string>();
    // In parallel: each adoption waits for its kernel's answer.
    await Promise.all(
      stored.map(async (record) => {
        if (registry.has(record.id)) {
          adopted.add(record.containerId);
          return;
        }
        if (runningById.get(record.id) === record.containerId) {
          let kernel: LiveKernel | undefined;
          this.adopting.set(record.id, {});
          try {
            kernel = this.deps.connect(record);
            await this.adopt(record, kernel);
            adopted.add(record.containerId);
            return;
          } catch (error) {
            kernel?.close();
            registry.take(record.id);
            log.warn('Could not re-adopt kernel', { kernelId: record.id, error: (error as Error).message });
          } finally {
            this.adopting.delete(record.id);
          }
        }
        await this.deps.destroy(record, 'not running after a restart of the service');
      }),
    );
    // Containers first, then directories: once no leftover container runs, nothing writes in them.
    await provisioner.reap({ containers: adopted, kernels: (id) => registry.has(id) || registry.isStarting(id) });
  }

  private async adopt(record: KernelRecord, kernel: LiveKernel): Promise<void> {
    kernel.numQueriesExecuted = record.numQueriesExecuted;
    // The last service may have stopped between a start and its seal: clients wait until it is sealed.
    kernel.hold();
    try {
      // On control: a kernel busy with a long computation answers there at once, while on shell it would
      // answer only once the computation ends, and look dead meanwhile.
      await kernel.waitReady(ADOPT_TIMEOUT_MS, 250, 'control');
      await this.deps.provisioner.seal(record);
    } finally {
      kernel.release();
    }
    // As the last service left it until the shell tells: a kernel_info on shell is answered (busy, then
    // idle on iopub) once the computation in progress, if any, is over.
    kernel.setState(record.state === 'busy' ? 'busy' : 'idle');
    void kernel.send('shell', kernel.message('kernel_info_request', {})).catch(() => undefined);
    kernel.lastActivity = record.lastActivity;
    await this.deps.adopted(record, kernel);
    // Registered from here on, so a later death goes to the restarter; an earlier one was noted.
    const diedBecause = this.adopting.get(record.id)?.diedBecause;
    if (diedBecause) throw new Error(`its container died while it was adopted (${diedBecause})`);
    this.deps.log.info('Re-adopted kernel', { kernelId: record.id, containerId: record.containerId.slice(0, 12), state: kernel.state });
  }
}

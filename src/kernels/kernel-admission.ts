/**
 * Whether a kernel may be created, and with what: its spec, its limits against the server's caps, and
 * room for it under the host memory budget (this host's: one synchronous step) and under KG_MAX_KERNELS
 * (every replica's: an atomic claim in the store, kernel-slots.ts), so concurrent creates, on one replica
 * or several, cannot overshoot either bound.
 */
import type { Config } from '../config/index.js';
import { invalidInput, limitExceeded } from '../errors.js';
import type { ResourceLimits } from './kernel-record.js';
import type { KernelSlots } from './kernel-slots.js';
import type { KernelSpecEntry, KernelSpecRegistry } from './kernel-specs.js';
import { MemoryBudget } from './memory-budget.js';

/** Below this, no kernel of ours starts. */
const MIN_MEMORY_KB = 16384;

export type RequestedLimits = { maxMemKB?: number; timeoutMs?: number };

export type AdmissionConfig = Pick<
  Config,
  | 'defaultKernelName'
  | 'defaultMaxMemKB'
  | 'defaultTimeoutMs'
  | 'maxMemKBCap'
  | 'timeoutCapMs'
  | 'idleTimeoutMs'
  | 'maxCpuCreditMs'
  | 'maxKernels'
  | 'memoryBudgetKB'
>;

export class KernelAdmission {
  /** Memory caps of live, starting and pooled kernels against POLYKERNEL_MEMORY_BUDGET_KB. */
  readonly memory: MemoryBudget;

  constructor(
    private readonly config: AdmissionConfig,
    private readonly specs: KernelSpecRegistry,
    private readonly slots: KernelSlots,
  ) {
    this.memory = new MemoryBudget(config.memoryBudgetKB);
  }

  /** Checks a request's limits against the server's caps; fills in defaults. */
  resolveLimits(requested: RequestedLimits = {}): ResourceLimits {
    const maxMemKB = requested.maxMemKB ?? this.config.defaultMaxMemKB;
    const timeoutMs = requested.timeoutMs ?? this.config.defaultTimeoutMs;
    if (maxMemKB > this.config.maxMemKBCap) {
      throw limitExceeded(`resourceLimits.maxMem ${maxMemKB} KB exceeds this server's limit of ${this.config.maxMemKBCap} KB`);
    }
    if (maxMemKB < MIN_MEMORY_KB) throw invalidInput(`resourceLimits.maxMem must be at least ${MIN_MEMORY_KB} KB (16 MB)`);
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

  /** Takes room for a kernel about to start, or throws (nothing taken) when there is none. */
  async admit(id: string, maxMemKB: number): Promise<void> {
    // This host's memory first: a create it refuses costs no round trip to the store.
    this.memory.reserve(id, maxMemKB);
    try {
      await this.slots.take(id);
    } catch (error) {
      this.memory.release(id);
      throw error;
    }
  }

  /**
   * The start admitted for `id` ended: ready (its memory and slot stay held) or failed (its slot goes,
   * `keptKB` of memory stays, else none). A release the store misses is bounded by the slot's TTL.
   */
  startEnded(id: string, outcome: { ready: boolean; keptKB?: number }): void {
    if (outcome.ready) return;
    void this.slots.release(id).catch(() => undefined);
    if (outcome.keptKB !== undefined) this.memory.hold(id, outcome.keptKB);
    else this.memory.release(id);
  }
}

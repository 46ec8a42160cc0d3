/**
 * Whether a kernel may be created, and with what: its spec, its limits against the server's caps, and
 * room for it under KG_MAX_KERNELS and the host memory budget. Taking room is one synchronous step, so
 * concurrent creates cannot overshoot either bound.
 */
import type { Config } from '../config/index.js';
import { invalidInput, limitExceeded, tooManyKernels } from '../errors.js';
import type { ResourceLimits } from './kernel-record.js';
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
  /** Creates in flight, so that concurrent creates cannot overshoot KG_MAX_KERNELS. */
  private starting = 0;

  constructor(
    private readonly config: AdmissionConfig,
    private readonly specs: KernelSpecRegistry,
    private readonly liveCount: () => number,
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
  admit(id: string, maxMemKB: number): void {
    const max = this.config.maxKernels;
    if (max > 0 && this.liveCount() + this.starting >= max) {
      throw tooManyKernels(`the kernel limit (KG_MAX_KERNELS=${max}) is reached; delete a kernel first`);
    }
    this.memory.reserve(id, maxMemKB);
    this.starting++;
  }

  /** The start admitted for `id` ended: ready (its memory stays held) or failed (`keptKB` stays, else none). */
  startEnded(id: string, outcome: { ready: boolean; keptKB?: number }): void {
    this.starting--;
    if (outcome.ready) return;
    if (outcome.keptKB !== undefined) this.memory.hold(id, outcome.keptKB);
    else this.memory.release(id);
  }
}

/**
 * A key's resource policy applied to kernel creation, as Backend.AI's keypair resource policies do
 * (max concurrent sessions, total resource slots): kernels at once, the sum of their memory caps, and
 * the CPU time its live kernels used. A create that would pass a limit is refused (402, like
 * KG_MAX_KERNELS) with the limit it hit.
 *
 * The check is atomic per key within the service: the checks of one key run one at a time, and a
 * create that passed is counted as "in flight" until the kernel manager answers, so a burst of parallel
 * creates never overshoots. The kernel's record is counted from the store once it is no longer
 * `starting`, so a kernel is never missed between the two.
 */
import { tooManyKernels } from '../errors.js';
import type { CreateKernelRequest, CreateKernelResult, KernelManager } from '../kernels/kernel-manager.js';
import type { KernelRecord } from '../kernels/kernel-record.js';
import type { ApiKey } from './api-keys.js';

type QuotaKernels = Pick<KernelManager, 'list' | 'create' | 'resolveLimits'>;

interface InFlight {
  count: number;
  memKB: number;
}

export class KernelQuota {
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly inFlight = new Map<string, InFlight>();

  constructor(private readonly kernels: QuotaKernels) {}

  /** Creates a kernel owned by `key` if its policy allows one more. */
  async create(key: ApiKey, request: CreateKernelRequest): Promise<CreateKernelResult> {
    const memKB = this.kernels.resolveLimits(request.limits).maxMemKB;
    await this.serial(key.id, () => this.admit(key, request, memKB));
    try {
      return await this.kernels.create({ ...request, owner: key.id });
    } finally {
      const flight = this.inFlight.get(key.id)!;
      flight.count--;
      flight.memKB -= memKB;
      if (flight.count === 0) this.inFlight.delete(key.id);
    }
  }

  private async admit(key: ApiKey, request: CreateKernelRequest, memKB: number): Promise<void> {
    const { maxKernels, maxMemKB, maxCpuCreditMs } = key.policy;
    const flight = this.inFlight.get(key.id) ?? { count: 0, memKB: 0 };
    if (maxKernels > 0 || maxMemKB > 0 || maxCpuCreditMs > 0) {
      let owned = (await this.kernels.list()).filter((record) => record.owner === key.id && record.state !== 'dead');
      // A kernel still starting is counted by its create, which is in flight.
      const counted = owned.filter((record) => record.state !== 'starting');
      // REPL continuity: the kernel holding this token is either handed back or (if it died) replaced.
      const token = request.clientSessionToken;
      const holder = token === undefined ? undefined : counted.find((record) => record.clientSessionToken === token);
      owned = holder ? counted.filter((record) => record !== holder) : counted;
      const kernels = owned.length + flight.count + 1;
      if (maxKernels > 0 && kernels > maxKernels) {
        throw tooManyKernels(`key "${key.id}" may have ${maxKernels} kernel(s) at once; delete one first`);
      }
      const mem = sum(owned, (record) => record.limits.maxMemKB) + flight.memKB + memKB;
      if (maxMemKB > 0 && mem > maxMemKB) {
        throw tooManyKernels(
          `key "${key.id}" may use ${maxMemKB} KB of kernel memory in total; this kernel (${memKB} KB) would make ${mem} KB: ` +
            'ask for less (resourceLimits.maxMem) or delete a kernel first',
        );
      }
      const cpu = sum(counted, (record) => record.cpuCreditUsedMs);
      if (maxCpuCreditMs > 0 && cpu >= maxCpuCreditMs) {
        throw tooManyKernels(`key "${key.id}" has used its CPU credit (${cpu} of ${maxCpuCreditMs} ms across its kernels); delete a kernel first`);
      }
    }
    flight.count++;
    flight.memKB += memKB;
    this.inFlight.set(key.id, flight);
  }

  /** Runs `work` after every earlier one of the same key; the chain is dropped once it is idle. */
  private serial<T>(id: string, work: () => Promise<T>): Promise<T> {
    const before = this.chains.get(id) ?? Promise.resolve();
    const run = before.then(work, work);
    const tail = run.catch(() => undefined);
    this.chains.set(id, tail);
    void tail.then(() => {
      if (this.chains.get(id) === tail) this.chains.delete(id);
    });
    return run;
  }
}

function sum(records: KernelRecord[], of: (record: KernelRecord) => number): number {
  return records.reduce((total, record) => total + (of(record) || 0), 0);
}

/**
 * A kernel as a request uses it, resolved once per request (KernelManager.handle): its connection, what
 * it may use, and the operations runs need beside the kernel process. Runs (src/runs) see only this,
 * never a container or the engine.
 */
import type { LiveKernel } from './live-kernel.js';
import type { KernelSpecEntry } from './kernel-specs.js';
import type { ResourceLimits } from './kernel-record.js';
import type { CommandOutputListener, KernelCommand, KernelProvisioner, KernelRef, ResourceUsage } from './provisioner.js';

export type { CommandOutputListener, KernelCommand };

export interface KernelHandle {
  readonly id: string;
  /** Kernel name, e.g. python3. */
  readonly lang: string;
  /** The kernel's spec as its image says it (batch defaults); undefined when the image is gone. */
  readonly spec: KernelSpecEntry | undefined;
  readonly limits: ResourceLimits;
  /** The API key (tenant) that created it; undefined for the admin token and the open mode. */
  readonly owner: string | undefined;
  /** The kernel's messages: send, listen, request futures. */
  readonly kernel: LiveKernel;
  /** Runs a command beside the kernel in its container, by default as the kernel's user in its work directory. */
  exec(command: KernelCommand, onOutput: CommandOutputListener): Promise<{ exitCode: number }>;
  /** Processes of this kernel its memory cap killed so far; undefined when that cannot be seen. */
  oomKills(): Promise<number | undefined>;
  /** The count as of the kernel's last message received here, when its messages carry it (KernelProvisioner.oomKillsSeen). */
  oomKillsSeen?(): number | undefined;
  usage(): Promise<ResourceUsage | undefined>;
  /** Removes the kernel (a run past its time limit); resolves once it is unreachable. */
  remove(reason: string): Promise<void>;
}

/** The handle of a kernel placed by a provisioner. */
export class ProvisionedKernelHandle implements KernelHandle {
  /**
   * The kernel's restart generation this process's connection is made for (KernelRecord.generation): a
   * record or cluster event naming a later one means another replica restarted the kernel.
   */
  generation = 0;

  constructor(
    readonly kernel: LiveKernel,
    /**
     * Where the provisioner placed it: for the kernel layer only (runs see a KernelHandle, which has no
     * placement), e.g. to remove a kernel whose record the store lost.
     */
    readonly placement: KernelRef,
    readonly spec: KernelSpecEntry | undefined,
    readonly limits: ResourceLimits,
    readonly owner: string | undefined,
    private readonly provisioner: KernelProvisioner,
    private readonly removeKernel: (id: string, reason: string) => Promise<void>,
  ) {}

  get id(): string {
    return this.placement.id;
  }

  get lang(): string {
    return this.placement.lang;
  }

  exec(command: KernelCommand, onOutput: CommandOutputListener): Promise<{ exitCode: number }> {
    return this.provisioner.exec(this.placement, command, onOutput);
  }

  oomKills(): Promise<number | undefined> {
    return this.provisioner.oomKills(this.placement);
  }

  oomKillsSeen(): number | undefined {
    return this.provisioner.oomKillsSeen?.(this.placement);
  }

  usage(): Promise<ResourceUsage | undefined> {
    return this.provisioner.usage(this.placement);
  }

  remove(reason: string): Promise<void> {
    return this.removeKernel(this.placement.id, reason);
  }
}

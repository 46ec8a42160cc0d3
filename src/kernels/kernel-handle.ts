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
  usage(): Promise<ResourceUsage | undefined>;
  /** Removes the kernel (a run past its time limit); resolves once it is unreachable. */
  remove(reason: string): Promise<void>;
}

/** The handle of a kernel placed by a provisioner. */
export class ProvisionedKernelHandle implements KernelHandle {
  constructor(
    readonly kernel: LiveKernel,
    /** Where the provisioner placed it: never shown to runs. */
    private readonly ref: KernelRef,
    readonly spec: KernelSpecEntry | undefined,
    readonly limits: ResourceLimits,
    readonly owner: string | undefined,
    private readonly provisioner: KernelProvisioner,
    private readonly removeKernel: (id: string, reason: string) => Promise<void>,
  ) {}

  get id(): string {
    return this.ref.id;
  }

  get lang(): string {
    return this.ref.lang;
  }

  exec(command: KernelCommand, onOutput: CommandOutputListener): Promise<{ exitCode: number }> {
    return this.provisioner.exec(this.ref, command, onOutput);
  }

  oomKills(): Promise<number | undefined> {
    return this.provisioner.oomKills(this.ref);
  }

  usage(): Promise<ResourceUsage | undefined> {
    return this.provisioner.usage(this.ref);
  }

  remove(reason: string): Promise<void> {
    return this.removeKernel(this.ref.id, reason);
  }
}

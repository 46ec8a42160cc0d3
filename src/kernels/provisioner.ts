/**
 * The provisioner: everything about where a kernel runs. It launches a kernel's container, tells how to
 * connect to it, restarts, interrupts, measures, updates and removes it, runs commands beside it, and
 * lists what runs after a restart of the service (jupyter_client's KernelProvisioner, with our adoption
 * as its get/load_provisioner_info). The kernel layer above it never sees a container engine.
 *
 * Every call can cross a network: arguments and results are plain, serialisable values, and the only
 * paths in them are those the provisioner itself made (a kernel's socket directory). The Docker
 * provisioner (docker-provisioner.ts) is the first implementation; a node agent reached over the network
 * is meant to be the second.
 */
import type { Readable } from 'node:stream';
import type { DeathReason, ResourceUsage } from '../runtime/runtime.js';
import type { KernelTransport } from '../transport/kernel-transport.js';

export type { DeathReason, ResourceUsage };

/** What the provisioner needs to find a kernel again: a subset of its stored record. */
export interface KernelRef {
  id: string;
  /** Kernel name, e.g. python3. */
  lang: string;
  /** HMAC key of the kernel's connection. */
  key: string;
  containerId: string;
  /** The kernel's socket directory, made and owned by the provisioner. */
  connDir: string;
  /** OCI runtime (runc, runsc). */
  runtime: string;
  /** The node agent the kernel runs on (role gateway); absent when it runs on this host. */
  node?: string;
}

export interface LaunchRequest {
  id: string;
  lang: string;
  image: string;
  runtime: string;
  key: string;
  memoryBytes: number;
  env: Record<string, string>;
  /** Host directory to mount as the kernel's work directory (notebook executions). */
  workDir?: string;
  /** A warm-pool kernel: an earlier run's pooled kernels are never adopted. */
  pooled?: boolean;
}

/** A command run beside the kernel in its container: by default as the kernel's user, in its work directory. */
export interface KernelCommand {
  cmd: string[];
  /** Written to the command's stdin, which is then closed (a stream: as it comes). Absent: EOF at once. */
  stdin?: Buffer | string | Readable;
  /** Cuts the connection to the command (see ExecSpec.signal). */
  signal?: AbortSignal;
  env?: Record<string, string>;
  /** `root` is for the service's own checks, which read what the kernel must not. */
  as?: 'kernel' | 'root';
  /** Default: the kernel's work directory. */
  workingDir?: string;
}

/** A promise returned holds the command's output back until it settles (backpressure). */
export type CommandOutputListener = (stream: 'stdout' | 'stderr', chunk: Buffer) => void | Promise<void>;

/** A kernel the provisioner found running (or stopped) at start, for adoption. */
export interface FoundKernel {
  id: string;
  containerId: string;
  running: boolean;
}

/**
 * A kernel's container died without the provisioner causing it (a restart or removal it made is not
 * reported). `kernelId` is undefined for a container that carries none.
 */
export type KernelDeathListener = (kernelId: string | undefined, containerId: string, reason: DeathReason) => void;

export interface KernelProvisioner {
  /** Prepares this instance's state and starts reporting deaths. */
  start(onDeath: KernelDeathListener): Promise<void>;
  /**
   * Makes the kernel's socket directory and starts its container; resolves once the engine reports it
   * running. On failure, whatever was made is released before the error propagates.
   */
  launch(request: LaunchRequest): Promise<Pick<KernelRef, 'containerId' | 'connDir' | 'node'>>;
  /**
   * A new transport to the kernel's sockets (each caller gets its own; a kernel serves several at once).
   * `onBadFrame` hears of every message dropped because the kernel sent something it must not.
   */
  connect(ref: KernelRef, onBadFrame: (error: Error) => void): KernelTransport;
  /** The kernel answered: from now on it can no longer write anything the service reads or removes. */
  seal(ref: KernelRef): Promise<void>;
  /**
   * A fresh kernel process in the same container: every process of the old one is dead before anything
   * it could write is made anew. Resolves once the new process is started (not yet answering).
   */
  restart(ref: KernelRef): Promise<void>;
  /** SIGINT to the kernel process. */
  interrupt(ref: KernelRef): Promise<void>;
  /** New memory and CPU caps for a running kernel (a warm kernel handed out). */
  updateLimits(ref: KernelRef, limits: { memoryBytes: number }): Promise<void>;
  /** Runs a command beside the kernel; resolves with its exit code. Callers bound its time. */
  exec(ref: KernelRef, command: KernelCommand, onOutput: CommandOutputListener): Promise<{ exitCode: number }>;
  /** Memory and CPU of every process of the kernel's container, or undefined when they cannot be read. */
  usage(ref: KernelRef): Promise<ResourceUsage | undefined>;
  /** How many processes the memory cap killed so far; undefined when that cannot be seen. */
  oomKills(ref: KernelRef): Promise<number | undefined>;
  /**
   * The same count as it stood when the kernel's last message reached this process, for a provisioner
   * whose kernel messages carry it (a gateway: the node agent reads it as it relays each one), so that
   * a run ending on a kernel message needs no round trip for it. Undefined: ask oomKills.
   */
  oomKillsSeen?(ref: KernelRef): number | undefined;
  /** Whether the kernel's container still runs, and why it died if not; undefined when it is gone. */
  inspect(ref: Pick<KernelRef, 'containerId' | 'node'>): Promise<{ running: boolean; deathReason?: DeathReason } | undefined>;
  /**
   * Makes the kernel unreachable before it resolves (its socket directory is gone); the container goes in
   * the background, retried while the engine is unreachable, awaited by `settled`.
   */
  remove(ref: Pick<KernelRef, 'id' | 'containerId' | 'connDir' | 'node'>): Promise<void>;
  /** Resolves when every removal started so far has finished. */
  settled(): Promise<void>;
  /** The kernels of this instance the engine knows, running or not. */
  list(): Promise<FoundKernel[]>;
  /**
   * Removes every container and socket directory of this instance that `keep` does not claim (leftovers of
   * an earlier run). Containers first, so that nothing still writes in the directories removed after.
   */
  reap(keep: { containers: ReadonlySet<string>; kernels: (kernelId: string) => boolean }): Promise<void>;
  /** Whether the engine answers now. */
  ping(): Promise<boolean>;
  /** Stops reporting deaths and retrying removals: the service is shutting down. */
  stop(): void;
  /** Removes this instance's state once every kernel is gone (a failed removal leaves it to the next start's reap). */
  removeState(): Promise<void>;
}

/**
 * The container runtime as the kernel layer sees it. `docker.ts` is its one implementation (and the only
 * importer of dockerode); tests of pure kernel logic can stand a fake in for it.
 */
import type { Readable } from 'node:stream';

export const LABELS = {
  managed: 'org.polykernel.managed',
  /** Which service instance owns the container: several instances (or test runs) share one engine. */
  instance: 'org.polykernel.instance',
  kernelId: 'org.polykernel.kernel-id',
  lang: 'org.polykernel.lang',
  pool: 'org.polykernel.pool',
  /** A judge sandbox (src/judge): not a kernel; the kernel layer never lists, adopts or reaps it. */
  judge: 'org.polykernel.judge',
  // Image labels: what a language image says about itself (written by images/*/Dockerfile).
  kernelspec: 'org.polykernel.kernelspec',
  aliases: 'org.polykernel.aliases',
  resources: 'org.polykernel.resources',
  /** Batch mode's default commands (`"*"`): compile `main.<ext>` / run it. An empty build = no build step. */
  build: 'org.polykernel.build',
  exec: 'org.polykernel.exec',
  /** The extension of a source file of the language (".c"): batch mode and the judge call it main<ext>. */
  fileExtension: 'org.polykernel.file_extension',
  /**
   * What a judged run does where batch mode's commands do not fit (src/judge/languages.ts): the default
   * source file name when it is not main<ext> (java: Main.java, the class name), and compile / run lines
   * that take the main file's name or the memory limit from the environment.
   */
  judgeSource: 'org.polykernel.judge.source',
  judgeBuild: 'org.polykernel.judge.build',
  judgeExec: 'org.polykernel.judge.exec',
  /**
   * False ("false") on a kernel-only image: the judge (Judge0, Piston) does not offer its language, though
   * its kernel and batch mode work (images/python-data: python3 is the judged Python).
   */
  judgeEnabled: 'org.polykernel.judge.enabled',
  /**
   * What the image has installed that a program can use: a JSON array of {name, version} (Python entries
   * also name their `import` modules), made from the image itself when it is built (scripts/build-images.mjs).
   */
  packages: 'org.polykernel.packages',
  /** Written by scripts/build-images.mjs: a digest of the image's sources; a rebuilt image has a new one. */
  sourceHash: 'org.polykernel.source-hash',
} as const;

/** Where a kernel works and as whom: the same for the kernel process and for commands run beside it. */
export const CONTAINER_WORK_DIR = '/home/work';
/** The one definition of the kernels' user; the images create it (images/base/Dockerfile) and must agree. */
export const KERNEL_UID = 1000;
export const KERNEL_GID = 1000;
export const KERNEL_USER = `${KERNEL_UID}:${KERNEL_GID}`;

export interface KernelContainerSpec {
  kernelId: string;
  lang: string;
  image: string;
  /** Host directory bind-mounted at /conn: the connection file and the kernel's IPC sockets. */
  hostConnDir: string;
  memoryBytes: number;
  cpus: number;
  pidsLimit: number;
  workDirSizeMB: number;
  tmpSizeMB: number;
  /** OCI runtime name registered with the engine (runc, runsc). */
  runtime: string;
  env: Record<string, string>;
  /** Host directory to use as the work directory instead of a tmpfs (notebook executions). */
  workDirBind?: string;
  labels?: Record<string, string>;
}

/** A judge sandbox's container: its supervisor is the main process, reached over its stdin and stdout. */
export interface SandboxContainerSpec {
  image: string;
  /** OCI runtime name registered with the engine (runc, runsc). */
  runtime: string;
  /** The supervisor and its arguments. */
  cmd: string[];
  memoryBytes: number;
  pidsLimit: number;
  workDirSizeMB: number;
  tmpSizeMB: number;
  /** Owner of the work directory's tmpfs (mode 1777: the program may add files, never change the owner's). */
  workDirUid: number;
  workDirGid: number;
  labels?: Record<string, string>;
}

/** The attached standard streams of a running sandbox container. */
export interface SandboxConnection {
  containerId: string;
  /** Bytes to the main process's stdin; false when the caller should wait for `onDrain`. */
  write(data: Buffer): boolean;
  onDrain(listener: () => void): void;
  onStdout(listener: (chunk: Buffer) => void): void;
  onStderr(listener: (chunk: Buffer) => void): void;
  /** The streams ended (the main process exited, the container went, or the engine connection broke). */
  onEnd(listener: (error?: Error) => void): void;
  /** Closes the main process's stdin and the connection. */
  end(): void;
}

export interface SandboxRuntime {
  /** Creates a sandbox container, attaches to its streams, starts it. */
  startSandbox(spec: SandboxContainerSpec): Promise<SandboxConnection>;
  /** Every judge sandbox container of this service instance (by label), running or not. */
  listSandboxes(): Promise<string[]>;
  /** Removes a container, running or not; an already-gone container is not an error. */
  remove(containerId: string): Promise<void>;
}

export type DeathReason = 'out-of-memory' | 'killed' | `exit code ${number}`;

export interface ContainerState {
  containerId: string;
  labels: Record<string, string>;
  running: boolean;
  /** Main process PID on the host while running. */
  pid?: number;
  deathReason?: DeathReason;
}

export interface KernelImage {
  /** The image's reference, e.g. polykernel/python:latest. */
  image: string;
  labels: Record<string, string>;
}

export interface ResourceUsage {
  memoryBytes: number;
  cpuMs: number;
}

/** A command run beside the kernel in its container (batch mode's build, exec and clean steps, file transfers). */
export interface ExecSpec {
  cmd: string[];
  /**
   * Written to the command's stdin, which is then closed (a stream: piped as it comes, with backpressure,
   * and closed at its end). Absent: the command reads EOF at once.
   */
  stdin?: Buffer | string | Readable;
  user: string;
  workingDir: string;
  env?: Record<string, string>;
  /**
   * Aborting drops the connection to the command at once (its stdin and output are cut) and rejects with
   * the signal's reason; the command itself ends by its own bound (`timeout`) or when it next writes.
   */
  signal?: AbortSignal;
}

/** A promise returned holds the command's output back (no more is read) until it settles. */
export type ExecOutputListener = (stream: 'stdout' | 'stderr', chunk: Buffer) => void | Promise<void>;

export type DeathListener = (containerId: string, reason: DeathReason, labels: Record<string, string>) => void;

export interface ContainerRuntime {
  /** Creates and starts a kernel container; resolves with its id once the engine reports it running. */
  startKernel(spec: KernelContainerSpec): Promise<ContainerState>;
  /** Removes a container, running or not; an already-gone container is not an error. */
  remove(containerId: string): Promise<void>;
  /** Sends a signal to the container's main process (through its init, which forwards it). */
  signal(containerId: string, signal: string): Promise<void>;
  /**
   * Kills the container and resolves once it has stopped: every process in it is dead from then on
   * (an already stopped container is not an error).
   */
  stop(containerId: string): Promise<void>;
  /** Starts a stopped container again: a fresh kernel process, tmpfs contents gone, bind sources resolved anew. */
  start(containerId: string): Promise<ContainerState>;
  /** Applies new memory and CPU caps to a running container (warm pool hand-out). */
  updateLimits(containerId: string, limits: { memoryBytes: number; cpus: number }): Promise<void>;
  inspect(containerId: string): Promise<ContainerState | undefined>;
  /** Every container of this service instance (by label), running or not. */
  listManaged(): Promise<ContainerState[]>;
  /** Kernel images present on the engine (those carrying a kernelspec label). */
  listKernelImages(): Promise<KernelImage[]>;
  /** A regular file's bytes, read out of an image without running it; undefined when it has none. */
  readImageFile(image: string, filePath: string): Promise<Buffer | undefined>;
  /** Host PIDs of every process in the container (empty when they cannot be seen from here). */
  processIds(containerId: string): Promise<number[]>;
  /**
   * How many processes the container's memory cap killed so far (its cgroup's oom_kill); undefined when
   * that cannot be seen from here. Optional: a runtime without it reports only the OOM deaths of kernels.
   */
  oomKills?(containerId: string): Promise<number | undefined>;
  /** Memory and CPU as the engine reports them (the fallback when host PIDs are not visible). */
  engineUsage(containerId: string): Promise<ResourceUsage | undefined>;
  /**
   * Runs a command in a running container and resolves with its exit code once it ended, passing its
   * output on as it comes. There is no way to stop it from outside: callers bound it (`timeout` inside).
   */
  exec(containerId: string, spec: ExecSpec, onOutput: ExecOutputListener): Promise<{ exitCode: number }>;
  /** Container deaths as the engine reports them (events, not polling). */
  onDeath(listener: DeathListener): () => void;
  ping(): Promise<boolean>;
  close(): void;
}

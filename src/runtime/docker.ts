/**
 * The only importer of dockerode. Every Docker quirk is handled here:
 * - 404 on remove/inspect = already gone; 304 on stop = already stopped.
 * - Container deaths come from the events stream (die, oom), which is reopened when it breaks.
 * - Host PIDs of a container are read from its cgroup (v1 cgroupfs or v2), falling back to `top`.
 * - `docker cp` (putArchive) refuses a container with a read-only root fs even for a path on a tmpfs, so
 *   files reach a kernel's work directory through `exec` (the image's file helper, src/files/work-dir-files.ts).
 * - An exec's output stream can end a moment before the engine records its exit code.
 */
import { readFileSync } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import Docker from 'dockerode';
import { conflict, unavailable } from '../errors.js';
import { cgroupOomKills, cgroupProcessIds } from './cgroup-files.js';
import { demuxExecOutput } from './exec-demux.js';
import type { Logger } from '../logger.js';
import { CONTAINER_CONNECTION_DIR } from '../protocol/connection-file.js';
import { GVISOR_SECCOMP_PROFILE, gvisorHostPidsLimit, isGvisorRuntime, underGvisorFilter } from './gvisor.js';
import {
  CONTAINER_WORK_DIR,
  KERNEL_GID,
  KERNEL_UID,
  KERNEL_USER,
  LABELS,
  type ContainerRuntime,
  type ContainerState,
  type DeathListener,
  type DeathReason,
  type ExecOutputListener,
  type ExecSpec,
  type KernelContainerSpec,
  type KernelImage,
  type ResourceUsage,
  type SandboxConnection,
  type SandboxContainerSpec,
  type SandboxRuntime,
} from './runtime.js';

export { CONTAINER_WORK_DIR, KERNEL_USER };

/** A host process's parent PID (/proc/<pid>/stat, after the command name's closing parenthesis). */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return Number.isInteger(ppid) ? ppid : undefined;
  } catch {
    return undefined;
  }
}

function statusCode(error: unknown): number | undefined {
  return (error as { statusCode?: number }).statusCode;
}

function isEngineDown(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  // ECONNRESET/EPIPE: the engine (or the proxy in front of it) went away during the call.
  return code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'EACCES' || code === 'ECONNRESET' || code === 'EPIPE';
}

/**
 * dockerode options for POLYKERNEL_DOCKER_HOST (`unix:///path` or `tcp://host:port`); empty = dockerode's
 * own default (DOCKER_HOST, DOCKER_TLS_VERIFY…, else /var/run/docker.sock).
 */
export function dockerOptionsFor(host: string): Docker.DockerOptions {
  if (!host) return {};
  if (host.startsWith('unix://')) return { socketPath: host.slice('unix://'.length) };
  const url = new URL(host.replace(/^tcp:/, 'http:'));
  return { protocol: url.protocol === 'https:' ? 'https' : 'http', host: url.hostname, port: Number(url.port || 2375) };
}

/** How long a SIGKILL death waits for the engine's oom event of the same container. */
const OOM_AFTER_EXIT_MS = 300;
/** How long an oom event is remembered for a death that follows it. */
const OOM_EVENT_MEMORY_MS = 10_000;

function deathReasonOf(state: { OOMKilled?: boolean; ExitCode?: number }): DeathReason {
  if (state.OOMKilled) return 'out-of-memory';
  const code = state.ExitCode ?? 0;
  // 137 = 128 + SIGKILL: killed from outside (docker kill, the OOM killer without the flag set).
  return code === 137 ? 'killed' : `exit code ${code}`;
}

/** The first regular file of a tar archive (what the archive endpoint sends for one file). */
function firstFileOfTar(tar: Buffer): Buffer | undefined {
  for (let offset = 0; offset + 512 <= tar.length; ) {
    const header = tar.subarray(offset, offset + 512);
    if (header.every((byte) => byte === 0)) return undefined;
    const size = parseInt(header.subarray(124, 136).toString('ascii').replace(/\0.*$/s, '').trim() || '0', 8);
    const type = header[156];
    const start = offset + 512;
    // '0' or NUL: a regular file. Anything else (PAX headers, links, directories) is skipped.
    if (type === 0x30 || type === 0) return Buffer.from(tar.subarray(start, start + size));
    offset = start + Math.ceil(size / 512) * 512;
  }
  return undefined;
}

/** What a hardened container needs besides its own mounts: the same for kernels and judge sandboxes. */
interface Hardening {
  runtime: string;
  memoryBytes: number;
  pidsLimit: number;
  /** Size of /dev/shm (scratch space like /tmp). */
  tmpSizeMB: number;
  tmpfs: Record<string, string>;
  /** Capabilities kept (everything else is dropped). */
  capAdd?: string[];
  /** Syscalls denied beyond the runtime's profile (gVisor only: under runc Docker's default applies). */
  gvisorDenied?: string[];
}

function gvisorProfile(denied: string[] = []): typeof GVISOR_SECCOMP_PROFILE {
  if (!denied.length) return GVISOR_SECCOMP_PROFILE;
  return { ...GVISOR_SECCOMP_PROFILE, syscalls: [...GVISOR_SECCOMP_PROFILE.syscalls, { names: denied, action: 'SCMP_ACT_ERRNO' }] };
}

function hardenedHostConfig(spec: Hardening): Docker.HostConfig {
  const gvisor = isGvisorRuntime(spec.runtime);
  return {
    NetworkMode: 'none',
    Tmpfs: spec.tmpfs,
    ReadonlyRootfs: true,
    CapDrop: ['ALL'],
    ...(spec.capAdd?.length ? { CapAdd: spec.capAdd } : {}),
    // Under runc Docker's default seccomp profile applies; gVisor needs its own (see gvisor.ts).
    SecurityOpt: gvisor
      ? ['no-new-privileges', `seccomp=${JSON.stringify(gvisorProfile(spec.gvisorDenied))}`]
      : ['no-new-privileges'],
    // gVisor: the sandbox counts the processes itself (nproc below; see gvisor.ts).
    PidsLimit: gvisor ? gvisorHostPidsLimit(spec.pidsLimit) : spec.pidsLimit,
    Memory: spec.memoryBytes,
    // Swap equal to memory = no swap at all: the cap is a real cap.
    MemorySwap: spec.memoryBytes,
    // An init as PID 1 reaps zombies and forwards signals to the main process.
    Init: true,
    Runtime: spec.runtime,
    IpcMode: 'private',
    // /dev/shm (POSIX semaphores and shared memory, e.g. Python's multiprocessing) is scratch space
    // like /tmp: the same cap, instead of Docker's 64 MB default.
    ShmSize: spec.tmpSizeMB * 1024 * 1024,
    Ulimits: [
      { Name: 'core', Soft: 0, Hard: 0 },
      ...(gvisor ? [{ Name: 'nproc', Soft: spec.pidsLimit, Hard: spec.pidsLimit }] : []),
    ],
    // The main process's stdout/stderr is the stranger's to write (a kernel's), or the supervisor's
    // protocol (a judge sandbox, read through attach): with the engine's default json-file driver and no
    // cap it fills the host's disk. No log at all: the service never reads it.
    LogConfig: { Type: 'none', Config: {} },
  };
}

/** A hijacked attach: the container's stdin to write, its multiplexed stdout and stderr to read. */
type AttachStream = NodeJS.ReadWriteStream & { destroy?: (error?: Error) => void; end(): void };

/** How long the engine may take to start a judge sandbox before the start counts as failed. */
const SANDBOX_START_TIMEOUT_MS = 60_000;

/** `promise`, or a rejection once `ms` have passed. */
function withDeadline<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

export class DockerRuntime implements ContainerRuntime, SandboxRuntime {
  private readonly docker: Docker;
  private readonly deathListeners = new Set<DeathListener>();
  private eventStream?: NodeJS.ReadableStream;
  /** When the events stream last broke (unix seconds): the reopened stream replays deaths since then. */
  private eventsBrokeAt?: number;
  private eventsDown = false;
  private closed = false;
  /** OCI runtime of each kernel container this process started or asked about (see exec). */
  private readonly runtimes = new Map<string, string>();
  /** When each container last had an OOM kill (the engine's oom event), kept briefly; see handleEvent. */
  private readonly oomEvents = new Map<string, number>();
  private readonly oomWaiters = new Map<string, () => void>();

  constructor(
    private readonly log: Logger,
    private readonly instance: string,
    options: Docker.DockerOptions = {},
    /** Labels of the operator's on every container (POLYKERNEL_CONTAINER_LABELS); the service's own win. */
    private readonly extraLabels: Record<string, string> = {},
  ) {
    this.docker = new Docker(options);
  }

  /** Engine calls go through here so that an unreachable engine is a clear 503, not a stack trace. */
  private async call<T>(what: string, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      if (isEngineDown(error)) throw unavailable(`the Docker engine is unreachable (${what}); try again shortly`);
      throw error;
    }
  }

  async startKernel(spec: KernelContainerSpec): Promise<ContainerState> {
    const tmpfs: Record<string, string> = {
      '/tmp': `rw,nosuid,nodev,size=${spec.tmpSizeMB}m,mode=1777`,
    };
    const binds = [`${spec.hostConnDir}:${CONTAINER_CONNECTION_DIR}`];
    if (spec.workDirBind) binds.push(`${spec.workDirBind}:${CONTAINER_WORK_DIR}`);
    // exec: compiled languages build and run their programs in the work directory.
    else tmpfs[CONTAINER_WORK_DIR] = `rw,exec,nosuid,nodev,size=${spec.workDirSizeMB}m,uid=${KERNEL_UID},gid=${KERNEL_GID},mode=0755`;
    const labels = {
      ...this.extraLabels,
      ...spec.labels,
      [LABELS.managed]: 'true',
      [LABELS.instance]: this.instance,
      [LABELS.kernelId]: spec.kernelId,
      [LABELS.lang]: spec.lang,
    };
    this.log.debug('Starting kernel container', { kernelId: spec.kernelId, image: spec.image });
    const container = await this.call('create container', () =>
      this.docker.createContainer({
        name: `polykernel-${spec.kernelId}`,
        Image: spec.image,
        Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
        Labels: labels,
        User: KERNEL_USER,
        WorkingDir: CONTAINER_WORK_DIR,
        NetworkDisabled: true,
        StopTimeout: 1,
        HostConfig: {
          ...hardenedHostConfig({
            runtime: spec.runtime,
            memoryBytes: spec.memoryBytes,
            pidsLimit: spec.pidsLimit,
            tmpSizeMB: spec.tmpSizeMB,
            tmpfs,
          }),
          Binds: binds,
          NanoCpus: Math.round(spec.cpus * 1e9),
        },
      }),
    );
    this.runtimes.set(container.id, spec.runtime);
    try {
      await this.call('start container', () => container.start());
    } catch (error) {
      await this.remove(container.id);
      throw error;
    }
    this.log.info('Started kernel container', { kernelId: spec.kernelId, containerId: container.id.slice(0, 12) });
    return { containerId: container.id, labels, running: true };
  }

  async startSandbox(spec: SandboxContainerSpec): Promise<SandboxConnection> {
    const labels = {
      ...this.extraLabels,
      ...spec.labels,
      [LABELS.managed]: 'true',
      [LABELS.instance]: this.instance,
      [LABELS.judge]: 'true',
    };
    const scratch = `rw,nosuid,nodev,size=${spec.tmpSizeMB}m,mode=1777`;
    const container = await this.call('create container', () =>
      this.docker.createContainer({
        Image: spec.image,
        Entrypoint: [],
        Cmd: spec.cmd,
        Labels: labels,
        // Root with only the two capabilities the supervisor needs to become the builder and the
        // program (it never touches a path as root; see images/base/judge/supervisor.c).
        User: '0:0',
        WorkingDir: CONTAINER_WORK_DIR,
        NetworkDisabled: true,
        // The supervisor's protocol runs over the attached stdin/stdout. StdinOnce: when the service's
        // connection goes (a crash included), the supervisor reads EOF and exits, and AutoRemove removes
        // the container: nothing is left running for the reaper.
        OpenStdin: true,
        StdinOnce: true,
        AttachStdin: true,
        AttachStdout: true,
        AttachStderr: true,
        Tty: false,
        StopTimeout: 1,
        HostConfig: {
          ...hardenedHostConfig({
            runtime: spec.runtime,
            memoryBytes: spec.memoryBytes,
            pidsLimit: spec.pidsLimit,
            tmpSizeMB: spec.tmpSizeMB,
            tmpfs: {
              '/tmp': scratch,
              // exec: compiled programs run from here. Sticky and world-writable: the program may add
              // files of its own, never change or remove the owner's (sources, the compiled binary).
              [CONTAINER_WORK_DIR]: `rw,exec,nosuid,nodev,size=${spec.workDirSizeMB}m,uid=${spec.workDirUid},gid=${spec.workDirGid},mode=1777`,
            },
            capAdd: ['SETUID', 'SETGID'],
            // SysV IPC objects outlive a run, and under gVisor (2022) the supervisor can neither list
            // nor remove them (no *_STAT; IPC_RMID fails): a run could leave data for the next. Denied
            // there (EPERM); under runc the supervisor removes them after each run.
            gvisorDenied: ['shmget', 'semget', 'msgget'],
          }),
          AutoRemove: true,
        },
      }),
    );
    let stream: AttachStream | undefined;
    try {
      // Attached before the start, so that not a byte of the supervisor's output is missed.
      stream = (await this.call('attach container', () =>
        container.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true }),
      )) as AttachStream;
      const attached = stream;
      const stdout = new Set<(chunk: Buffer) => void>();
      const stderr = new Set<(chunk: Buffer) => void>();
      const ends = new Set<(error?: Error) => void>();
      let ended = false;
      const finish = (error?: Error) => {
        if (ended) return;
        ended = true;
        for (const listener of ends) listener(error);
      };
      // What comes before the caller listens (the supervisor's hello may beat start()'s answer) is held.
      const early = new Map<Set<(chunk: Buffer) => void>, Buffer[]>([
        [stdout, []],
        [stderr, []],
      ]);
      const sink = (listeners: Set<(chunk: Buffer) => void>) =>
        new Writable({
          write(chunk: Buffer, _encoding, callback) {
            if (listeners.size === 0) early.get(listeners)!.push(chunk);
            for (const listener of listeners) listener(chunk);
            callback();
          },
        });
      const listen = (listeners: Set<(chunk: Buffer) => void>, listener: (chunk: Buffer) => void) => {
        listeners.add(listener);
        for (const chunk of early.get(listeners)!.splice(0)) listener(chunk);
      };
      this.docker.modem.demuxStream(attached, sink(stdout), sink(stderr));
      attached.once('end', () => finish());
      attached.once('close', () => finish());
      attached.on('error', (error: Error) => finish(error));
      // Bounded: a start the engine never answers would otherwise keep this attach open, and with it a
      // started supervisor that no one will ever talk to (seen under load: a sandbox left running).
      await this.call('start container', () => withDeadline(container.start(), SANDBOX_START_TIMEOUT_MS, 'the engine did not answer the sandbox start'));
      this.log.debug('Started judge sandbox', { containerId: container.id.slice(0, 12), image: spec.image });
      return {
        containerId: container.id,
        write: (data) => (ended ? false : attached.write(data)),
        onDrain: (listener) => attached.once('drain', listener),
        onStdout: (listener) => listen(stdout, listener),
        onStderr: (listener) => listen(stderr, listener),
        onEnd: (listener) => {
          if (ended) listener();
          else ends.add(listener);
        },
        end: () => {
          // end() half-closes the hijacked connection: the engine closes the supervisor's stdin.
          attached.end();
          attached.destroy?.();
          finish();
        },
      };
    } catch (error) {
      // The supervisor exits at its stdin's EOF (StdinOnce) even if the removal below comes too early.
      stream?.destroy?.();
      await this.remove(container.id);
      throw error;
    }
  }

  async listSandboxes(): Promise<string[]> {
    const containers = await this.call('list containers', () =>
      this.docker.listContainers({
        all: true,
        filters: { label: [`${LABELS.managed}=true`, `${LABELS.instance}=${this.instance}`, `${LABELS.judge}=true`] },
      }),
    );
    return containers.map((c) => c.Id);
  }

  async remove(containerId: string): Promise<void> {
    this.runtimes.delete(containerId);
    try {
      await this.call('remove container', () => this.docker.getContainer(containerId).remove({ force: true, v: true }));
      this.log.debug('Removed container', { containerId: containerId.slice(0, 12) });
    } catch (error) {
      // 404: already gone; 409: removal already in progress. Both mean it is going away.
      if (statusCode(error) === 404 || statusCode(error) === 409) return;
      throw error;
    }
  }

  async signal(containerId: string, signal: string): Promise<void> {
    try {
      await this.call('signal container', () => this.docker.getContainer(containerId).kill({ signal }));
    } catch (error) {
      // 409: not running. Nothing to signal.
      if (statusCode(error) === 409 || statusCode(error) === 404) return;
      throw error;
    }
  }

  async stop(containerId: string): Promise<void> {
    try {
      // t=0: SIGKILL at once; the kernel's state is thrown away anyway. The engine answers once it exited.
      await this.call('stop container', () => this.docker.getContainer(containerId).stop({ t: 0 }));
    } catch (error) {
      // 304: already stopped.
      if (statusCode(error) !== 304) throw error;
    }
    const state = await this.inspect(containerId);
    if (!state) throw unavailable('the kernel container vanished while it was stopped');
    if (state.running) throw new Error('the kernel container still runs after it was stopped');
  }

  async start(containerId: string): Promise<ContainerState> {
    await this.call('start container', () => this.docker.getContainer(containerId).start());
    const state = await this.inspect(containerId);
    if (!state) throw unavailable('the kernel container vanished while it started');
    return state;
  }

  async updateLimits(containerId: string, limits: { memoryBytes: number; cpus: number }): Promise<void> {
    await this.call('update container', () =>
      this.docker.getContainer(containerId).update({
        Memory: limits.memoryBytes,
        MemorySwap: limits.memoryBytes,
        NanoCpus: Math.round(limits.cpus * 1e9),
      }),
    );
  }

  async inspect(containerId: string): Promise<ContainerState | undefined> {
    try {
      const info = await this.call('inspect container', () => this.docker.getContainer(containerId).inspect());
      return {
        containerId: info.Id,
        labels: info.Config.Labels ?? {},
        running: info.State.Running,
        pid: info.State.Pid || undefined,
        deathReason: info.State.Running ? undefined : deathReasonOf(info.State),
      };
    } catch (error) {
      if (statusCode(error) === 404) return undefined;
      throw error;
    }
  }

  async listManaged(): Promise<ContainerState[]> {
    const containers = await this.call('list containers', () =>
      this.docker.listContainers({
        all: true,
        filters: { label: [`${LABELS.managed}=true`, `${LABELS.instance}=${this.instance}`] },
      }),
    );
    // Judge sandboxes are not kernels: the kernel layer must neither adopt nor reap them.
    return containers
      .filter((c) => !(c.Labels ?? {})[LABELS.judge])
      .map((c) => ({ containerId: c.Id, labels: c.Labels, running: c.State === 'running' }));
  }

  async listKernelImages(): Promise<KernelImage[]> {
    const images = await this.call('list images', () =>
      this.docker.listImages({ filters: { label: [LABELS.kernelspec] } }),
    );
    return images.flatMap((image) =>
      (image.RepoTags ?? [])
        .filter((tag) => tag !== '<none>:<none>')
        .map((tag) => ({ image: tag, labels: image.Labels ?? {} })),
    );
  }

  async readImageFile(image: string, filePath: string): Promise<Buffer | undefined> {
    // A created, never started container is the engine's way to read an image's files (`docker cp`).
    // Labelled like every container of this instance, so a crash here leaves nothing the reaper misses.
    const container = await this.call('create container', () =>
      this.docker.createContainer({
        Image: image,
        // Never run; a command only because create refuses an image that has none.
        Cmd: ['true'],
        Labels: { ...this.extraLabels, [LABELS.managed]: 'true', [LABELS.instance]: this.instance },
        NetworkDisabled: true,
        HostConfig: { NetworkMode: 'none' },
      }),
    );
    try {
      const archive = await this.call('read from image', () => container.getArchive({ path: filePath }));
      const chunks: Buffer[] = [];
      for await (const chunk of archive as AsyncIterable<Buffer>) chunks.push(chunk);
      return firstFileOfTar(Buffer.concat(chunks));
    } catch (error) {
      if (statusCode(error) === 404) return undefined;
      throw error;
    } finally {
      await this.remove(container.id);
    }
  }

  async processIds(containerId: string): Promise<number[]> {
    const pids = cgroupProcessIds(containerId);
    if (pids) return pids;
    try {
      const top = (await this.docker.getContainer(containerId).top({ ps_args: '-o pid' })) as {
        Processes?: string[][];
      };
      return (top.Processes ?? []).map((row) => Number(row[0])).filter(Number.isInteger);
    } catch {
      return [];
    }
  }

  async oomKills(containerId: string): Promise<number | undefined> {
    return cgroupOomKills(containerId);
  }

  async engineUsage(containerId: string): Promise<ResourceUsage | undefined> {
    try {
      const stats = (await this.docker.getContainer(containerId).stats({ stream: false })) as {
        memory_stats?: { usage?: number; stats?: { cache?: number } };
        cpu_stats?: { cpu_usage?: { total_usage?: number } };
      };
      const memory = (stats.memory_stats?.usage ?? 0) - (stats.memory_stats?.stats?.cache ?? 0);
      return {
        memoryBytes: Math.max(0, memory),
        cpuMs: Math.round((stats.cpu_stats?.cpu_usage?.total_usage ?? 0) / 1e6),
      };
    } catch {
      return undefined;
    }
  }

  async exec(containerId: string, spec: ExecSpec, onOutput: ExecOutputListener): Promise<{ exitCode: number }> {
    const withStdin = spec.stdin !== undefined;
    const started = Date.now();
    this.log.debug('Starting exec', { containerId: containerId.slice(0, 12), cmd: spec.cmd[0] });
    // Under gVisor an exec'd process lacks the container's seccomp filter: it gets one of its own.
    const cmd = isGvisorRuntime(await this.runtimeOf(containerId)) ? underGvisorFilter(spec.cmd) : spec.cmd;
    let exec: Docker.Exec;
    try {
      exec = await this.call('create exec', () =>
        this.docker.getContainer(containerId).exec({
          Cmd: cmd,
          AttachStdin: withStdin,
          AttachStdout: true,
          AttachStderr: true,
          Tty: false,
          User: spec.user,
          WorkingDir: spec.workingDir,
          Env: Object.entries(spec.env ?? {}).map(([k, v]) => `${k}=${v}`),
        }),
      );
    } catch (error) {
      // 404: container gone; 409: container not running (stopped or being removed).
      if (statusCode(error) === 404 || statusCode(error) === 409) throw conflict('the kernel\'s container is not running');
      throw error;
    }
    const stream = await this.call('start exec', () => exec.start({ hijack: true, stdin: withStdin }));
    const signal = spec.signal;
    const onAbort = () => {
      stream.destroy();
      // Closing its stream does not end the command (a `sleep` never notices): it is killed.
      void this.killExec(exec, containerId);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (signal?.aborted) stream.destroy();
      const input = spec.stdin;
      if (input instanceof Readable) {
        // pipe: the source's backpressure holds; its end half-closes the connection (the command's stdin).
        input.once('error', () => stream.destroy());
        input.pipe(stream);
      } else if (withStdin) {
        // end() half-closes the hijacked connection: the engine then closes the command's stdin.
        stream.end(input);
      }
      await demuxExecOutput(stream, onOutput).catch((error: Error) => {
        // EPIPE/ECONNRESET when the command exits without reading all its stdin: its exit code still tells.
        this.log.debug('Exec stream error', { containerId: containerId.slice(0, 12), error: error.message });
      });
      if (signal?.aborted) throw signal.reason ?? new Error('exec aborted');
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (spec.stdin instanceof Readable) spec.stdin.unpipe(stream);
    }
    for (let attempt = 0; ; attempt++) {
      const info = await this.call('inspect exec', () => exec.inspect());
      if (!info.Running && info.ExitCode !== null) {
        this.log.debug('Exec ended', { containerId: containerId.slice(0, 12), exitCode: info.ExitCode, ms: Date.now() - started });
        return { exitCode: info.ExitCode };
      }
      if (attempt >= 250) throw new Error(`exec ${info.ID.slice(0, 12)} reports no exit code after its output ended`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /**
   * The engine has no call that stops an exec: its process (a host PID under runc) and every descendant of
   * it among the container's processes get SIGKILL. Only while the engine says it still runs, so the PID
   * is the exec's and not a reused one.
   */
  private async killExec(exec: Docker.Exec, containerId: string): Promise<void> {
    try {
      const info = await exec.inspect();
      if (!info.Running || !info.Pid) return;
      const parents = new Map<number, number>();
      for (const pid of cgroupProcessIds(containerId) ?? []) {
        const ppid = parentOf(pid);
        if (ppid !== undefined) parents.set(pid, ppid);
      }
      const victims = new Set<number>([info.Pid]);
      for (let grew = true; grew; ) {
        grew = false;
        for (const [pid, ppid] of parents) if (!victims.has(pid) && victims.has(ppid)) (victims.add(pid), (grew = true));
      }
      for (const pid of victims) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Exited meanwhile.
        }
      }
      this.log.debug('Killed an aborted exec', { containerId: containerId.slice(0, 12), processes: victims.size });
    } catch (error) {
      this.log.debug('Could not kill an aborted exec', { containerId: containerId.slice(0, 12), error: (error as Error).message });
    }
  }

  /** The container's OCI runtime: remembered from its start, else asked once (an adopted kernel). */
  private async runtimeOf(containerId: string): Promise<string> {
    let runtime = this.runtimes.get(containerId);
    if (runtime === undefined) {
      try {
        const info = await this.call('inspect container', () => this.docker.getContainer(containerId).inspect());
        runtime = info.HostConfig.Runtime ?? 'runc';
        this.runtimes.set(containerId, runtime);
      } catch (error) {
        // Gone: the exec that follows reports it.
        if (statusCode(error) === 404) return '';
        throw error;
      }
    }
    return runtime;
  }

  onDeath(listener: DeathListener): () => void {
    this.deathListeners.add(listener);
    if (!this.eventStream) void this.watchEvents();
    return () => this.deathListeners.delete(listener);
  }

  private async watchEvents(): Promise<void> {
    if (this.closed) return;
    try {
      const stream = (await this.docker.getEvents({
        // Deaths while the engine was unreachable are not missed; duplicates are harmless.
        ...(this.eventsBrokeAt !== undefined ? { since: this.eventsBrokeAt } : {}),
        filters: {
          type: ['container'],
          event: ['die', 'oom'],
          label: [`${LABELS.managed}=true`, `${LABELS.instance}=${this.instance}`],
        },
      })) as NodeJS.ReadableStream;
      this.eventStream = stream;
      if (this.eventsDown) this.log.info('Docker events available again');
      this.eventsDown = false;
      let pending = '';
      stream.on('data', (chunk: Buffer) => {
        pending += chunk.toString('utf8');
        let newline: number;
        while ((newline = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          if (line.trim()) void this.handleEvent(line);
        }
      });
      const reopen = () => {
        if (this.eventStream !== stream) return;
        this.eventStream = undefined;
        this.eventsBrokeAt = Math.floor(Date.now() / 1000) - 1;
        if (!this.closed) setTimeout(() => void this.watchEvents(), 1000).unref();
      };
      stream.on('end', reopen);
      stream.on('error', reopen);
    } catch (error) {
      // Once per outage, not once a second.
      if (!this.eventsDown) this.log.warn('Docker events unavailable; retrying', { error: (error as Error).message });
      this.eventsDown = true;
      if (!this.closed) setTimeout(() => void this.watchEvents(), 1000).unref();
    }
  }

  private async handleEvent(line: string): Promise<void> {
    let event: { id?: string; Action?: string; Actor?: { Attributes?: Record<string, string> } };
    try {
      event = JSON.parse(line);
    } catch {
      return;
    }
    if (!event.id) return;
    if (event.Action === 'oom') return this.noteOom(event.id);
    const labels = event.Actor?.Attributes ?? {};
    // A judge sandbox's end is its owner's business (it reads the stream's end), not a kernel death.
    if (labels[LABELS.judge]) return;
    // The die event carries the exit code but not the OOM flag; inspect says which it was.
    const state = await this.inspect(event.id).catch(() => undefined);
    // Started again since (a restart in place): the death is over and was its restarter's doing.
    if (state?.running) return;
    const exitCode = Number(labels.exitCode ?? 0);
    let reason: DeathReason = state?.deathReason ?? deathReasonOf({ ExitCode: exitCode });
    // The engine sets the OOM flag when the runtime reports the OOM kill, which under a loaded gVisor
    // can come just after the exit: a SIGKILL death waits briefly for that report.
    if (reason === 'killed') {
      if (await this.oomReported(event.id)) reason = 'out-of-memory';
      // Restarted while this death waited: as above.
      if ((await this.inspect(event.id).catch(() => undefined))?.running) return;
    }
    this.oomEvents.delete(event.id);
    for (const listener of this.deathListeners) listener(event.id, reason, labels);
  }

  private noteOom(containerId: string): void {
    const now = Date.now();
    // OOM kills of a kernel's subprocesses leave the kernel running: forget them after a while.
    for (const [id, at] of this.oomEvents) if (now - at > OOM_EVENT_MEMORY_MS) this.oomEvents.delete(id);
    this.oomEvents.set(containerId, now);
    this.oomWaiters.get(containerId)?.();
  }

  private oomReported(containerId: string): Promise<boolean> {
    if (this.oomEvents.has(containerId)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (reported: boolean) => {
        clearTimeout(timer);
        this.oomWaiters.delete(containerId);
        resolve(reported);
      };
      const timer = setTimeout(() => done(false), OOM_AFTER_EXIT_MS);
      this.oomWaiters.set(containerId, () => done(true));
    });
  }

  async ping(): Promise<boolean> {
    try {
      await this.docker.ping();
      return true;
    } catch {
      return false;
    }
  }

  close(): void {
    this.closed = true;
    const stream = this.eventStream as (NodeJS.ReadableStream & { destroy?: () => void }) | undefined;
    stream?.destroy?.();
    this.deathListeners.clear();
  }
}

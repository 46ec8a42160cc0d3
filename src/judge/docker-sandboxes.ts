/**
 * Judge sandboxes as containers on the Docker engine (through src/runtime's SandboxRuntime): one
 * container per sandbox, its supervisor (images/base/judge/supervisor.c) as the main process, spoken to
 * over the attached stdin/stdout in the frames of supervisor-protocol.ts. A run is one request frame and
 * its answers: no container or `docker exec` per run, so a run costs the service a few milliseconds.
 *
 * Bounded by construction: one operation at a time per sandbox (others wait in order), stdin sent in a
 * window the supervisor acknowledges, output kept up to the run's cap (the supervisor kills past it), every
 * frame bounded, and a run that does not answer within its wall limit plus a grace breaks the sandbox
 * (removed). A sandbox whose stream ends or breaks fails what is pending and is removed.
 */
import { DomainError, invalidInput, limitExceeded, unavailable } from '../errors.js';
import type { Logger } from '../logger.js';
import { isGvisorRuntime } from '../runtime/gvisor.js';
import type { SandboxConnection, SandboxRuntime } from '../runtime/runtime.js';
import { KERNEL_UID } from '../runtime/runtime.js';
import type { InteractiveRun, JudgeSandbox, JudgeSandboxes, RunMeasurement, RunRequest, SandboxSpec, SourceFile } from './model.js';
import {
  DATA_CHUNK_BYTES,
  encode,
  FrameDecoder,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  ProtocolError,
  signalNumber,
  STDIN_WINDOW_BYTES,
  type RunResult,
  type SupervisorFrame,
} from './supervisor-protocol.js';

export const SUPERVISOR_PATH = '/opt/polykernel/judge/supervisor';
/** The builder: owns the sources and compiles them (images/base/Dockerfile creates it; the supervisor agrees). */
export const BUILDER_UID = 1001;
export const BUILDER_GID = 1001;
/** The program under test runs as the kernels' user. */
export const PROGRAM_UID = KERNEL_UID;
/**
 * The container's memory cap beyond the largest run's limit: the supervisor and init (about 2 MB), and the
 * files in the sandbox's tmpfs mounts (sources, the compiled program, what a run writes), which the engine
 * counts as the container's memory. A run is killed at its own limit (its peak RSS) by the supervisor;
 * the cap is what holds when a run allocates faster than the supervisor looks.
 */
export const MEMORY_HEADROOM_BYTES = 32 * 1024 * 1024;
/**
 * Under gVisor the sandbox's own kernel (the sentry and its gofer) lives in the container's memory cgroup too,
 * and the cap kills the whole sandbox, not the run: more room, so that the supervisor's limit acts first.
 */
export const GVISOR_MEMORY_HEADROOM_BYTES = 160 * 1024 * 1024;
/** Processes beyond a run's: init, the supervisor, its clean-up child, and slack for a fork racing a kill. */
export const SUPERVISOR_PROCESSES = 4;
const HELLO_TIMEOUT_MS = 20_000;
/** A result comes at most this long after the run's wall limit (kill, drain, clean-up), or the sandbox is broken. */
const RESULT_GRACE_MS = 30_000;
/** Stdin an interactive client may queue ahead of the program. */
const INTERACTIVE_STDIN_QUEUE_BYTES = 1 << 20;
/** The supervisor's own diagnostics (its stderr), kept for the log. */
const DIAGNOSTICS_BYTES = 4096;

const NAME_PART = /^[A-Za-z0-9._+-]{1,255}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Why a file name is refused (the supervisor checks the same), or undefined when it is fine. */
export function fileNameProblem(name: string): string | undefined {
  if (typeof name !== 'string' || name.length === 0) return 'a file name must not be empty';
  if (Buffer.byteLength(name) > 4096) return 'a file name must be at most 4096 bytes';
  if (name.startsWith('/')) return `file name "${name}" must be relative (no leading /)`;
  for (const part of name.split('/')) {
    if (part === '.' || part === '..') return `file name "${name}" must not contain . or .. parts`;
    if (!NAME_PART.test(part) || part.startsWith('-'))
      return `file name "${name}": each part must be 1-255 characters of A-Z a-z 0-9 . _ - + (not starting with -)`;
  }
  return undefined;
}

function checkRequest(request: Omit<RunRequest, 'stdin'>): void {
  if (!Array.isArray(request.argv) || request.argv.length === 0) throw invalidInput('a run needs a command');
  if (request.argv.length > 4096) throw invalidInput('a run takes at most 4096 arguments');
  for (const arg of request.argv) {
    if (typeof arg !== 'string' || arg.includes('\0')) throw invalidInput('arguments must be strings without NUL');
  }
  const env = Object.entries(request.env ?? {});
  if (env.length > 4096) throw invalidInput('a run takes at most 4096 environment variables');
  for (const [name, value] of env) {
    if (!ENV_NAME.test(name)) throw invalidInput(`environment variable name "${name}" must be letters, digits and _`);
    if (typeof value !== 'string' || value.includes('\0')) throw invalidInput(`environment variable ${name} must be a string without NUL`);
  }
  for (const [name, value] of Object.entries(request.limits)) {
    if (!Number.isFinite(value) || value < 0) throw invalidInput(`limit ${name} must be a number, 0 or more`);
  }
}

export class DockerJudgeSandboxes implements JudgeSandboxes {
  constructor(
    private readonly runtime: SandboxRuntime,
    private readonly log: Logger,
  ) {}

  async create(spec: SandboxSpec): Promise<JudgeSandbox> {
    for (const [name, value] of Object.entries({ memoryKB: spec.memoryKB, maxProcesses: spec.maxProcesses, diskMB: spec.diskMB })) {
      if (!Number.isFinite(value) || value <= 0) throw invalidInput(`sandbox ${name} must be a positive number`);
    }
    const gvisor = isGvisorRuntime(spec.runtime);
    const connection = await this.runtime.startSandbox({
      image: spec.image,
      runtime: spec.runtime,
      cmd: [SUPERVISOR_PATH],
      memoryBytes: Math.ceil(spec.memoryKB) * 1024 + (gvisor ? GVISOR_MEMORY_HEADROOM_BYTES : MEMORY_HEADROOM_BYTES),
      // Under gVisor the sandbox counts a run's processes itself (RLIMIT_NPROC, set per run by the
      // supervisor); the host's pids cap only bounds the sandbox's host threads, and a sentry that cannot
      // create one dies with the whole sandbox: repeated fork bombs reached the kernels' figure
      // (gvisor.ts), three times it held.
      pidsLimit: (Math.ceil(spec.maxProcesses) + SUPERVISOR_PROCESSES) * (gvisor ? 3 : 1),
      workDirSizeMB: Math.ceil(spec.diskMB),
      tmpSizeMB: Math.ceil(spec.diskMB),
      workDirUid: BUILDER_UID,
      workDirGid: BUILDER_GID,
    });
    const sandbox = new SupervisedSandbox(connection, this.runtime, this.log, gvisor);
    try {
      await sandbox.ready();
    } catch (error) {
      await sandbox.close();
      throw error;
    }
    return sandbox;
  }

  async reap(): Promise<void> {
    for (const containerId of await this.runtime.listSandboxes()) {
      this.log.info('Removing leftover judge sandbox', { containerId: containerId.slice(0, 12) });
      await this.runtime.remove(containerId);
    }
  }
}

/** What the sandbox waits for: the answers to a file, or a run's output and result. */
type Waiter =
  | { kind: 'file'; resolve: () => void; reject: (error: Error) => void }
  | { kind: 'run'; run: ActiveRun };

class ActiveRun {
  private readonly stdinQueue: Buffer[] = [];
  private queuedBytes = 0;
  private inFlight = 0;
  private inputEnded = false;
  private closeSent = false;
  private started = false;
  private finished = false;
  private outputBytes = 0;
  private readonly stdout: Buffer[] = [];
  private readonly stderr: Buffer[] = [];
  private readonly listeners: ((stream: 'stdout' | 'stderr', data: Buffer) => void)[] = [];
  /** Interactive output that came before anyone listened (bounded by the output cap). */
  private readonly early: { stream: 'stdout' | 'stderr'; data: Buffer }[] = [];
  private readonly pendingSignals: number[] = [];
  readonly done: Promise<RunMeasurement>;
  private resolveDone!: (measurement: RunMeasurement) => void;
  private rejectDone!: (error: Error) => void;

  constructor(
    readonly request: Omit<RunRequest, 'stdin'>,
    private readonly interactive: boolean,
    private readonly send: (frame: Buffer) => void,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    // A caller that never awaits (an interactive client that went) must not see an unhandled rejection.
    this.done.catch(() => undefined);
  }

  queueStdin(data: Buffer, bound?: number): void {
    if (this.finished || this.inputEnded || data.length === 0) return;
    if (bound !== undefined && this.queuedBytes + data.length > bound)
      throw limitExceeded(`the program has ${this.queuedBytes} bytes of input it has not read yet; at most ${bound} may wait`);
    this.stdinQueue.push(data);
    this.queuedBytes += data.length;
    this.pump();
  }

  endInput(): void {
    this.inputEnded = true;
    this.pump();
  }

  signal(signo: number): void {
    if (this.finished) return;
    if (!this.started) this.pendingSignals.push(signo);
    else this.send(encode.signal(signo));
  }

  start(nprocRlimit: boolean): void {
    this.started = true;
    this.send(encode.run({ ...this.request, nprocRlimit }));
    for (const signo of this.pendingSignals.splice(0)) this.send(encode.signal(signo));
    this.pump();
  }

  acknowledged(bytes: number): void {
    this.inFlight = Math.max(0, this.inFlight - bytes);
    this.pump();
  }

  /** Sends stdin while the supervisor's window has room, then the end of input once all is sent. */
  private pump(): void {
    if (!this.started || this.finished) return;
    while (this.stdinQueue.length && this.inFlight < STDIN_WINDOW_BYTES) {
      const head = this.stdinQueue[0]!;
      const size = Math.min(head.length, DATA_CHUNK_BYTES, STDIN_WINDOW_BYTES - this.inFlight);
      const chunk = head.subarray(0, size);
      if (size === head.length) this.stdinQueue.shift();
      else this.stdinQueue[0] = head.subarray(size);
      this.queuedBytes -= size;
      this.inFlight += size;
      this.send(encode.stdin(chunk));
    }
    if (this.inputEnded && !this.stdinQueue.length && !this.closeSent) {
      this.closeSent = true;
      this.send(encode.stdinClose());
    }
  }

  output(stream: 'stdout' | 'stderr', data: Buffer): void {
    this.outputBytes += data.length;
    // The supervisor caps output; a short "cannot run" message may come on top.
    if (this.outputBytes > this.request.limits.maxOutputBytes + 4096) throw new ProtocolError('more output than the run\'s cap');
    if (!this.interactive) (stream === 'stdout' ? this.stdout : this.stderr).push(data);
    else if (this.listeners.length) for (const listener of this.listeners) listener(stream, data);
    else this.early.push({ stream, data });
  }

  onOutput(listener: (stream: 'stdout' | 'stderr', data: Buffer) => void): void {
    this.listeners.push(listener);
    for (const { stream, data } of this.early.splice(0)) listener(stream, data);
  }

  finish(result: RunResult): void {
    this.finished = true;
    const { execFailed: _execFailed, unusable: _unusable, ...measurement } = result;
    this.resolveDone({ ...measurement, stdout: Buffer.concat(this.stdout), stderr: Buffer.concat(this.stderr) });
  }

  fail(error: Error): void {
    this.finished = true;
    this.rejectDone(error);
  }
}

class SupervisedSandbox implements JudgeSandbox {
  readonly id: string;
  private readonly decoder = new FrameDecoder();
  private readonly waiters: Waiter[] = [];
  private tail: Promise<unknown> = Promise.resolve();
  private broken?: Error;
  private closing?: Promise<void>;
  private hello?: { resolve: () => void; reject: (error: Error) => void };
  private greeted = false;
  private diagnostics = '';

  constructor(
    private readonly connection: SandboxConnection,
    private readonly runtime: SandboxRuntime,
    private readonly log: Logger,
    private readonly gvisor: boolean,
  ) {
    this.id = connection.containerId;
    connection.onStdout((chunk) => this.received(chunk));
    connection.onStderr((chunk) => {
      if (this.diagnostics.length >= DIAGNOSTICS_BYTES) return;
      const text = chunk.toString('utf8').slice(0, DIAGNOSTICS_BYTES - this.diagnostics.length);
      this.diagnostics += text;
      this.log.debug('Judge supervisor diagnostics', { containerId: this.id.slice(0, 12), text: text.trim() });
    });
    connection.onEnd((error) => this.fail(new Error(`the judge sandbox ended${error ? ` (${error.message})` : ''}${this.diagnostics ? `: ${this.diagnostics.trim()}` : ''}`)));
  }

  ready(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.broken) return reject(this.broken);
      if (this.greeted) return resolve();
      const timer = setTimeout(() => reject(unavailable('the judge sandbox did not start in time')), HELLO_TIMEOUT_MS);
      this.hello = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
    });
  }

  private send = (frame: Buffer): void => {
    if (!this.broken) this.connection.write(frame);
  };

  private received(chunk: Buffer): void {
    let frames: SupervisorFrame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (error) {
      this.fail(error as Error);
      return;
    }
    for (const frame of frames) {
      try {
        this.handle(frame);
      } catch (error) {
        this.fail(error as Error);
        return;
      }
    }
  }

  private handle(frame: SupervisorFrame): void {
    const waiter = this.waiters[0];
    switch (frame.type) {
      case 'hello':
        if (frame.version !== PROTOCOL_VERSION) throw new ProtocolError(`the supervisor speaks version ${frame.version}, not ${PROTOCOL_VERSION}`);
        this.greeted = true;
        this.hello?.resolve();
        this.hello = undefined;
        return;
      case 'fatal':
        throw new Error(`the judge supervisor failed: ${frame.message}`);
      case 'ok':
      case 'error':
        if (waiter?.kind === 'file') {
          this.waiters.shift();
          if (frame.type === 'ok') waiter.resolve();
          else waiter.reject(invalidInput(frame.message));
        } else if (waiter?.kind === 'run' && frame.type === 'error') {
          // The supervisor refused the run (malformed, or the sandbox is unusable).
          this.waiters.shift();
          waiter.run.fail(new Error(`the judge supervisor refused the run: ${frame.message}`));
        } else throw new ProtocolError(`an unexpected '${frame.type}' frame`);
        return;
      case 'output':
        if (waiter?.kind !== 'run') throw new ProtocolError('output without a run');
        waiter.run.output(frame.stream, frame.data);
        return;
      case 'stdin-ack':
        if (waiter?.kind === 'run') waiter.run.acknowledged(frame.bytes);
        return;
      case 'result':
        if (waiter?.kind !== 'run') throw new ProtocolError('a result without a run');
        this.waiters.shift();
        if (frame.result.unusable) this.broken = new Error('the judge sandbox could not clean up after a run; it is not used again');
        waiter.run.finish(frame.result);
        return;
    }
  }

  /** Fails everything pending and removes the container (once). */
  private fail(error: Error): void {
    if (!this.broken) {
      this.broken = error;
      this.log.warn('Judge sandbox broke', { containerId: this.id.slice(0, 12), error: error.message });
    }
    this.hello?.reject(error);
    this.hello = undefined;
    for (const waiter of this.waiters.splice(0)) {
      if (waiter.kind === 'file') waiter.reject(error);
      else waiter.run.fail(error);
    }
    void this.close();
  }

  /** One operation at a time, in the order they were asked for. */
  private serial<T>(operation: () => Promise<T>): Promise<T> {
    const next = this.tail.then(operation, operation);
    this.tail = next.catch(() => undefined);
    return next;
  }

  private usable(): void {
    if (this.closing) throw new Error('the judge sandbox is closed');
    if (this.broken) throw this.broken;
  }

  writeFiles(files: SourceFile[]): Promise<void> {
    for (const file of files) {
      const problem = fileNameProblem(file.name);
      if (problem) return Promise.reject(invalidInput(problem));
      if (!Buffer.isBuffer(file.content)) return Promise.reject(invalidInput(`file ${file.name} must have content`));
    }
    return this.serial(async () => {
      this.usable();
      const answers = files.map(
        (file) =>
          new Promise<void>((resolve, reject) => {
            this.waiters.push({ kind: 'file', resolve, reject });
            this.send(encode.fileOpen(file.name));
            for (let at = 0; at < file.content.length; at += DATA_CHUNK_BYTES) this.send(encode.fileData(file.content.subarray(at, at + DATA_CHUNK_BYTES)));
            this.send(encode.fileClose());
          }),
      );
      // Every answer is awaited (an early refusal must not leave the others' answers unclaimed).
      const settled = await Promise.allSettled(answers);
      const refused = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
      if (refused) throw refused.reason;
    });
  }

  run(request: RunRequest): Promise<RunMeasurement> {
    try {
      checkRequest(request);
      if (!Buffer.isBuffer(request.stdin)) throw invalidInput('stdin must be bytes');
    } catch (error) {
      return Promise.reject(error);
    }
    const run = new ActiveRun(request, false, this.send);
    run.queueStdin(request.stdin);
    run.endInput();
    return this.serial(() => this.execute(run));
  }

  runInteractive(request: Omit<RunRequest, 'stdin'>): InteractiveRun {
    checkRequest(request);
    const run = new ActiveRun(request, true, this.send);
    void this.serial(() => this.execute(run)).catch(() => undefined);
    return {
      write: (data) => run.queueStdin(data, INTERACTIVE_STDIN_QUEUE_BYTES),
      endInput: () => run.endInput(),
      signal: (name) => {
        const signo = signalNumber(name);
        if (signo === undefined) throw invalidInput(`unknown signal ${name}`);
        run.signal(signo);
      },
      onOutput: (listener) => run.onOutput(listener),
      done: run.done,
    };
  }

  private async execute(run: ActiveRun): Promise<RunMeasurement> {
    try {
      this.usable();
      const frameBytes = encode.run({ ...run.request, nprocRlimit: this.gvisor }).length;
      if (frameBytes > MAX_FRAME_BYTES) throw invalidInput('the command and its environment are too long');
    } catch (error) {
      run.fail(error as Error);
      return run.done;
    }
    this.waiters.push({ kind: 'run', run });
    const grace = setTimeout(
      () => this.fail(new Error(`the judge supervisor did not report a run within ${RESULT_GRACE_MS} ms of its wall limit`)),
      run.request.limits.wallTimeMs + RESULT_GRACE_MS,
    );
    try {
      run.start(this.gvisor);
      return await run.done;
    } finally {
      clearTimeout(grace);
    }
  }

  close(): Promise<void> {
    if (!this.closing) {
      this.closing = (async () => {
        this.broken ??= new Error('the judge sandbox is closed');
        for (const waiter of this.waiters.splice(0)) {
          if (waiter.kind === 'file') waiter.reject(this.broken);
          else waiter.run.fail(this.broken);
        }
        this.connection.end();
        try {
          await this.runtime.remove(this.id);
        } catch (error) {
          // The engine is unreachable: the supervisor exits on its stdin's end anyway, and the reaper
          // removes what is left at the next start.
          if (!(error instanceof DomainError)) throw error;
          this.log.warn('Could not remove a judge sandbox', { containerId: this.id.slice(0, 12), error: error.message });
        }
      })();
    }
    return this.closing;
  }
}

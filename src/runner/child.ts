/**
 * Child processes of the runner. Every child starts in a new session (its own process group), so that an
 * interrupt or the end of a cell reaches everything the cell started, and nothing else.
 */
import { spawn, spawnSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, openSync, unlinkSync, write } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';
import type { OutputSink, StreamName } from './executor.js';
import { SentinelScanner } from './sentinel.js';

export interface SpawnOptions {
  cwd: string;
  env?: NodeJS.ProcessEnv;
  /** A pipe (socket pair), nothing (/dev/null), or an open file descriptor (StdinPipe.readFd). */
  stdin: 'pipe' | 'ignore' | number;
  /** Extra pipes after stdin/stdout/stderr (fd 3, …). */
  extraPipes?: number;
}

export function spawnGroup(argv: readonly string[], options: SpawnOptions): ChildProcess {
  const stdio: StdioOptions = [options.stdin, 'pipe', 'pipe', ...Array<'pipe'>(options.extraPipes ?? 0).fill('pipe')];
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio,
    detached: true,
  });
  // A child killed while we write its stdin or read its output must not take the runner down (EPIPE,
  // ECONNRESET: stdio are socket pairs).
  for (const stream of child.stdio) stream?.on('error', () => undefined);
  return child;
}

/** Signals a child's whole process group; a group that is gone already is not an error. */
export function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: nothing left in the group.
  }
}

export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', () => resolve({ code: 127, signal: null }));
  });
}

/** Resolves when the stream ended, or after `graceMs` (a grandchild may hold the pipe open). */
export function ended(stream: Readable | null, graceMs: number): Promise<void> {
  if (!stream || stream.readableEnded || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, graceMs);
    stream.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * Forwards a child stream to the output, decoding UTF-8 across chunk boundaries and pausing the stream
 * while the output is backed up (so a flood of output never piles up in the runner's memory). With a
 * scanner, end-of-cell markers are taken out of the stream and handed to `onMarker`.
 */
export function forward(
  stream: Readable,
  name: StreamName,
  output: OutputSink,
  scanner?: SentinelScanner,
  onMarker?: (payload: string) => void,
): void {
  const decoder = new StringDecoder('utf8');
  const emit = (text: string) => {
    if (text && !output.write(name, text)) {
      stream.pause();
      output.onDrain(() => stream.resume());
    }
  };
  stream.on('data', (chunk: Buffer) => {
    if (!scanner) return emit(decoder.write(chunk));
    for (const event of scanner.push(chunk)) {
      if (event.kind === 'data') emit(decoder.write(event.data));
      else onMarker?.(event.payload);
    }
  });
  stream.on('end', () => {
    if (scanner) emit(decoder.write(scanner.flush()));
    emit(decoder.end());
  });
}

/**
 * A real pipe for a program's stdin. Node gives a child a socket pair for 'pipe', and some runtimes treat
 * a socket on stdin as a network stream: PHP polls it with its 60 s socket timeout instead of reading it.
 * Node cannot make an anonymous pipe, so this is a FIFO in the temp directory, unlinked once both ends
 * are open.
 */
export class StdinPipe {
  private constructor(readonly readFd: number, private readonly writeFd: number) {}

  static open(): StdinPipe {
    const fifo = path.join(os.tmpdir(), `pk-stdin-${randomBytes(8).toString('hex')}`);
    const made = spawnSync('mkfifo', ['-m', '600', fifo]);
    if (made.status !== 0) throw new Error(`mkfifo failed: ${made.stderr?.toString().trim() || made.error?.message}`);
    try {
      // O_RDWR opens a FIFO without waiting for a writer; with that reader open, O_WRONLY does not wait either.
      const readFd = openSync(fifo, constants.O_RDWR);
      return new StdinPipe(readFd, openSync(fifo, constants.O_WRONLY));
    } finally {
      unlinkSync(fifo);
    }
  }

  /** Drops the runner's copy of the read end, once the child has its own. */
  releaseReadEnd(): void {
    closeSync(this.readFd);
  }

  write(text: string): void {
    write(this.writeFd, text, () => undefined);
  }

  close(): void {
    try {
      closeSync(this.writeFd);
    } catch {
      // Closed already.
    }
  }
}

export interface Captured {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** stdout and stderr interleaved as they came, cut at `limitBytes`. */
  text: string;
  spawnError?: Error;
}

/**
 * Runs a command to completion with no stdin, capturing its output (a compiler, a syntax check).
 * Killed with its group when `signal` aborts.
 */
export async function capture(argv: readonly string[], options: Omit<SpawnOptions, 'stdin'>, signal: AbortSignal, limitBytes = 256 * 1024): Promise<Captured> {
  const child = spawnGroup(argv, { ...options, stdin: 'ignore' });
  let spawnError: Error | undefined;
  child.on('error', (error) => (spawnError = error));
  const parts: Buffer[] = [];
  let size = 0;
  let truncated = false;
  const collect = (chunk: Buffer) => {
    if (size >= limitBytes) {
      truncated = true;
      return;
    }
    parts.push(chunk.subarray(0, limitBytes - size));
    size += Math.min(chunk.length, limitBytes - size);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const kill = () => signalGroup(child.pid, 'SIGKILL');
  signal.addEventListener('abort', kill, { once: true });
  if (signal.aborted) kill();
  try {
    const result = await exited(child);
    await Promise.all([ended(child.stdout, 200), ended(child.stderr, 200)]);
    let text = Buffer.concat(parts).toString('utf8');
    if (truncated) text += '\n[diagnostics truncated]\n';
    return { ...result, text, spawnError };
  } finally {
    signal.removeEventListener('abort', kill);
    signalGroup(child.pid, 'SIGKILL');
  }
}

/**
 * The wire format between the service and a judge sandbox's supervisor (images/base/judge/supervisor.c),
 * carried over the container's stdin and stdout. Pure encoding and decoding: no I/O here.
 *
 * Every frame is `u32 length` (big-endian; counts the type byte and the payload, 1 to MAX_FRAME_BYTES),
 * `u8 type`, payload. Integers are big-endian u32 unless said otherwise; strings are `u32 length, bytes`.
 *
 * Service to supervisor:
 * - `F` file open: u8 flags (1 = executable), then the name (the rest). Created as the builder.
 * - `D` file data: bytes appended to the open file.  `E` file close: answered by `K` or `X`.
 * - `R` run: u8 user (0 builder, 1 program), u8 flags (1 = stderr into stdout, 2 = RLIMIT_NPROC), eight
 *   u32 limits (RUN_LIMIT_ORDER), u16 argc, u16 envc, then argc + envc strings (`NAME=value` for env).
 * - `I` stdin bytes of the current run; `C` end of its stdin; `G` u8 signal number for the run's group.
 *   The service keeps at most STDIN_WINDOW_BYTES of stdin unacknowledged; the supervisor acknowledges.
 *
 * Supervisor to service:
 * - `H` hello: u32 protocol version, once at start.  `K` ok.  `X` error: a message (the request failed).
 * - `O` output: u8 stream (1 stdout, 2 stderr), bytes.  `A` stdin acknowledged: u32 bytes.
 * - `T` result: u32 cpu ms, u32 wall ms, u32 peak memory KB, i32 exit code (-1: none), u32 signal
 *   (0: none), u8 killed-for (KILLED_FOR), u8 flags (1 = could not exec, 2 = sandbox unusable from now).
 * - `P` fatal: a message; the supervisor exits.
 */
import type { RunLimits, RunMeasurement } from './model.js';

export const PROTOCOL_VERSION = 1;
/** The longest frame either side accepts; data travels in chunks well below it. */
export const MAX_FRAME_BYTES = 1 << 20;
/** File and stdin bytes per frame. */
export const DATA_CHUNK_BYTES = 64 << 10;
export const STDIN_WINDOW_BYTES = 256 << 10;

export const RUN_LIMIT_ORDER = [
  'cpuTimeMs',
  'extraCpuTimeMs',
  'wallTimeMs',
  'memoryKB',
  'stackKB',
  'maxProcesses',
  'maxOutputBytes',
  'maxFileSizeKB',
] as const satisfies readonly (keyof RunLimits)[];

const KILLED_FOR = [undefined, 'cpu-time', 'wall-time', 'memory', 'output', 'processes'] as const;

/** Linux's signal numbers (x86_64 and arm64 agree on 1-31). */
export const SIGNALS: Record<number, string> = {
  1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 4: 'SIGILL', 5: 'SIGTRAP', 6: 'SIGABRT', 7: 'SIGBUS', 8: 'SIGFPE',
  9: 'SIGKILL', 10: 'SIGUSR1', 11: 'SIGSEGV', 12: 'SIGUSR2', 13: 'SIGPIPE', 14: 'SIGALRM', 15: 'SIGTERM',
  16: 'SIGSTKFLT', 17: 'SIGCHLD', 18: 'SIGCONT', 19: 'SIGSTOP', 20: 'SIGTSTP', 21: 'SIGTTIN', 22: 'SIGTTOU',
  23: 'SIGURG', 24: 'SIGXCPU', 25: 'SIGXFSZ', 26: 'SIGVTALRM', 27: 'SIGPROF', 28: 'SIGWINCH', 29: 'SIGIO',
  30: 'SIGPWR', 31: 'SIGSYS',
};

export function signalName(signo: number): string {
  return SIGNALS[signo] ?? `SIG${signo}`;
}

/** 'SIGTERM', 'TERM', 'sigterm', '15' all name 15; undefined for an unknown name. */
export function signalNumber(name: string): number | undefined {
  const text = name.trim().toUpperCase();
  if (/^\d{1,2}$/.test(text)) {
    const n = Number(text);
    return n >= 1 && n <= 64 ? n : undefined;
  }
  const full = text.startsWith('SIG') ? text : `SIG${text}`;
  const found = Object.entries(SIGNALS).find(([, signal]) => signal === full);
  return found ? Number(found[0]) : undefined;
}

export class ProtocolError extends Error {
  constructor(message: string) {
    super(`judge supervisor protocol: ${message}`);
    this.name = 'ProtocolError';
  }
}

function frame(type: string, ...parts: Buffer[]): Buffer {
  const length = 1 + parts.reduce((sum, part) => sum + part.length, 0);
  if (length > MAX_FRAME_BYTES) throw new ProtocolError(`a ${type} frame of ${length} bytes is over the bound`);
  const header = Buffer.alloc(5);
  header.writeUInt32BE(length, 0);
  header.write(type, 4, 'latin1');
  return Buffer.concat([header, ...parts]);
}

function u8(value: number): Buffer {
  return Buffer.from([value]);
}

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0, 0);
  return b;
}

function str(value: string): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  return Buffer.concat([u32(bytes.length), bytes]);
}

export const encode = {
  fileOpen(name: string, executable = false): Buffer {
    return frame('F', u8(executable ? 1 : 0), Buffer.from(name, 'utf8'));
  },
  fileData(chunk: Buffer): Buffer {
    return frame('D', chunk);
  },
  fileClose(): Buffer {
    return frame('E');
  },
  run(request: {
    as: 'builder' | 'program';
    argv: string[];
    env?: Record<string, string>;
    limits: RunLimits;
    stderrToStdout?: boolean;
    nprocRlimit?: boolean;
  }): Buffer {
    const env = Object.entries(request.env ?? {}).map(([name, value]) => `${name}=${value}`);
    const limits = Buffer.alloc(4 * RUN_LIMIT_ORDER.length);
    RUN_LIMIT_ORDER.forEach((name, i) => {
      // Whole units, clamped to what a u32 holds (caps are far below).
      limits.writeUInt32BE(Math.min(0xffffffff, Math.max(0, Math.ceil(request.limits[name]))), 4 * i);
    });
    const counts = Buffer.alloc(4);
    counts.writeUInt16BE(request.argv.length, 0);
    counts.writeUInt16BE(env.length, 2);
    const flags = (request.stderrToStdout ? 1 : 0) | (request.nprocRlimit ? 2 : 0);
    return frame('R', u8(request.as === 'builder' ? 0 : 1), u8(flags), limits, counts, ...[...request.argv, ...env].map(str));
  },
  stdin(chunk: Buffer): Buffer {
    return frame('I', chunk);
  },
  stdinClose(): Buffer {
    return frame('C');
  },
  signal(signo: number): Buffer {
    return frame('G', u8(signo));
  },
};

/** A run's end as the supervisor reports it (stdout and stderr came before, in output frames). */
export interface RunResult extends Omit<RunMeasurement, 'stdout' | 'stderr'> {
  execFailed: boolean;
  /** The supervisor could not kill or clean up after the run: the sandbox must not be used again. */
  unusable: boolean;
}

export type SupervisorFrame =
  | { type: 'hello'; version: number }
  | { type: 'ok' }
  | { type: 'error'; message: string }
  | { type: 'output'; stream: 'stdout' | 'stderr'; data: Buffer }
  | { type: 'stdin-ack'; bytes: number }
  | { type: 'result'; result: RunResult }
  | { type: 'fatal'; message: string };

function decodeFrame(type: string, payload: Buffer): SupervisorFrame {
  const need = (bytes: number) => {
    if (payload.length !== bytes) throw new ProtocolError(`a '${type}' frame has ${payload.length} payload bytes, not ${bytes}`);
  };
  switch (type) {
    case 'H':
      need(4);
      return { type: 'hello', version: payload.readUInt32BE(0) };
    case 'K':
      need(0);
      return { type: 'ok' };
    case 'X':
      return { type: 'error', message: payload.toString('utf8') };
    case 'P':
      return { type: 'fatal', message: payload.toString('utf8') };
    case 'O': {
      if (payload.length < 1) throw new ProtocolError('an output frame without its stream');
      const stream = payload[0] === 1 ? 'stdout' : payload[0] === 2 ? 'stderr' : undefined;
      if (!stream) throw new ProtocolError(`an output frame for stream ${payload[0]}`);
      return { type: 'output', stream, data: payload.subarray(1) };
    }
    case 'A':
      need(4);
      return { type: 'stdin-ack', bytes: payload.readUInt32BE(0) };
    case 'T': {
      need(22);
      const exitCode = payload.readInt32BE(12);
      const signo = payload.readUInt32BE(16);
      const killedFor = payload[20]!;
      if (killedFor >= KILLED_FOR.length) throw new ProtocolError(`a result killed for reason ${killedFor}`);
      const result: RunResult = {
        cpuTimeMs: payload.readUInt32BE(0),
        wallTimeMs: payload.readUInt32BE(4),
        memoryKB: payload.readUInt32BE(8),
        exitCode: exitCode < 0 ? null : exitCode,
        signal: signo === 0 ? null : signalName(signo),
        execFailed: (payload[21]! & 1) !== 0,
        unusable: (payload[21]! & 2) !== 0,
      };
      const reason = KILLED_FOR[killedFor];
      if (reason) result.killedFor = reason;
      return { type: 'result', result };
    }
    default:
      throw new ProtocolError(`unknown frame type 0x${type.charCodeAt(0).toString(16)}`);
  }
}

/**
 * Splits the supervisor's byte stream into frames. Holds at most one frame's bytes: a length out of
 * bounds is an error at once, before any of that frame is buffered.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(chunk: Buffer): SupervisorFrame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: SupervisorFrame[] = [];
    while (this.buffered >= 4) {
      const head = this.peek(4);
      const length = head.readUInt32BE(0);
      if (length < 1 || length > MAX_FRAME_BYTES) throw new ProtocolError(`a frame length of ${length} bytes is out of bounds`);
      if (this.buffered < 4 + length) break;
      const bytes = this.take(4 + length);
      frames.push(decodeFrame(String.fromCharCode(bytes[4]!), bytes.subarray(5)));
    }
    return frames;
  }

  /** Bytes of an incomplete frame held so far. */
  get pendingBytes(): number {
    return this.buffered;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.subarray(0, n);
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}

/**
 * A byte relay between one of the service's ZMQ sockets and the socket a kernel bound, which reads the
 * ZMTP 3 framing of what the kernel sends and cuts the connection as soon as one message grows past a
 * bound in frames or bytes.
 *
 * Why: libzmq hands a multipart message to the application only once all of its frames have arrived, and
 * its one size option (ZMQ_MAXMSGSIZE) is per frame. Kernel code (which has the connection key and the
 * sockets) can send one message of 60 frames of 15 MB: libzmq assembles 900 MB in the service before
 * anything can look at it. zeromq.js offers no way to receive a message part by part. So the bound is
 * applied here, on the wire, frame header by frame header: a message over it is never assembled (the
 * relay stops before its oversized frame is forwarded; libzmq drops the incomplete message when the
 * connection drops) and the service's socket reconnects through a fresh relay.
 *
 * The service's socket reaches the relay on a Unix socket in a directory only this process can enter
 * (never the kernel's socket directory, which kernel code can write, nor an abstract socket, which any
 * process of the network namespace could connect to).
 */
import { randomUUID } from 'node:crypto';
import { closeSync, constants, fstatSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface MessageBounds {
  /** Frames of one message (identities, delimiter, signature, header, parent, metadata, content, buffers). */
  maxFrames: number;
  /** Bytes of all frames of one message together. */
  maxBytes: number;
}

/** ZMTP 3 greeting: signature (10), version (2), mechanism (20), as-server (1), filler (31). */
const GREETING_BYTES = 64;
const FLAG_MORE = 0x01;
const FLAG_LONG = 0x02;
const FLAG_COMMAND = 0x04;
/** READY, PING, PONG, SUBSCRIBE: a few hundred bytes. */
const MAX_COMMAND_BYTES = 64 * 1024;
/** Until the kernel has bound its socket, the relay tries again this often (as libzmq would). */
const KERNEL_CONNECT_RETRY_MS = 10;

/**
 * Reads the kernel-to-service half of a ZMTP 3 stream chunk by chunk and says when it must be cut.
 * Only frame headers are looked at; frame bodies are counted and skipped.
 */
export class ZmtpInspector {
  private greetingLeft = GREETING_BYTES;
  private readonly greeting = Buffer.alloc(GREETING_BYTES);
  /** A frame header split across chunks: flags byte and up to 8 size bytes. */
  private header: number[] = [];
  private bodyLeft = 0;
  private frames = 0;
  private bytes = 0;
  /** Why the stream must be cut, once it must. */
  violation?: string;

  constructor(private readonly bounds: MessageBounds) {}

  /** Takes a chunk from the kernel; false (with `violation` set) when it must not be forwarded. */
  accept(chunk: Buffer): boolean {
    if (this.violation) return false;
    let at = 0;
    while (at < chunk.length) {
      if (this.greetingLeft > 0) {
        const take = Math.min(this.greetingLeft, chunk.length - at);
        chunk.copy(this.greeting, GREETING_BYTES - this.greetingLeft, at, at + take);
        this.greetingLeft -= take;
        at += take;
        // Byte 10 is the major version; ZMTP 1 and 2 have other framing, which this does not read.
        if (GREETING_BYTES - this.greetingLeft > 10 && (this.greeting[0] !== 0xff || this.greeting[9] !== 0x7f || this.greeting[10]! < 3)) {
          return this.fail('the kernel does not speak ZMTP 3');
        }
        continue;
      }
      if (this.bodyLeft > 0) {
        const skip = Math.min(this.bodyLeft, chunk.length - at);
        this.bodyLeft -= skip;
        at += skip;
        continue;
      }
      this.header.push(chunk[at++]!);
      const flags = this.header[0]!;
      const sizeBytes = flags & FLAG_LONG ? 8 : 1;
      if (this.header.length < 1 + sizeBytes) continue;
      let size = 0;
      for (let i = 1; i <= sizeBytes; i++) size = size * 256 + this.header[i]!;
      this.header = [];
      if (flags & FLAG_COMMAND) {
        if (size > MAX_COMMAND_BYTES) return this.fail(`a ZMTP command of ${size} bytes`);
      } else {
        this.frames++;
        this.bytes += size;
        if (this.frames > this.bounds.maxFrames) return this.fail(`a message of more than ${this.bounds.maxFrames} frames`);
        if (this.bytes > this.bounds.maxBytes) return this.fail(`a message of more than ${this.bounds.maxBytes} bytes`);
        if (!(flags & FLAG_MORE)) {
          this.frames = 0;
          this.bytes = 0;
        }
      }
      this.bodyLeft = size;
    }
    return true;
  }

  private fail(why: string): false {
    this.violation = why;
    return false;
  }
}

let relayDir: string | undefined;

/** This process's directory of relay sockets (0700, made once, removed at exit). */
export function ownRelayDir(): string {
  if (!relayDir) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pk-zmtp-'));
    relayDir = dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return relayDir;
}

/** open(2)'s O_PATH (Linux): a handle on the inode itself, usable by connect(2) through /proc/self/fd. */
const O_PATH = 0o10000000;

/**
 * Connects to a kernel's endpoint. An `ipc://` socket lives in the kernel's socket directory, which kernel
 * code can write: it could put a link there to any Unix socket of the host (the Docker engine's), and this
 * process runs as root. So the last component is opened without following links and must be a socket,
 * and the connection is made to that very inode (/proc/self/fd/N), not to the name again.
 */
export function connectKernel(endpoint: string): net.Socket {
  if (!endpoint.startsWith('ipc://')) {
    const url = new URL(endpoint.replace(/^tcp:/, 'http:'));
    return net.connect({ host: url.hostname, port: Number(url.port) });
  }
  let fd: number;
  try {
    fd = openSync(endpoint.slice('ipc://'.length), O_PATH | constants.O_NOFOLLOW);
  } catch (error) {
    // Not bound yet (ENOENT): the caller tries again, as for a refused connection.
    const socket = new net.Socket();
    process.nextTick(() => socket.destroy(error as Error));
    return socket;
  }
  let held = true;
  const release = () => {
    if (held) closeSync(fd);
    held = false;
  };
  if (!fstatSync(fd).isSocket()) {
    release();
    const socket = new net.Socket();
    process.nextTick(() => socket.destroy(new Error('the kernel endpoint is not a socket (a link?)')));
    return socket;
  }
  const socket = net.connect({ path: `/proc/self/fd/${fd}` });
  socket.once('connect', release).once('error', release).once('close', release);
  return socket;
}

/** One relay: the service's ZMQ socket connects to `endpoint`; each connection is relayed to the kernel's. */
export class ZmtpGuard {
  readonly endpoint: string;
  private readonly socketPath: string;
  private readonly server: net.Server;
  private readonly open = new Set<net.Socket>();
  private closed = false;

  constructor(
    private readonly kernelEndpoint: string,
    private readonly bounds: MessageBounds,
    private readonly onViolation: (why: string) => void,
  ) {
    this.socketPath = path.join(ownRelayDir(), randomUUID());
    this.endpoint = `ipc://${this.socketPath}`;
    this.server = net.createServer({ pauseOnConnect: true }, (local) => this.relay(local));
    this.server.on('error', (error) => this.onViolation(`relay socket: ${error.message}`));
    // Until it listens, the ZMQ socket's connects fail and libzmq retries: nothing to wait for here.
    this.server.listen(this.socketPath);
  }

  private track(socket: net.Socket): void {
    this.open.add(socket);
    socket.once('close', () => this.open.delete(socket));
    socket.on('error', () => socket.destroy());
  }

  private relay(local: net.Socket): void {
    if (this.closed) return void local.destroy();
    this.track(local);
    // The service's side waits (paused) until the kernel's socket takes a connection: a kernel still
    // booting has not bound it yet.
    const attempt = () => {
      if (this.closed || local.destroyed) return;
      const kernel = connectKernel(this.kernelEndpoint);
      const refused = () => {
        kernel.destroy();
        setTimeout(attempt, KERNEL_CONNECT_RETRY_MS).unref();
      };
      kernel.once('error', refused);
      kernel.once('connect', () => {
        kernel.off('error', refused);
        if (this.closed || local.destroyed) return void kernel.destroy();
        this.track(kernel);
        this.join(local, kernel);
      });
    };
    attempt();
  }

  private join(local: net.Socket, kernel: net.Socket): void {
    const cut = () => {
      local.destroy();
      kernel.destroy();
    };
    local.once('close', cut);
    kernel.once('close', cut);
    local.setNoDelay?.(true);
    // The service's own messages go as they are.
    local.pipe(kernel);
    local.resume();
    const inspector = new ZmtpInspector(this.bounds);
    kernel.on('data', (chunk: Buffer) => {
      if (!inspector.accept(chunk)) {
        this.onViolation(inspector.violation!);
        cut();
        return;
      }
      if (!local.write(chunk)) {
        kernel.pause();
        local.once('drain', () => kernel.resume());
      }
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
    for (const socket of this.open) socket.destroy();
    this.open.clear();
    rmSync(this.socketPath, { force: true });
  }
}

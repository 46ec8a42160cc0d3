/**
 * Bounds what a link peer can make this process hold: a whole link message, not only each frame.
 *
 * Why a relay: libzmq hands a multipart message over only once its last frame has arrived, and until then
 * keeps every frame; its ZMQ_MAXMSGSIZE bounds each frame alone and its high-water mark counts whole
 * messages only (test/unit/link-guard.test.ts shows both). So a peer holding the cluster key could send
 * one message of 67 frames of 16 MiB, or of endless frames, and this process would assemble it. The link
 * is CurveZMQ: each frame goes as an encrypted MESSAGE command whose MORE flag is inside the box, so,
 * unlike a kernel's plain ZMTP (zmtp-guard.ts), a relay cannot see where a message ends. What it can see
 * is every frame's size. So the relay keeps a window: the frames and payload bytes it forwarded that the
 * application has not yet received (the application says what it took, `consumed`) stay within the
 * bounds of one link message. A frame that would pass them waits (its last header byte withheld, so
 * libzmq allocates nothing for it) until the application has taken what came before; a message larger
 * than the bounds can never complete, so a window that stays full for STALL_MS is such a message and the
 * connection is cut (libzmq drops the incomplete message with it).
 *
 * The window also counts ZMTP's own PING/PONG (encrypted as MESSAGE too, never handed to the application),
 * so the link sockets send none: liveness is the link's own heartbeat, and the relay cuts a connection
 * silent past the peer timeout, as libzmq's heartbeat timeout did.
 *
 * Only the peer's direction is read; what this process sends passes as it is. The local ZMQ socket reaches
 * the relay on a Unix socket in this process's private directory (ownRelayDir), never a port.
 */
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ownRelayDir, type MessageBounds } from '../transport/zmtp-guard.js';

/** A CurveZMQ MESSAGE command around a frame: "\x07MESSAGE", an 8-byte nonce, the 16-byte MAC, the flags byte. */
export const CURVE_MESSAGE_OVERHEAD = 33;
const GREETING_BYTES = 64;
const FLAG_LONG = 0x02;
const FLAG_COMMAND = 0x04;
/** HELLO, WELCOME, INITIATE (with its metadata), READY, ERROR: a few hundred bytes. */
const MAX_COMMAND_BYTES = 64 * 1024;
/** A window full this long holds a message past the bounds (the application reads at once). */
export const STALL_MS = 5000;
/** A connection that has not finished its handshake within this long is cut (as libzmq's handshake interval). */
const HANDSHAKE_MS = 5000;

/**
 * Reads the peer's half of a CurveZMQ stream and says how much of each chunk may go on now. Pure: no
 * sockets, so that the bounds are tested byte by byte.
 */
export class CurveFrameWindow {
  private greetingLeft = GREETING_BYTES;
  private readonly greeting = Buffer.alloc(GREETING_BYTES);
  private header: number[] = [];
  private bodyLeft = 0;
  /** Frames and payload bytes forwarded and not yet taken by the application. */
  inFlightFrames = 0;
  inFlightBytes = 0;
  /** Data frames seen: the handshake is over once there is one. */
  dataFrames = 0;
  violation?: string;

  constructor(private readonly bounds: MessageBounds) {}

  /**
   * Takes a chunk from the peer and answers how many of its bytes may be forwarded now. Fewer than all:
   * the rest waits (feed it again, from there, once `consumed` made room); with `violation` set, nothing
   * more may go.
   */
  accept(chunk: Buffer): number {
    if (this.violation) return 0;
    let at = 0;
    while (at < chunk.length) {
      if (this.greetingLeft > 0) {
        const take = Math.min(this.greetingLeft, chunk.length - at);
        chunk.copy(this.greeting, GREETING_BYTES - this.greetingLeft, at, at + take);
        this.greetingLeft -= take;
        at += take;
        if (GREETING_BYTES - this.greetingLeft > 10 && (this.greeting[0] !== 0xff || this.greeting[9] !== 0x7f || this.greeting[10]! < 3)) {
          return this.fail('the peer does not speak ZMTP 3');
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
      if (flags & FLAG_COMMAND) {
        if (size > MAX_COMMAND_BYTES) return this.fail(`a ZMTP command of ${size} bytes`);
      } else {
        const payload = size - CURVE_MESSAGE_OVERHEAD;
        if (payload < 0) return this.fail('a frame that is no CurveZMQ MESSAGE');
        if (payload > this.bounds.maxBytes) return this.fail(`a frame of ${payload} bytes (a link message holds at most ${this.bounds.maxBytes})`);
        if (this.inFlightFrames + 1 > this.bounds.maxFrames || this.inFlightBytes + payload > this.bounds.maxBytes) {
          // Withheld from its last header byte on: fed again from there once there is room.
          this.header.pop();
          return at - 1;
        }
        this.inFlightFrames++;
        this.inFlightBytes += payload;
        this.dataFrames++;
      }
      this.header = [];
      this.bodyLeft = size;
    }
    return at;
  }

  /** The application received a message of `frames` frames and `bytes` payload bytes from this peer. */
  consumed(frames: number, bytes: number): void {
    // Messages complete in the socket when an earlier connection dropped are taken against this one: never below 0.
    this.inFlightFrames = Math.max(0, this.inFlightFrames - frames);
    this.inFlightBytes = Math.max(0, this.inFlightBytes - bytes);
  }

  private fail(why: string): number {
    this.violation = why;
    return 0;
  }
}

/** What a link message is at most: the relay's window. */
export interface LinkRelayOptions {
  bounds: MessageBounds;
  /** A peer that sends nothing this long is gone (it heartbeats every second). */
  idleMs: number;
  /** Why the relay cut the connection (a violation, silence); not called for an ordinary close. */
  onCut: (why: string) => void;
  onClose?: () => void;
}

/** One relayed connection: `remote` is the peer (read through the window), `local` this process's ZMQ socket. */
export class LinkRelay {
  private readonly window: CurveFrameWindow;
  private held?: Buffer;
  private localBusy = false;
  private stallTimer?: NodeJS.Timeout;
  private readonly idleTimer: NodeJS.Timeout;
  private lastHeard = Date.now();
  private readonly started = Date.now();
  private closed = false;

  constructor(
    private readonly remote: net.Socket,
    private readonly local: net.Socket,
    private readonly options: LinkRelayOptions,
  ) {
    this.window = new CurveFrameWindow(options.bounds);
    remote.setNoDelay?.(true);
    local.setNoDelay?.(true);
    for (const socket of [remote, local]) {
      socket.on('error', () => this.close());
      socket.once('close', () => this.close());
    }
    local.pipe(remote);
    remote.on('data', (chunk: Buffer) => {
      this.lastHeard = Date.now();
      if (this.held) {
        // Paused, yet a chunk already read came: it waits behind the held bytes.
        this.held = Buffer.concat([this.held, chunk]);
        return;
      }
      this.push(chunk);
    });
    this.idleTimer = setInterval(() => {
      const now = Date.now();
      if (this.window.dataFrames === 0 && now - this.started > HANDSHAKE_MS) this.cut('no CurveZMQ handshake within 5 s');
      else if (now - this.lastHeard > this.options.idleMs) this.cut(`silent for ${this.options.idleMs} ms`);
    }, Math.min(1000, this.options.idleMs));
    this.idleTimer.unref();
    remote.resume();
  }

  /** The frames and bytes in flight to the application (tests, the agent's status). */
  get inFlight(): { frames: number; bytes: number } {
    return { frames: this.window.inFlightFrames, bytes: this.window.inFlightBytes };
  }

  /** The application received one message from this connection: room for what waits. */
  consumed(frames: number, bytes: number): void {
    this.window.consumed(frames, bytes);
    const held = this.held;
    if (!held || this.closed) return;
    this.held = undefined;
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    this.push(held);
  }

  private push(chunk: Buffer): void {
    if (this.closed) return;
    const forward = this.window.accept(chunk);
    if (this.window.violation) return this.cut(this.window.violation);
    if (forward > 0 && !this.local.write(forward === chunk.length ? chunk : chunk.subarray(0, forward)) && !this.localBusy) {
      this.localBusy = true;
      this.remote.pause();
      this.local.once('drain', () => {
        this.localBusy = false;
        if (!this.held && !this.closed) this.remote.resume();
      });
    }
    if (forward < chunk.length) {
      this.held = chunk.subarray(forward);
      this.remote.pause();
      const { maxFrames, maxBytes } = this.options.bounds;
      this.stallTimer ??= setTimeout(() => this.cut(`a link message of more than ${maxFrames} frames or ${maxBytes} bytes (its frames waited ${STALL_MS} ms untaken)`), STALL_MS);
      this.stallTimer.unref();
      return;
    }
    if (!this.localBusy) this.remote.resume();
  }

  private cut(why: string): void {
    if (this.closed) return;
    this.options.onCut(why);
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.stallTimer);
    clearInterval(this.idleTimer);
    this.held = undefined;
    this.remote.destroy();
    this.local.destroy();
    this.options.onClose?.();
  }
}

/** A private Unix socket path for one relay endpoint (ownRelayDir is 0700, this process's only). */
export function privateEndpointPath(): string {
  return path.join(ownRelayDir(), `link-${randomUUID()}`);
}

/** host:port as a gateway names an agent, or as an agent listens ("*" and "[::1]" too). */
export function parseHostPort(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(':');
  let host = address.slice(0, at);
  if (host === '*' || host === '') host = '0.0.0.0';
  host = host.replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(address.slice(at + 1)) };
}

/**
 * A gateway's side: its DEALER connects to `endpoint` (a private Unix socket), each of its connections is
 * relayed to the agent's TCP address with the agent's direction read through the window. A DEALER has one
 * connection at a time, so what its reader takes is counted against the current one.
 */
export class LinkDialer {
  readonly endpoint: string;
  private readonly socketPath = privateEndpointPath();
  private readonly server: net.Server;
  private current?: LinkRelay;
  private closed = false;

  constructor(
    private readonly address: string,
    private readonly options: Omit<LinkRelayOptions, 'onClose'>,
  ) {
    this.endpoint = `ipc://${this.socketPath}`;
    this.server = net.createServer({ pauseOnConnect: true }, (local) => this.dial(local));
    this.server.on('error', (error) => this.options.onCut(`relay socket: ${error.message}`));
    this.server.listen(this.socketPath);
  }

  private dial(local: net.Socket): void {
    if (this.closed) return void local.destroy();
    const { host, port } = parseHostPort(this.address);
    const remote = net.connect({ host, port });
    remote.pause();
    // Until the relay holds them (refused: the DEALER reconnects, and this is dialled again).
    remote.once('error', () => local.destroy());
    local.once('error', () => remote.destroy());
    remote.once('connect', () => {
      if (this.closed) return void remote.destroy();
      this.current?.close();
      const relay: LinkRelay = new LinkRelay(remote, local, {
        ...this.options,
        onClose: () => {
          if (this.current === relay) this.current = undefined;
        },
      });
      this.current = relay;
      local.resume();
    });
    local.once('close', () => remote.destroy());
  }

  consumed(frames: number, bytes: number): void {
    this.current?.consumed(frames, bytes);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.current?.close();
    this.server.close();
    rmSync(this.socketPath, { force: true });
  }
}

/** Payload bytes of a message's frames (what the window counted). */
export function payloadBytes(frames: Buffer[], from = 0): number {
  let bytes = 0;
  for (let i = from; i < frames.length; i++) bytes += frames[i]!.length;
  return bytes;
}

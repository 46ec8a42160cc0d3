/**
 * The wire format of the gateway–agent link, shared by both ends. A gateway's DEALER talks to an agent's
 * ROUTER over TCP with CurveZMQ; every message is multipart, its first frame one ASCII letter naming it.
 * Upper case goes gateway -> agent, lower case agent -> gateway:
 *
 *   C id method json-args       a call of the agent's provisioner        -> R id json-value | E id json-error
 *   H                           heartbeat (every HEARTBEAT_INTERVAL_MS)  -> h
 *   X id json-exec              runs a command beside a kernel           -> o id stream chunk ..., R/E id
 *   I id [chunk]                a chunk of that command's stdin (none: EOF) -> a id (one credit back)
 *   A id                        one output chunk taken (one credit back)
 *   Z id                        aborts that command
 *   O conn json-ref             opens a connection to a kernel's sockets (through ZmtpGuard relays)
 *   K conn channel frames...    one signed Jupyter message to the kernel, frames as they go on the wire
 *   Q conn                      closes the connection
 *                               d json-death    a kernel's container died (to every live gateway)
 *                               k conn channel oom frames...   one message from the kernel, as it came, and
 *                                   the kernel's OOM kill count read as it was relayed (empty: unknown)
 *                               b conn why      the relay cut a message the kernel sent (too large)
 *                               q conn why      the agent closed the connection (kernel removed, unknown)
 *
 * Frames of Jupyter messages are relayed raw: the gateway signs and verifies them with the kernel's key
 * (src/transport/kernel-connection.ts), the agent never needs to look inside.
 */
import type * as zmq from 'zeromq';
import { MAX_KERNEL_MESSAGE_BYTES, MAX_KERNEL_MESSAGE_FRAMES } from '../transport/kernel-sockets.js';

export const TYPE = {
  call: 'C',
  heartbeat: 'H',
  exec: 'X',
  stdin: 'I',
  outputAck: 'A',
  abort: 'Z',
  open: 'O',
  toKernel: 'K',
  closeConn: 'Q',
  result: 'R',
  error: 'E',
  heartbeatAnswer: 'h',
  death: 'd',
  output: 'o',
  stdinAck: 'a',
  fromKernel: 'k',
  badFrame: 'b',
  closedConn: 'q',
} as const;

/** libzmq's ZMQ_MAXMSGSIZE (per frame) on both ends: a kernel's largest message and a little room. */
export const LINK_MAX_FRAME_BYTES = MAX_KERNEL_MESSAGE_BYTES + 64 * 1024;
/** A link message is a kernel message and at most four frames of its own (`k conn channel oom`). */
export const LINK_MAX_FRAMES = MAX_KERNEL_MESSAGE_FRAMES + 4;
/**
 * A whole link message at most, in frames and payload bytes (the routing id a ROUTER adds is not on the
 * wire): the window of every link relay (link-guard.ts), so no peer makes a side assemble more.
 */
export const LINK_MAX_MESSAGE_BYTES = MAX_KERNEL_MESSAGE_BYTES + 64 * 1024;
export const LINK_MESSAGE_BOUNDS = { maxFrames: LINK_MAX_FRAMES, maxBytes: LINK_MAX_MESSAGE_BYTES };
/** TCP connections an agent's link port holds at once (each has a ROUTER of its own); more are refused. */
export const MAX_LINK_CONNECTIONS = 256;
/** stdin is sent in chunks of at most this, and each side holds at most EXEC_WINDOW chunks unacknowledged. */
export const EXEC_CHUNK_BYTES = 64 * 1024;
export const EXEC_WINDOW = 8;
/** A gateway says it is alive this often; an agent answers, so each side sees the other go. */
export const HEARTBEAT_INTERVAL_MS = 1000;
/**
 * Calls one gateway may have in flight at one agent, and commands running at once. Past it: 503. The
 * gateway's usage sampler asks about every kernel at once, so this is well above a node's kernel count.
 */
export const MAX_CALLS_IN_FLIGHT = 512;
export const MAX_EXECS_PER_PEER = 16;
/**
 * A call's arguments, and a command's spec, at most (a launch request with its environment is a few KB);
 * and the argument bytes of one gateway's calls in flight together. Past them: 400 / 503.
 */
export const MAX_CALL_ARGS_BYTES = 1024 * 1024;
export const MAX_CALL_BYTES_IN_FLIGHT = 16 * 1024 * 1024;
/** Bytes of one gateway's messages waiting for kernels that do not read; past it they are dropped. */
export const MAX_PENDING_KERNEL_BYTES_PER_PEER = 64 * 1024 * 1024;
/** Gateways (routing ids) an agent keeps state for; past it the one silent longest loses its state. */
export const MAX_PEERS = 256;
/**
 * What a side holds queued for its socket at most (the socket's own HWM is past this). Only kernel traffic
 * is dropped past it: a kernel's output, as a Jupyter client would lose it past its own HWM.
 */
export const MAX_QUEUED_BYTES = 64 * 1024 * 1024;

export interface LinkError {
  code: string;
  message: string;
}

export const str = (frame: Buffer | undefined): string => (frame ? frame.toString('utf8') : '');

/**
 * Serialises sends on one zeromq socket (zeromq 6 rejects a send while another is in flight) with a
 * bound on what waits: past MAX_QUEUED_BYTES a droppable message is dropped (and counted), others wait.
 */
export class SendQueue {
  private readonly waiting: Array<{ frames: Buffer[]; bytes: number; done: (error?: Error) => void }> = [];
  private sending = false;
  private queuedBytes = 0;
  dropped = 0;

  constructor(private readonly socket: zmq.Socket & { send(frames: Buffer[]): Promise<void> }) {}

  send(frames: Buffer[], droppable = false): Promise<void> {
    let bytes = 0;
    for (const frame of frames) bytes += frame.length;
    if (droppable && this.queuedBytes + bytes > MAX_QUEUED_BYTES) {
      this.dropped++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ frames, bytes, done: (error) => (error ? reject(error) : resolve()) });
      this.queuedBytes += bytes;
      if (!this.sending) void this.pump();
    });
  }

  private async pump(): Promise<void> {
    this.sending = true;
    while (this.waiting.length > 0) {
      const next = this.waiting.shift()!;
      try {
        await this.socket.send(next.frames);
        next.done();
      } catch (error) {
        next.done(error as Error);
      } finally {
        this.queuedBytes -= next.bytes;
      }
    }
    this.sending = false;
  }

  /** Fails what still waits (the socket is closing). */
  clear(): void {
    for (const item of this.waiting.splice(0)) item.done(new Error('link closed'));
    this.queuedBytes = 0;
  }
}

/**
 * The only importer of zeromq for kernels: one client connection to a kernel's sockets, carrying raw
 * (still signed) frames. shell, control and stdin are DEALERs, iopub a SUB subscribed to everything. The
 * heartbeat socket is not used: a kernel dies with its container, whose death the runtime reports.
 *
 * Signing and verifying is not done here (signed-transport.ts does it) so that a node agent can relay a
 * remote gateway's frames to its kernel without holding, or needing, the kernel's key.
 *
 * zeromq 6 rejects a send while another is in flight on the same socket, so sends on each socket are
 * serialised through a promise chain.
 */
import { randomUUID } from 'node:crypto';
import * as zmq from 'zeromq';
import { endpoint, type ConnectionInfo } from '../protocol/connection-file.js';
import type { Channel } from '../protocol/messages.js';
import { ZmtpGuard, type MessageBounds } from './zmtp-guard.js';

/**
 * The largest message taken from a kernel, all frames together. A kernel runs strangers' code, which can
 * send anything on its sockets (the key is in its connection file): one 300 MB message grew this process
 * by over 1 GB, and so did one of 60 frames of 15 MB each. libzmq's own limit (ZMQ_MAXMSGSIZE, kept here
 * too) is per frame and it assembles a whole multipart message before handing it over, so every socket
 * reaches its kernel through a ZmtpGuard, which cuts the connection as soon as a message passes these
 * bounds, before the rest arrives; the socket then reconnects (iopub is reopened: openIopub). Only the
 * offending kernel notices: the reply or output it was sending is lost. 16 MiB holds any sensible output
 * (images, HTML tables); 64 frames, a message with dozens of binary buffers (widgets).
 */
export const MAX_KERNEL_MESSAGE_BYTES = 16 * 1024 * 1024;
export const MAX_KERNEL_MESSAGE_FRAMES = 64;
const MESSAGE_BOUNDS: MessageBounds = { maxFrames: MAX_KERNEL_MESSAGE_FRAMES, maxBytes: MAX_KERNEL_MESSAGE_BYTES };

/**
 * A kernel binds its sockets only once it has booted: until then every connect is refused and libzmq
 * retries after this long. A cold start waits on average half of it after the kernel is up; a retry is
 * one failed connect() on a local socket path, so a short interval costs next to nothing.
 */
const RECONNECT_INTERVAL_MS = 10;

export type FramesListener = (channel: Channel, frames: Buffer[]) => void;

/** Raw frames to and from a kernel's channels: what a signed transport sits on. */
export interface FrameTransport {
  /** Sends one message's frames on a channel (iopub is receive-only). */
  sendFrames(channel: Channel, frames: Buffer[]): Promise<void>;
  /** The one listener of every message the kernel sends. */
  onFrames(listener: FramesListener): void;
  close(): void;
}

type Readable = zmq.Dealer | zmq.Subscriber;

export class KernelSockets implements FrameTransport {
  private readonly sockets: Record<Channel, Readable>;
  private readonly sendChains = new Map<Channel, Promise<unknown>>();
  private listener?: FramesListener;
  /** What each ZMQ socket connects to: its relay (see ZmtpGuard), or the kernel's own endpoint when trusted. */
  private readonly endpoints: Record<Channel, string>;
  private readonly guards: ZmtpGuard[] = [];
  private closed = false;

  /**
   * `trustedKernel`: connect straight to the kernel's sockets, without relays. Only for a peer whose code
   * is trusted, such as the benchmark's direct-ZMQ baseline (a kernel's own speed); never for kernels
   * that run strangers' code. `onBadFrame` hears of messages cut by a relay and of failed reads.
   */
  constructor(
    info: ConnectionInfo,
    private readonly onBadFrame?: (error: Error) => void,
    options: { trustedKernel?: boolean } = {},
  ) {
    const reach = (channel: Channel, bounds: MessageBounds): string => {
      if (options.trustedKernel) return endpoint(info, channel);
      const guard = new ZmtpGuard(endpoint(info, channel), bounds, (why) =>
        this.onBadFrame?.(new Error(`${channel}: ${why}; message dropped, connection reset`)),
      );
      this.guards.push(guard);
      return guard.endpoint;
    };
    this.endpoints = {
      shell: reach('shell', MESSAGE_BOUNDS),
      control: reach('control', MESSAGE_BOUNDS),
      stdin: reach('stdin', MESSAGE_BOUNDS),
      iopub: reach('iopub', MESSAGE_BOUNDS),
    };
    // shell and stdin share one routing identity, as jupyter_client's sockets do: ipykernel sends
    // input_request on stdin to the identity that sent the execute_request on shell.
    const routingId = randomUUID();
    const dealer = () => new zmq.Dealer({ linger: 0, reconnectInterval: RECONNECT_INTERVAL_MS, routingId, maxMessageSize: MAX_KERNEL_MESSAGE_BYTES });
    this.sockets = { shell: dealer(), control: dealer(), stdin: dealer(), iopub: this.openIopub() };
    for (const [channel, socket] of Object.entries(this.sockets) as [Channel, Readable][]) {
      socket.connect(this.endpoints[channel]);
      void this.readLoop(channel, socket);
    }
  }

  /** The iopub SUB socket, replaced by a fresh one whenever its connection drops (see MAX_KERNEL_MESSAGE_BYTES). */
  private openIopub(): zmq.Subscriber {
    const iopub = new zmq.Subscriber({ linger: 0, reconnectInterval: RECONNECT_INTERVAL_MS, maxMessageSize: MAX_KERNEL_MESSAGE_BYTES });
    iopub.subscribe();
    iopub.events.on('disconnect', () => {
      if (this.closed || this.sockets.iopub !== iopub) return;
      iopub.close();
      const fresh = this.openIopub();
      this.sockets.iopub = fresh;
      fresh.connect(this.endpoints.iopub);
      void this.readLoop('iopub', fresh);
    });
    return iopub;
  }

  onFrames(listener: FramesListener): void {
    this.listener = listener;
  }

  sendFrames(channel: Channel, frames: Buffer[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('kernel connection is closed'));
    if (channel === 'iopub') return Promise.reject(new Error('cannot send on iopub'));
    const socket = this.sockets[channel] as zmq.Dealer;
    // Straight to the socket when nothing is queued on it (the usual case): no extra turn of the loop.
    const previous = this.sendChains.get(channel);
    const next = previous ? previous.then(() => socket.send(frames)) : socket.send(frames);
    // The chain must not stay rejected after one failed send, and is dropped once it has drained.
    const drained = () => {
      if (this.sendChains.get(channel) === settled) this.sendChains.delete(channel);
    };
    const settled: Promise<void> = next.then(drained, drained);
    this.sendChains.set(channel, settled);
    return next;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const socket of Object.values(this.sockets)) socket.close();
    for (const guard of this.guards) guard.close();
    this.listener = undefined;
  }

  private async readLoop(channel: Channel, socket: Readable): Promise<void> {
    try {
      for await (const frames of socket) this.listener?.(channel, frames);
    } catch (error) {
      if (!this.closed) this.onBadFrame?.(error as Error);
    }
  }
}

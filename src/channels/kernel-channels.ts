/**
 * The WebSocket clients of one kernel and how messages flow between them and the kernel's single ZMQ
 * connection (shared with the v1 API and notebook executions).
 *
 * - iopub is broadcast: encoded once per framing and the same buffer written to every client.
 * - shell, control and stdin replies go to the client whose session sent the request
 *   (`parent_header.session`); each Jupyter client uses its own session id. Replies to the service's own
 *   requests (v1 queries, readiness probes) belong to no client and are not forwarded.
 * - A client's messages are signed by the service and sent on as they are, whatever their type.
 *
 * This is the hot path of the channels API: nothing here logs above debug, keeps timers or re-encodes a
 * message per client.
 */
import type { Writable } from 'node:stream';
import WebSocket from 'ws';
import type { LiveKernel } from '../kernels/live-kernel.js';
import type { Logger } from '../logger.js';
import {
  newMessage,
  type Channel,
  type ExecutionState,
  type JupyterMessage,
  type MessageHeader,
} from '../protocol/messages.js';
import {
  decodeFrame,
  encodeLegacy,
  encodeV1,
  requestChannel,
  type EncodedFrame,
  type WsFraming,
} from '../protocol/websocket.js';

/**
 * Flow control per connection: a client gets the service's work at most at these rates, so a
 * flood on one connection cannot starve the others. Over budget, the service stops reading the client's
 * socket for a while (TCP pushes back on the client); nothing is dropped.
 */
const FRAMES_PER_SECOND = 1000;
const FRAME_BURST = 1000;
/** Requests of one client sent on to its kernel and not yet taken by ZMQ (the kernel is behind). */
const MAX_PENDING_SENDS = 100;
/**
 * A client that does not read the output its kernel floods would make the service queue it without end
 * (pausing that client's reads does not stop the kernel). Past POLYKERNEL_WS_MAX_BUFFERED_BYTES queued,
 * the connection is closed with 1008 (policy violation) and its queue freed; the kernel's other clients
 * keep theirs. The close frame itself waits behind the unread queue, so the socket is cut after this
 * grace whether or not the client took it.
 */
const OVERFLOW_CLOSE_CODE = 1008;
const OVERFLOW_GRACE_MS = 1000;

/** One open WebSocket and the sessions that have spoken through it. */
export class ChannelClient {
  readonly sessions = new Set<string>();
  private tokens = FRAME_BURST;
  private refilledAt = Date.now();
  private pendingSends = 0;
  private paused = false;
  private recheck?: NodeJS.Timeout;

  private corked = false;
  /** When the client was last heard from: a frame or a pong (keep-alive, see KernelChannels.keepAlive). */
  lastHeard = Date.now();

  /** `transport`: the TCP socket under `ws`, corked while a burst of frames is written (see send). */
  constructor(
    readonly ws: WebSocket,
    readonly framing: WsFraming,
    private readonly transport?: Writable,
    private readonly maxBufferedBytes = 32 * 1024 * 1024,
  ) {}

  /** Counts a frame received from the client against its budget. */
  admit(): void {
    const now = Date.now();
    this.lastHeard = now;
    this.tokens = Math.min(FRAME_BURST, this.tokens + ((now - this.refilledAt) * FRAMES_PER_SECOND) / 1000) - 1;
    this.refilledAt = now;
    this.updateFlow();
  }

  /** Tracks a send of this client's request to the kernel until ZMQ has taken it. */
  sending(sent: Promise<unknown>): void {
    this.pendingSends++;
    this.updateFlow();
    void sent.finally(() => {
      this.pendingSends--;
      this.updateFlow();
    });
  }

  private updateFlow(): void {
    const over = this.tokens < 0 || this.pendingSends > MAX_PENDING_SENDS;
    if (over && !this.paused) {
      this.paused = true;
      this.ws.pause();
    }
    if (!over && this.paused) {
      this.paused = false;
      clearTimeout(this.recheck);
      this.recheck = undefined;
      this.ws.resume();
    }
    // Tokens refill and buffers drain with time, not with events: look again shortly.
    if (this.paused && !this.recheck && this.ws.readyState === WebSocket.OPEN) {
      this.recheck = setTimeout(() => {
        this.recheck = undefined;
        this.admitNothing();
      }, 20);
      this.recheck.unref();
    }
  }

  private admitNothing(): void {
    const now = Date.now();
    this.tokens = Math.min(FRAME_BURST, this.tokens + ((now - this.refilledAt) * FRAMES_PER_SECOND) / 1000);
    this.refilledAt = now;
    this.updateFlow();
  }

  /**
   * Frames written in one turn of the event loop (a kernel's messages often arrive together: status,
   * execute_input, stream) leave in one write system call: the socket is corked until the turn ends.
   */
  send(frame: EncodedFrame): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (this.transport && !this.corked) {
      this.corked = true;
      this.transport.cork();
      process.nextTick(() => {
        this.corked = false;
        this.transport!.uncork();
      });
    }
    this.ws.send(frame.data, { binary: frame.binary });
    if (this.ws.bufferedAmount > this.maxBufferedBytes) this.overflow();
  }

  /** The client let more than its cap of output pile up: closed, and cut off if it does not take the close. */
  private overflow(): void {
    this.close(OVERFLOW_CLOSE_CODE, `the client did not read its output: more than ${this.maxBufferedBytes} bytes queued`);
    const ws = this.ws;
    setTimeout(() => ws.readyState !== WebSocket.CLOSED && ws.terminate(), OVERFLOW_GRACE_MS).unref();
  }

  close(code: number, reason: string): void {
    // A close reason may carry at most 123 bytes.
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(code, Buffer.from(reason).subarray(0, 123).toString());
    }
  }
}

export class KernelChannels {
  private readonly clients = new Set<ChannelClient>();
  private readonly bySession = new Map<string, ChannelClient>();
  private readonly unsubscribe: () => void;

  constructor(readonly kernel: LiveKernel, private readonly log: Logger) {
    this.unsubscribe = kernel.onMessage((channel, msg) => this.fromKernel(channel, msg));
  }

  get size(): number {
    return this.clients.size;
  }

  /**
   * Adds a client. A client that names its session at connect time (`?session_id=`) replaces an open
   * connection of the same session, as jupyter_server does: that is a client reconnecting after a
   * network hiccup whose old socket the server has not noticed closing yet.
   */
  add(client: ChannelClient, sessionId?: string): void {
    if (sessionId) {
      const stale = this.bySession.get(sessionId);
      if (stale && stale !== client) {
        this.log.debug('Replacing a stale connection of the same session', { kernelId: this.kernel.id, session: sessionId });
        this.remove(stale);
        stale.close(1000, 'replaced by a newer connection of the same session');
      }
      this.claim(sessionId, client);
    }
    this.clients.add(client);
  }

  remove(client: ChannelClient): void {
    if (!this.clients.delete(client)) return;
    for (const session of client.sessions) {
      if (this.bySession.get(session) === client) this.bySession.delete(session);
    }
  }

  private claim(session: string, client: ChannelClient): void {
    // The service's own session is never a client's: its replies stay with the v1 API.
    if (session === this.kernel.session || this.bySession.get(session) === client) return;
    this.bySession.set(session, client);
    client.sessions.add(session);
  }

  /** A frame from a client: decoded, checked, and sent to the kernel. A malformed frame is dropped. */
  fromClient(client: ChannelClient, data: Buffer, isBinary: boolean): void {
    client.admit();
    let channel: Exclude<Channel, 'iopub'>;
    let msg: JupyterMessage;
    try {
      const frame = decodeFrame(client.framing, data, isBinary);
      channel = requestChannel(frame.channel);
      msg = frame.msg;
    } catch (error) {
      this.log.debug('Ignored a malformed WebSocket frame', { kernelId: this.kernel.id, error: (error as Error).message });
      return;
    }
    // A session held by another open connection (or the service's own) is not this client's to speak
    // for: the replies would go to that connection, or claiming it would take that connection's replies
    // away. A session whose connection is gone may be taken up (a client reconnecting).
    const holder = this.bySession.get(msg.header.session);
    if (msg.header.session === this.kernel.session || (holder && holder !== client && holder.ws.readyState === WebSocket.OPEN)) {
      this.log.debug('Dropped a message claiming another connection\'s session', { kernelId: this.kernel.id, session: msg.header.session });
      return;
    }
    this.claim(msg.header.session, client);
    const sent = this.kernel.send(channel, msg).catch((error: Error) =>
      this.log.debug('Could not send a client message to the kernel', { kernelId: this.kernel.id, error: error.message }),
    );
    client.sending(sent);
  }

  private fromKernel(channel: Channel, msg: JupyterMessage): void {
    if (channel === 'iopub') {
      this.broadcast(msg);
      return;
    }
    const session = (msg.parent_header as Partial<MessageHeader>).session;
    const client = typeof session === 'string' ? this.bySession.get(session) : undefined;
    if (client) client.send(client.framing === 'v1' ? encodeV1(channel, msg) : encodeLegacy(channel, msg));
  }

  private broadcast(msg: JupyterMessage): void {
    let v1: EncodedFrame | undefined;
    let legacy: EncodedFrame | undefined;
    for (const client of this.clients) {
      client.send(client.framing === 'v1' ? (v1 ??= encodeV1('iopub', msg)) : (legacy ??= encodeLegacy('iopub', msg)));
    }
  }

  /** The iopub status a Jupyter server sends itself when a kernel restarts or dies. */
  broadcastStatus(state: Extract<ExecutionState, 'restarting' | 'dead'>): void {
    this.broadcast(newMessage('status', { execution_state: state }, { session: this.kernel.session }));
  }

  /**
   * Keep-alive, as jupyter_server does it: a ping to every client, and a client not heard from (no frame,
   * no pong) for `silentMs` is cut off: its network path is gone without a close (a laptop asleep, a VPN).
   */
  keepAlive(now: number, silentMs: number): void {
    for (const client of this.clients) {
      if (client.ws.readyState !== WebSocket.OPEN) continue;
      if (now - client.lastHeard > silentMs) client.ws.terminate();
      else client.ws.ping();
    }
  }

  closeAll(code: number, reason: string): void {
    this.unsubscribe();
    for (const client of [...this.clients]) {
      this.remove(client);
      client.close(code, reason);
    }
  }

  /** Stops listening to the kernel once the last client is gone. */
  dispose(): void {
    this.unsubscribe();
  }
}

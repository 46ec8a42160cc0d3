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

/** One open WebSocket and the sessions that have spoken through it. */
export class ChannelClient {
  readonly sessions = new Set<string>();

  constructor(readonly ws: WebSocket, readonly framing: WsFraming) {}

  send(frame: EncodedFrame): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(frame.data, { binary: frame.binary });
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
    this.claim(msg.header.session, client);
    this.kernel.send(channel, msg).catch((error: Error) =>
      this.log.debug('Could not send a client message to the kernel', { kernelId: this.kernel.id, error: error.message }),
    );
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

/**
 * The runner's side of the five kernel sockets, and its only importer of zeromq: ROUTERs for shell,
 * control and stdin, a PUB for iopub, a REP for the heartbeat, bound on the endpoints of the connection
 * file. Messages are signed and checked with the service's own wire code (src/protocol/wire.ts).
 *
 * zeromq 6 rejects a send while another is in flight on the same socket, so sends on each socket go
 * through a promise chain.
 */
import * as zmq from 'zeromq';
import { endpoint, type ConnectionInfo } from '../protocol/connection-file.js';
import type { JupyterMessage } from '../protocol/messages.js';
import { deserialize, MessageSigner, serialize, WireFormatError } from '../protocol/wire.js';

export type ServerChannel = 'shell' | 'control' | 'stdin' | 'iopub';
export type RequestChannel = 'shell' | 'control' | 'stdin';
export type RequestHandler = (channel: RequestChannel, msg: JupyterMessage) => void;

export class KernelSockets {
  private readonly signer: MessageSigner;
  private readonly routers: Record<RequestChannel, zmq.Router>;
  private readonly iopub: zmq.Publisher;
  private readonly heartbeat: zmq.Reply;
  private readonly chains = new Map<ServerChannel, Promise<unknown>>();
  private closed = false;
  /** Bytes handed to iopub sends that have not completed yet: the output backlog. */
  pendingIopubBytes = 0;

  private constructor(info: ConnectionInfo, private readonly onError: (error: Error) => void) {
    this.signer = new MessageSigner(info.key, info.signature_scheme);
    const router = () => new zmq.Router({ linger: 1000, mandatory: false });
    this.routers = { shell: router(), control: router(), stdin: router() };
    // The service reads everything; a high mark far above what one cell's output needs in flight.
    this.iopub = new zmq.Publisher({ linger: 1000, sendHighWaterMark: 100_000 });
    this.heartbeat = new zmq.Reply({ linger: 0 });
  }

  /** `onError` hears of dropped frames (bad signature) and failed sends; neither stops the kernel. */
  static async bind(info: ConnectionInfo, onError: (error: Error) => void): Promise<KernelSockets> {
    const sockets = new KernelSockets(info, onError);
    await Promise.all([
      ...(Object.entries(sockets.routers) as [RequestChannel, zmq.Router][]).map(([channel, socket]) =>
        socket.bind(endpoint(info, channel)),
      ),
      sockets.iopub.bind(endpoint(info, 'iopub')),
      sockets.heartbeat.bind(endpoint(info, 'hb')),
    ]);
    void sockets.echoHeartbeats();
    return sockets;
  }

  /** Starts reading requests; handlers run in arrival order per channel. */
  listen(handler: RequestHandler): void {
    for (const [channel, socket] of Object.entries(this.routers) as [RequestChannel, zmq.Router][]) {
      void this.readLoop(channel, socket, handler);
    }
  }

  /** Signs and sends; on a ROUTER the message's identities route it back to its requester. */
  send(channel: ServerChannel, msg: JupyterMessage): Promise<void> {
    if (this.closed) return Promise.resolve();
    const frames = serialize(msg, this.signer);
    const size = frames.reduce((sum, frame) => sum + frame.length, 0);
    const socket = channel === 'iopub' ? this.iopub : this.routers[channel];
    if (channel === 'iopub') this.pendingIopubBytes += size;
    const previous = this.chains.get(channel) ?? Promise.resolve();
    const next = previous
      .then(() => (this.closed ? undefined : socket.send(frames)))
      .finally(() => {
        if (channel === 'iopub') this.pendingIopubBytes -= size;
      });
    this.chains.set(channel, next.catch(() => undefined));
    return next.catch((error: Error) => this.onError(error));
  }

  /** Waits until every send queued so far went out. */
  async drain(): Promise<void> {
    await Promise.all([...this.chains.values()]);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const socket of [...Object.values(this.routers), this.iopub, this.heartbeat]) socket.close();
  }

  private async readLoop(channel: RequestChannel, socket: zmq.Router, handler: RequestHandler): Promise<void> {
    try {
      for await (const frames of socket) {
        let msg: JupyterMessage;
        try {
          msg = deserialize(frames, this.signer);
        } catch (error) {
          // Unsigned or malformed: not from the holder of our key. Dropped, never acted on.
          if (error instanceof WireFormatError) this.onError(error);
          continue;
        }
        handler(channel, msg);
      }
    } catch (error) {
      if (!this.closed) this.onError(error as Error);
    }
  }

  private async echoHeartbeats(): Promise<void> {
    try {
      for await (const frames of this.heartbeat) await this.heartbeat.send(frames);
    } catch (error) {
      if (!this.closed) this.onError(error as Error);
    }
  }
}

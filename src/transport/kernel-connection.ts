/**
 * A KernelTransport over raw kernel frames (a FrameTransport): messages are signed on the way out and
 * verified on the way in with the kernel's key, here and nowhere else. Whatever carries the frames, the
 * kernel's own sockets on this host (KernelSockets) or a node agent's link (src/cluster), the service
 * signs and verifies exactly the same way.
 *
 * Every message read from any channel goes to the listeners with its channel; replies are matched to
 * their request by `parent_header.msg_id` by whoever sent it.
 */
import type { ConnectionInfo } from '../protocol/connection-file.js';
import type { Channel, JupyterMessage } from '../protocol/messages.js';
import { deserialize, MessageSigner, serialize, WireFormatError } from '../protocol/wire.js';
import { KernelSockets, type FrameTransport } from './kernel-sockets.js';
import type { KernelTransport, MessageListener } from './kernel-transport.js';

export type { MessageListener };
export { MAX_KERNEL_MESSAGE_BYTES } from './kernel-sockets.js';

export class SignedTransport implements KernelTransport {
  private readonly signer: MessageSigner;
  private readonly listeners = new Set<MessageListener>();
  private closed = false;

  constructor(
    private readonly frames: FrameTransport,
    key: string,
    signatureScheme: string,
    private readonly onBadFrame?: (error: Error) => void,
  ) {
    this.signer = new MessageSigner(key, signatureScheme);
    frames.onFrames((channel, raw) => {
      let msg: JupyterMessage;
      try {
        msg = deserialize(raw, this.signer);
      } catch (error) {
        // A frame we cannot verify is dropped, never forwarded: it did not come from our kernel.
        if (error instanceof WireFormatError) this.onBadFrame?.(error);
        return;
      }
      msg.channel = channel;
      delete msg.identities;
      for (const listener of this.listeners) listener(channel, msg);
    });
  }

  onMessage(listener: MessageListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Signs and sends a message on a channel (iopub is receive-only). */
  send(channel: Channel, msg: JupyterMessage): Promise<void> {
    if (this.closed) return Promise.reject(new Error('kernel connection is closed'));
    if (channel === 'iopub') return Promise.reject(new Error('cannot send on iopub'));
    return this.frames.sendFrames(channel, serialize({ ...msg, identities: [] }, this.signer));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.frames.close();
    this.listeners.clear();
  }
}

/** A client connection to the five sockets of a kernel on this host. */
export class KernelConnection extends SignedTransport {
  /** `trustedKernel`: see KernelSockets (the benchmark's direct-ZMQ baseline only). */
  constructor(info: ConnectionInfo, onBadFrame?: (error: Error) => void, options: { trustedKernel?: boolean } = {}) {
    super(new KernelSockets(info, onBadFrame, options), info.key, info.signature_scheme, onBadFrame);
  }
}

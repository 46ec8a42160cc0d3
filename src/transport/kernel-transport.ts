/**
 * How the service talks to one kernel: signed Jupyter messages out on shell, control and stdin, and every
 * message the kernel sends, with its channel, in. A KernelConnection (kernel-connection.ts) reaches a
 * kernel's sockets on this host; a kernel on another node is reached through that node's agent. What
 * uses a kernel sees only this, never where it runs.
 */
import type { Channel, JupyterMessage } from '../protocol/messages.js';

export type MessageListener = (channel: Channel, msg: JupyterMessage) => void;

export interface KernelTransport {
  /** Signs and sends a message on a channel (iopub is receive-only). */
  send(channel: Channel, msg: JupyterMessage): Promise<void>;
  onMessage(listener: MessageListener): () => void;
  close(): void;
}

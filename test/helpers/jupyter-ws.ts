/**
 * A minimal Jupyter WebSocket client for tests, built on `ws` and JupyterLab's own serializer (so the
 * service's codecs are never checked against themselves). It records every message it receives and lets
 * a test wait for the first one matching a predicate.
 */
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import jlab from '@jupyterlab/services/lib/kernel/serialize.js';
import { handshake } from './ws-handshake.js';

export const V1 = 'v1.kernel.websocket.jupyter.org';

export interface WsMessage {
  channel: string;
  header: { msg_id: string; msg_type: string; session: string };
  parent_header: { msg_id?: string; msg_type?: string; session?: string };
  metadata: Record<string, unknown>;
  content: any;
  buffers?: unknown[];
}

export class JupyterWs {
  readonly received: WsMessage[] = [];
  private waiters: { match: (m: WsMessage) => boolean; resolve: (m: WsMessage) => void }[] = [];
  closed?: { code: number; reason: string };

  private constructor(readonly ws: WebSocket, readonly session: string) {
    ws.binaryType = 'arraybuffer';
    ws.on('message', (data: ArrayBuffer | Buffer, isBinary) => {
      const msg = (isBinary ? jlab.deserialize(data as ArrayBuffer, ws.protocol) : JSON.parse(data.toString())) as WsMessage;
      this.received.push(msg);
      this.waiters = this.waiters.filter((w) => (w.match(msg) ? (w.resolve(msg), false) : true));
    });
    ws.on('close', (code, reason) => (this.closed = { code, reason: reason.toString() }));
  }

  static open(url: string, options: { protocols?: string[]; headers?: Record<string, string>; session?: string } = {}): Promise<JupyterWs> {
    const session = options.session ?? randomUUID();
    const full = `${url}${url.includes('?') ? '&' : '?'}session_id=${session}`;
    const ws = new WebSocket(full, options.protocols ?? [], { headers: options.headers });
    const client = new JupyterWs(ws, session);
    return handshake(ws).then(() => client);
  }

  /** Sends a request in this client's session; returns its msg_id. */
  send(channel: string, msgType: string, content: Record<string, unknown> = {}, buffers: ArrayBuffer[] = []): string {
    const msgId = randomUUID();
    const msg = {
      channel,
      header: { msg_id: msgId, msg_type: msgType, session: this.session, username: 'test', date: new Date().toISOString(), version: '5.3' },
      parent_header: {},
      metadata: {},
      content,
      buffers,
    };
    this.ws.send(jlab.serialize(msg as any, this.ws.protocol) as any);
    return msgId;
  }

  /** The first message (already received or still to come) matching `match`. */
  next(match: (m: WsMessage) => boolean, timeoutMs = 15_000, what = 'a matching message'): Promise<WsMessage> {
    const seen = this.received.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        match,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  }

  reply(parentId: string, msgType: string): Promise<WsMessage> {
    return this.next((m) => m.parent_header.msg_id === parentId && m.header.msg_type === msgType, 15_000, msgType);
  }

  /**
   * Asks for kernel_info every second until one is answered, as jupyter_client's wait_for_ready does: a
   * proxy in between may drop what it is sent before its own connection onward is up (jupyter_server
   * 1.23's gateway client queues such a message on a future that never resolves when it arrives before
   * its connect task has run).
   */
  async ready(timeoutMs = 30_000): Promise<WsMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const request = this.send('shell', 'kernel_info_request');
      try {
        return await this.next((m) => m.parent_header.msg_id === request && m.header.msg_type === 'kernel_info_reply', 1000, 'kernel_info_reply');
      } catch {
        if (Date.now() > deadline) throw new Error(`no kernel_info_reply within ${timeoutMs} ms`);
      }
    }
  }

  idle(parentId: string): Promise<WsMessage> {
    return this.next(
      (m) => m.parent_header.msg_id === parentId && m.header.msg_type === 'status' && m.content.execution_state === 'idle',
      15_000,
      'idle status',
    );
  }

  /** Runs code and resolves with the stdout it printed and its execute_reply, once the kernel is idle. */
  async execute(code: string, options: { allowStdin?: boolean } = {}) {
    const id = this.send('shell', 'execute_request', {
      code,
      silent: false,
      store_history: true,
      user_expressions: {},
      allow_stdin: options.allowStdin ?? false,
      stop_on_error: true,
    });
    const reply = await this.reply(id, 'execute_reply');
    await this.idle(id);
    const stdout = this.received
      .filter((m) => m.parent_header.msg_id === id && m.header.msg_type === 'stream')
      .map((m) => m.content.text)
      .join('');
    return { id, reply, stdout };
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close();
    });
  }
}

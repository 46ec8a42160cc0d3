/**
 * A minimal Jupyter channels client (JSON messages over a WebSocket, no subprotocol), the way
 * JupyterLab speaks to jupyter_server. The benchmark uses it against this service and against Jupyter
 * Server alike, so both are measured through the same client code.
 */
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';

export class JupyterWsClient {
  private readonly session = randomUUID();
  private readonly waiters = new Map<string, (msg: any) => void>();

  private constructor(private readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const msg = JSON.parse(data.toString());
      const parent = msg.parent_header?.msg_id;
      if (parent) this.waiters.get(parent)?.(msg);
    });
  }

  static async connect(url: string, headers: Record<string, string> = {}): Promise<JupyterWsClient> {
    const socket = new WebSocket(url, { headers, perMessageDeflate: false });
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    (socket as any)._socket?.setNoDelay?.(true);
    return new JupyterWsClient(socket);
  }

  private send(channel: string, msgType: string, content: Record<string, unknown>): string {
    const msgId = randomUUID();
    this.socket.send(
      JSON.stringify({
        header: { msg_id: msgId, msg_type: msgType, username: 'bench', session: this.session, date: new Date().toISOString(), version: '5.3' },
        parent_header: {},
        metadata: {},
        content,
        buffers: [],
        channel,
      }),
    );
    return msgId;
  }

  /** Sends a request and resolves when its shell reply AND the iopub idle status for it have arrived. */
  request(msgType: string, content: Record<string, unknown>, timeoutMs = 30000): Promise<any> {
    return new Promise((resolve, reject) => {
      let reply: any;
      let idle = false;
      const timer = setTimeout(() => reject(new Error(`${msgType}: no reply in ${timeoutMs} ms`)), timeoutMs);
      const msgId = this.send('shell', msgType, content);
      this.waiters.set(msgId, (msg) => {
        if (msg.channel === 'shell') reply = msg;
        if (msg.channel === 'iopub' && msg.header.msg_type === 'status' && msg.content.execution_state === 'idle') idle = true;
        if (reply && idle) {
          clearTimeout(timer);
          this.waiters.delete(msgId);
          resolve(reply);
        }
      });
    });
  }

  execute(code: string): Promise<any> {
    return this.request('execute_request', { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true });
  }

  close(): void {
    this.socket.close();
  }
}

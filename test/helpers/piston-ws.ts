/** A client of Piston's /api/v2/connect for the tests: every message kept, waits by type, the close code. */
import { WebSocket } from 'ws';

export interface PistonSocket {
  ws: WebSocket;
  messages: any[];
  /** Resolves with the first message (already received or to come) that `match` accepts. */
  next(match: string | ((message: any) => boolean), timeoutMs?: number): Promise<any>;
  closed: Promise<{ code: number; reason: string }>;
  send(message: unknown): void;
  /** stdout data received so far, joined. */
  stdout(): string;
}

export async function openPiston(url: string, headers: Record<string, string> = {}): Promise<PistonSocket> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/api/v2/connect`, { headers });
  const messages: any[] = [];
  const waiters: Array<() => void> = [];
  ws.on('message', (data) => {
    messages.push(JSON.parse(data.toString()));
    for (const wake of waiters.splice(0)) wake();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => {
    resolve({ code, reason: reason.toString() });
    for (const wake of waiters.splice(0)) wake();
  }));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const next = (match: string | ((message: any) => boolean), timeoutMs = 30_000) => {
    const accepts = typeof match === 'string' ? (m: any) => m.type === match : match;
    const deadline = Date.now() + timeoutMs;
    return new Promise<any>((resolve, reject) => {
      const look = () => {
        const found = messages.find(accepts);
        if (found) return resolve(found);
        if (ws.readyState === WebSocket.CLOSED) return reject(new Error(`closed before a matching message; got ${JSON.stringify(messages).slice(0, 2000)}`));
        if (Date.now() > deadline) return reject(new Error(`no matching message in ${timeoutMs} ms; got ${JSON.stringify(messages).slice(0, 2000)}`));
        waiters.push(look);
        setTimeout(look, Math.max(0, Math.min(1000, deadline - Date.now()))).unref();
      };
      look();
    });
  };
  return {
    ws,
    messages,
    next,
    closed,
    send: (message) => ws.send(typeof message === 'string' ? message : JSON.stringify(message)),
    stdout: () => messages.filter((m) => m.type === 'data' && m.stream === 'stdout').map((m) => m.data).join(''),
  };
}

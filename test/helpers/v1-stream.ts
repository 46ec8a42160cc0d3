/**
 * A client of the v1 streaming socket (`/v1/stream/kernel/:id/execute`) for tests, on `ws`: it records
 * every frame with the time it arrived, and lets a test wait for the first frame matching a predicate or
 * run a request to its `finished` frame.
 */
import WebSocket from 'ws';
import { handshake } from './ws-handshake.js';

export interface StreamFrame {
  runId: string | null;
  status: string;
  exitCode?: number | null;
  console?: [string, unknown][];
  msg?: string;
  error?: { type: string; title: string; status: number; detail: string };
  /** When the test received it (Date.now()). */
  at: number;
}

export const streamUrl = (baseUrl: string, kernelId: string) => `${baseUrl.replace(/^http/, 'ws')}/v1/stream/kernel/${kernelId}/execute`;

/** stdout and stderr items of frames, joined in order. */
export const textOf = (frames: StreamFrame[]) =>
  frames.flatMap((f) => f.console ?? []).filter(([kind]) => kind === 'stdout' || kind === 'stderr').map(([, text]) => text).join('');

export class StreamClient {
  readonly frames: StreamFrame[] = [];
  closed?: { code: number; reason: string };
  private waiters: { match: (f: StreamFrame) => boolean; resolve: (f: StreamFrame) => void }[] = [];
  private closeWaiters: (() => void)[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const frame = { ...JSON.parse(data.toString()), at: Date.now() } as StreamFrame;
      this.frames.push(frame);
      this.waiters = this.waiters.filter((w) => (w.match(frame) ? (w.resolve(frame), false) : true));
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      for (const wake of this.closeWaiters.splice(0)) wake();
    });
  }

  static open(url: string, headers: Record<string, string> = {}): Promise<StreamClient> {
    const ws = new WebSocket(url, { headers });
    const client = new StreamClient(ws);
    return handshake(ws).then(() => client);
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' || Buffer.isBuffer(frame) ? frame : JSON.stringify(frame));
  }

  /** The first frame (already received, from index `from` on, or still to come) matching `match`. */
  next(match: (f: StreamFrame) => boolean, timeoutMs = 30_000, what = 'a matching frame', from = 0): Promise<StreamFrame> {
    const seen = this.frames.slice(from).find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${timeoutMs} ms; frames: ${JSON.stringify(this.frames).slice(0, 2000)}`)), timeoutMs);
      this.waiters.push({
        match: (f) => this.frames.indexOf(f) >= from && match(f),
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
      });
    });
  }

  /** Sends a run and resolves with its frames up to its `finished` (or `exec-timeout`, or an error frame). */
  async run(frame: Record<string, unknown>, timeoutMs = 60_000): Promise<StreamFrame[]> {
    const from = this.frames.length;
    this.send(frame);
    const end = await this.next((f) => f.status === 'finished' || f.status === 'exec-timeout' || f.status === 'error', timeoutMs, 'the end of the run', from);
    return this.frames.slice(from, this.frames.indexOf(end) + 1);
  }

  /** The next error frame from now on. */
  async error(frame: unknown, timeoutMs = 10_000): Promise<StreamFrame> {
    const from = this.frames.length;
    this.send(frame);
    return this.next((f) => f.status === 'error', timeoutMs, 'an error frame', from);
  }

  whenClosed(timeoutMs = 10_000): Promise<{ code: number; reason: string }> {
    if (this.closed) return Promise.resolve(this.closed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`socket not closed within ${timeoutMs} ms`)), timeoutMs);
      this.closeWaiters.push(() => {
        clearTimeout(timer);
        resolve(this.closed!);
      });
    });
  }

  close(): void {
    this.ws.close();
  }
}

/**
 * The ZAP handler (ZeroMQ RFC 27) of a node agent: libzmq asks it about every peer that completed a
 * CurveZMQ handshake, and only a peer whose public key is the cluster's (so which holds the cluster
 * secret) is let in. Without a handler bound, libzmq would admit every Curve client, so the agent binds
 * this before its link socket.
 *
 * zeromq.js: a ROUTER bound to inproc://zeromq.zap.01 in the context of the socket it guards (the default
 * context here).
 */
import * as zmq from 'zeromq';
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from '../logger.js';
import { z85Encode } from './z85.js';

const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';
/** One refusal logged per this long at most, with the count since: a peer trying keys cannot flood the log. */
const REFUSAL_LOG_INTERVAL_MS = 1000;

export class ZapHandler {
  private readonly socket = new zmq.Router({ linger: 0 });
  /** Per kind of refusal (ZAP, each handshake failure), so one kind flooding does not hide another. */
  private readonly logged = new Map<string, { last: number; since: number }>();
  refused = 0;

  constructor(
    private readonly allowedKey: Buffer,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.socket.bind(ZAP_ENDPOINT);
    void this.serve();
  }

  private async serve(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        // [routing id, empty, version, request id, domain, address, identity, mechanism, credentials...]
        const [routing, , version, requestId, , address, , mechanism, clientKey] = frames;
        const ok =
          version?.toString() === '1.0' &&
          mechanism?.toString() === 'CURVE' &&
          clientKey?.length === 32 &&
          timingSafeEqual(clientKey, this.allowedKey);
        if (!ok) this.refuse(address?.toString() ?? '?', 'zap', 'its key is not the cluster key', { mechanism: mechanism?.toString(), clientKey: clientKey?.length === 32 ? z85Encode(clientKey).slice(0, 8) : undefined });
        await this.socket.send([
          routing ?? Buffer.alloc(0),
          Buffer.alloc(0),
          Buffer.from('1.0'),
          requestId ?? Buffer.alloc(0),
          Buffer.from(ok ? '200' : '400'),
          Buffer.from(ok ? 'OK' : 'not a key of this cluster'),
          Buffer.from(ok ? 'gateway' : ''),
          Buffer.alloc(0),
        ]);
      }
    } catch {
      // Closed.
    }
  }

  /** Counts and logs (at most once per REFUSAL_LOG_INTERVAL_MS) a peer refused here or in the handshake. */
  refuse(address: string, kind: string, why: string, details: Record<string, unknown> = {}): void {
    this.refused++;
    let entry = this.logged.get(kind);
    if (!entry) this.logged.set(kind, (entry = { last: 0, since: 0 }));
    entry.since++;
    const now = Date.now();
    if (now - entry.last < REFUSAL_LOG_INTERVAL_MS) return;
    entry.last = now;
    this.log.warn(`Refused a link peer: ${why}`, { address, ...details, refusedSinceLastLog: entry.since });
    entry.since = 0;
  }

  close(): void {
    this.socket.close();
  }
}

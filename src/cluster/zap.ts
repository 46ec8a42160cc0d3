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
  private refusedSinceLog = 0;
  private lastLog = 0;
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
        if (!ok) this.noteRefusal(address?.toString() ?? '?', mechanism?.toString() ?? '?', clientKey);
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

  private noteRefusal(address: string, mechanism: string, key: Buffer | undefined): void {
    this.refused++;
    this.refusedSinceLog++;
    const now = Date.now();
    if (now - this.lastLog < REFUSAL_LOG_INTERVAL_MS) return;
    this.lastLog = now;
    this.log.warn('Refused a link peer: its key is not the cluster key', {
      address,
      mechanism,
      clientKey: key?.length === 32 ? z85Encode(key).slice(0, 8) : undefined,
      refusedSinceLastLog: this.refusedSinceLog,
    });
    this.refusedSinceLog = 0;
  }

  close(): void {
    this.socket.close();
  }
}

/**
 * `GET /api/kernels/:id/channels` as a WebSocket: the HTTP server's `upgrade` requests come here (they
 * never reach koa). The handshake checks the path, the token (header or `?token=`), the Origin and the
 * kernel, then hands the socket to the kernel's KernelChannels. The `v1.kernel.websocket.jupyter.org`
 * subprotocol is selected when a client offers it; otherwise the connection speaks the legacy JSON
 * protocol.
 *
 * Kernel lifecycle reaches clients as jupyter_server reports it: a `restarting` or `dead` status on
 * iopub, and the socket closed once the kernel is removed.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { answerOf, INTERNAL_ERROR, jupyterErrorBody, reasonPhrase } from '../api/error-bodies.js';
import { edgeCheck, type EdgeConfig } from '../api/origin.js';
import { Tenancy, type TenancyConfig } from '../auth/tenancy.js';
import type { Caller } from '../auth/tenant.js';
import { UUID_PATTERN } from '../api/validate.js';
import type { Config } from '../config/index.js';
import { forbidden, notFound, unknownKernel } from '../errors.js';
import type { KernelManager } from '../kernels/kernel-manager.js';
import type { LiveKernel } from '../kernels/live-kernel.js';
import type { Logger } from '../logger.js';
import { V1_PROTOCOL } from '../protocol/websocket.js';
import { ChannelClient, KernelChannels } from './kernel-channels.js';

const CHANNELS_PATH = /^\/api\/kernels\/([^/]+)\/channels\/?$/;

/** Largest frame a client may send; larger ones close the connection with 1009, as RFC 6455 says. */
const MAX_FRAME_BYTES = 64 * 1024 * 1024;

export class ChannelBridge {
  private readonly wss: WebSocketServer;
  private readonly hubs = new Map<string, KernelChannels>();
  private readonly pinger?: NodeJS.Timeout;
  /** Connections opened with an API key, and that key: closed once it is revoked (see sweepRevoked). */
  private readonly keyed = new Map<WebSocket, Caller>();
  private revocationSweep?: NodeJS.Timeout;
  /** The Host and Origin checks of every HTTP request (src/api/origin.ts), for the handshake. */
  private edge?: ReturnType<typeof edgeCheck>;

  constructor(
    private readonly kernels: KernelManager,
    private readonly config: Pick<Config, 'allowOrigin' | 'wsPingIntervalMs' | 'wsMaxBufferedBytes'> & TenancyConfig & EdgeConfig,
    private readonly log: Logger,
  ) {
    // One timer for every connection, off the message path; silent for three intervals = gone.
    const interval = config.wsPingIntervalMs;
    if (interval > 0) {
      this.pinger = setInterval(() => {
        const now = Date.now();
        for (const hub of this.hubs.values()) hub.keepAlive(now, 3 * interval);
      }, interval);
      this.pinger.unref();
    }
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: MAX_FRAME_BYTES,
      // A text frame that is not UTF-8 is one more malformed frame for the decoder to drop, not a
      // reason to close the connection (ws would close it with 1007).
      skipUTF8Validation: true,
      handleProtocols: (offered) => (offered.has(V1_PROTOCOL) ? V1_PROTOCOL : false),
    });
    kernels.on('state', (kernelId, state) => {
      if (state === 'restarting' || state === 'dead') this.hubs.get(kernelId)?.broadcastStatus(state);
    });
    kernels.on('removed', (kernelId, reason) => {
      const hub = this.hubs.get(kernelId);
      if (!hub) return;
      this.hubs.delete(kernelId);
      hub.closeAll(1000, `kernel removed: ${reason}`);
    });
  }

  /** Open WebSockets of a kernel in this process, or undefined when it has none here. */
  connectionCount(kernelId: string): number | undefined {
    return this.hubs.get(kernelId)?.size;
  }

  /** The `upgrade` listener for the HTTP server. */
  readonly handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', (error) => this.log.debug('WebSocket transport error', { error: error.message }));
    const url = new URL(req.url ?? '/', 'http://localhost');
    const match = CHANNELS_PATH.exec(url.pathname);
    if (!match) return this.refuse(socket, notFound(`no WebSocket endpoint at ${url.pathname.slice(0, 200)}`));
    // A page elsewhere (CSRF) or a rebound name is refused before its token is even looked at.
    if (!this.originAllowed(req)) return this.refuse(socket, forbidden(`origin ${String(req.headers.origin).slice(0, 200)} is not allowed`));
    const edgeRefusal = (this.edge ??= edgeCheck(this.config))(req.headers, req.method);
    if (edgeRefusal) return this.refuse(socket, forbidden(edgeRefusal));
    const authentication = Tenancy.of(this.config, this.kernels, this.log).authenticate(req.headers, url);
    if (!authentication.ok) return this.refuse(socket, authentication.error, authentication.headers);
    const { tenant } = authentication;
    const kernelId = match[1]!.toLowerCase();
    if (!UUID_PATTERN.test(kernelId)) return this.refuse(socket, unknownKernel(kernelId.slice(0, 60)));
    const sessionId = url.searchParams.get('session_id') ?? undefined;
    // A kernel of another owner is refused exactly as an unknown one.
    tenant.kernel(kernelId).then(() => this.kernels.handle(kernelId)).then(
      ({ kernel }) => {
        if (socket.destroyed) return;
        (socket as Socket).setNoDelay(true);
        this.wss.handleUpgrade(req, socket, head, (ws) => {
          this.attach(kernel, ws, sessionId, socket);
          if (tenant.caller.kind === 'tenant') this.watchKey(ws, tenant.caller);
        });
      },
      (error: Error) => this.refuse(socket, error, {}, kernelId),
    );
  };

  /**
   * Answers a refused handshake as the Jupyter REST APIs answer errors (`{message, reason}`, see
   * src/api/error-bodies.ts): the upgrade request never reaches koa and its error boundary.
   */
  private refuse(socket: Duplex, error: unknown, headers: Record<string, string> = {}, kernelId?: string): void {
    let answer = answerOf(error);
    if (!answer) {
      this.log.error('WebSocket handshake failed', { kernelId, error: (error as Error)?.stack ?? String(error) });
      answer = INTERNAL_ERROR;
    }
    const body = JSON.stringify(jupyterErrorBody(answer));
    const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
    socket.end(
      `HTTP/1.1 ${answer.status} ${reasonPhrase(answer.status)}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `${extra}Connection: close\r\n\r\n${body}`,
    );
  }

  /**
   * Browsers send Origin; other clients do not. As jupyter_server: no Origin, the same host, or the
   * configured KG_ALLOW_ORIGIN ("*" = any) may connect, so a page elsewhere cannot drive a kernel.
   */
  private originAllowed(req: IncomingMessage): boolean {
    const origin = req.headers.origin;
    if (!origin) return true;
    const allowed = this.config.allowOrigin;
    if (allowed === '*' || origin === allowed) return true;
    try {
      return new URL(origin).host === req.headers.host;
    } catch {
      return false;
    }
  }

  private attach(kernel: LiveKernel, ws: WebSocket, sessionId: string | undefined, transport: Duplex): void {
    if (kernel.state === 'dead') {
      ws.close(1000, 'kernel is gone');
      return;
    }
    let hub = this.hubs.get(kernel.id);
    if (!hub || hub.kernel !== kernel) {
      hub?.dispose();
      hub = new KernelChannels(kernel, this.log);
      this.hubs.set(kernel.id, hub);
    }
    const client = new ChannelClient(ws, ws.protocol === V1_PROTOCOL ? 'v1' : 'legacy', transport, this.config.wsMaxBufferedBytes);
    hub.add(client, sessionId);
    this.persistCount(kernel.id, hub.size);
    const channels = hub;
    ws.on('message', (data, isBinary) => channels.fromClient(client, data as Buffer, isBinary));
    ws.on('pong', () => (client.lastHeard = Date.now()));
    ws.on('error', (error) => this.log.debug('WebSocket error', { kernelId: kernel.id, error: error.message }));
    ws.on('close', () => {
      channels.remove(client);
      if (this.hubs.get(kernel.id) !== channels) return;
      if (channels.size === 0) {
        this.hubs.delete(kernel.id);
        channels.dispose();
      }
      this.persistCount(kernel.id, channels.size);
    });
  }

  private persistCount(kernelId: string, count: number): void {
    this.kernels.setConnections(kernelId, count).catch((error: Error) =>
      this.log.debug('Could not store the connection count', { kernelId, error: error.message }),
    );
  }

  /**
   * A revoked key loses its open connections too, not only its next handshake: the keys file is checked
   * as often as for HTTP requests (POLYKERNEL_API_KEYS_RELOAD_MS, at least every second here).
   */
  private watchKey(ws: WebSocket, caller: Caller): void {
    if (ws.readyState !== WebSocket.OPEN) return;
    this.keyed.set(ws, caller);
    ws.once('close', () => this.keyed.delete(ws));
    if (this.revocationSweep) return;
    const tenancy = Tenancy.of(this.config, this.kernels, this.log);
    this.revocationSweep = setInterval(() => {
      for (const [open, held] of this.keyed) {
        if (tenancy.stillValid(held)) continue;
        this.keyed.delete(open);
        open.close(1008, 'API key revoked');
      }
    }, Math.min(1000, Math.max(100, this.config.apiKeysReloadMs)));
    this.revocationSweep.unref();
  }

  /** On shutdown of the service: every client is told to go away (1001). */
  close(): void {
    clearInterval(this.pinger);
    clearInterval(this.revocationSweep);
    this.keyed.clear();
    for (const hub of this.hubs.values()) hub.closeAll(1001, 'service shutting down');
    this.hubs.clear();
    this.wss.close();
  }
}

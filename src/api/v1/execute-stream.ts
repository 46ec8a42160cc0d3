/**
 * v1 streaming execution, Backend.AI's `GET /stream/session/:id/execute` (docs/manager/user-api/
 * exec-stream.rst, "under construction" there; its manager's stream_execute handler): a WebSocket on which
 * a client runs code on one kernel and is pushed the output as it comes, with the shapes of v1's query
 * mode. Runs are v1 runs (src/runs/query-service.ts): the same table, limits, timeouts and statuses as
 * `POST /v1/kernel/:id`, pulled here eagerly instead of once per flush window.
 *
 *   client → server  {mode: "query", code, runId?} | {mode: "batch", options, runId?}   start a run
 *                    {mode: "input", code, runId?}                                      answer input()
 *   server → client  {runId, status, exitCode, console, options}   as v1's execute result; `finished`
 *                    (or `exec-timeout`) ends a run and the socket stays open for the next
 *                    {runId, status: "error", msg, error: {type, title, status, detail}}  a refused frame
 *
 * One run at a time per socket: a frame starting another while one runs is refused (an error frame), the
 * running one goes on. A client that goes away while its run is going interrupts the kernel (as Backend.AI
 * does), so a browser tab closed on an endless loop leaves a usable kernel.
 *
 * Bounds. Output: the run's console holds at most POLYKERNEL_MAX_OUTPUT_BYTES (the rest is cut, as in
 * query mode); the socket takes it from the run only while less than POLYKERNEL_STREAM_HIGH_WATER_BYTES
 * wait unread in the socket, so a client that never reads costs one bounded console and one high-water
 * mark, never more. Frames: at most POLYKERNEL_MAX_BODY_BYTES each (a larger one closes the socket with
 * 1009, as RFC 6455 says), handled in order at most FRAMES_PER_SECOND on average; past the budget, or
 * while the client leaves output unread, the socket is not read (TCP pushes back), so a flood of frames
 * queues at most what one read held.
 * Keep-alive: pings every POLYKERNEL_WS_PING_INTERVAL_MS, a client silent for three intervals is cut.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { Tenancy, type TenancyConfig } from '../../auth/tenancy.js';
import type { Caller, Tenant } from '../../auth/tenant.js';
import type { Config } from '../../config/index.js';
import { conflict, forbidden, invalidInput, notFound } from '../../errors.js';
import type { KernelManager } from '../../kernels/kernel-manager.js';
import type { Logger } from '../../logger.js';
import type { ExecuteRequest, QueryService } from '../../runs/query-service.js';
import type { RunResult } from '../../runs/query.js';
import { answerOf, INTERNAL_ERROR, reasonPhrase, v1ErrorBody } from '../error-bodies.js';
import { edgeCheck, type EdgeConfig } from '../origin.js';
import { UUID_PATTERN } from '../validate.js';
import { decodeStreamFrame, parseStreamRequest, runIdOf, type StreamRequest } from './stream-frames.js';

export const STREAM_PATH = /^\/v1\/stream\/kernel\/([^/]+)\/execute\/?$/;

/** Frames a client may send per second on average, and at once. */
const FRAMES_PER_SECOND = 100;
const FRAME_BURST = 100;
/** While the socket is not read (over budget, output unread), it is looked at again this often. */
const FLOW_RECHECK_MS = 20;
/** Statuses that end a run: the socket is free for the next one. */
const FINAL_STATUSES = new Set(['finished', 'exec-timeout']);

export type StreamConfig = Pick<Config, 'maxBodyBytes' | 'streamHighWaterBytes' | 'wsPingIntervalMs'> & TenancyConfig & EdgeConfig;

type Outgoing = (RunResult | { runId: string | null; status: 'error'; msg: string; error: Record<string, unknown> });

interface CurrentRun {
  runId: string;
  /** The client has its `finished` (or `exec-timeout`): the run is over for this socket. */
  over: boolean;
}

/** One streaming socket on one kernel. */
class StreamSession {
  private current?: CurrentRun;
  private closed = false;
  /** Set when the service closes the socket (shutdown, revoked key): the run is then not interrupted. */
  private closedByService = false;
  /** The kernel went away: the socket closes once the run's last frame is out. */
  private kernelGone?: string;
  private tokens = FRAME_BURST;
  private refilledAt = Date.now();
  /**
   * Frames received and not yet handled: ws hands over every frame of a read even once the socket is
   * paused, so what one read held waits here (at most one read's worth) and is handled within the budget.
   */
  private backlog: [Buffer, boolean][] = [];
  private backlogHead = 0;
  private paused = false;
  private recheck?: NodeJS.Timeout;
  lastHeard = Date.now();

  constructor(
    readonly ws: WebSocket,
    private readonly transport: Duplex,
    readonly kernelId: string,
    readonly tenant: Tenant,
    private readonly queries: QueryService,
    private readonly kernels: KernelManager,
    private readonly config: StreamConfig,
    private readonly log: Logger,
  ) {
    ws.on('message', (data, isBinary) => this.receive(data, isBinary));
    ws.on('pong', () => (this.lastHeard = Date.now()));
    ws.on('error', (error) => log.debug('v1 stream WebSocket error', { kernelId, error: error.message }));
    ws.on('close', () => this.gone());
  }

  private receive(data: RawData, isBinary: boolean): void {
    if (this.closed) return;
    this.lastHeard = Date.now();
    this.backlog.push([rawBuffer(data), isBinary]);
    this.pump();
  }

  /** Handles waiting frames while the client is within its budget and takes its answers, then sets the flow. */
  private pump(): void {
    while (this.backlogHead < this.backlog.length && !this.closed) {
      this.refill();
      if (this.tokens < 1 || this.ws.bufferedAmount > this.config.streamHighWaterBytes) break;
      this.tokens -= 1;
      const [data, isBinary] = this.backlog[this.backlogHead]!;
      this.backlog[this.backlogHead++] = undefined as never;
      this.handle(data, isBinary);
    }
    if (this.backlogHead >= this.backlog.length) {
      this.backlog = [];
      this.backlogHead = 0;
    }
    this.updateFlow();
  }

  private handle(data: Buffer, isBinary: boolean): void {
    let decoded: unknown;
    let request: StreamRequest;
    try {
      decoded = decodeStreamFrame(data, isBinary);
      request = parseStreamRequest(decoded, this.config.maxBodyBytes);
    } catch (error) {
      return this.sendError(error, runIdOf(decoded));
    }
    if (request.mode === 'input') return void this.answerInput(request);
    if (this.current && !this.current.over) {
      return this.sendError(
        conflict(`run ${this.current.runId} is still running on this socket: one run at a time; wait for its "finished" frame (or answer its input with mode "input")`),
        request.runId,
      );
    }
    // Each run counts against the key's rate limit, as an execute call over HTTP does.
    const limited = Tenancy.of(this.config, this.kernels, this.log).countRequest(this.tenant.caller);
    if (limited) return this.sendError(limited, request.runId);
    const runId = request.runId ?? randomUUID();
    this.current = { runId, over: false };
    void this.drive(request.mode === 'query' ? { mode: 'query', code: request.code, runId } : { mode: 'batch', options: request.options, runId });
  }

  private async answerInput(request: Extract<StreamRequest, { mode: 'input' }>): Promise<void> {
    const run = this.current;
    try {
      if (!run || run.over) throw invalidInput('no run is in progress on this socket to answer: start one with mode "query"');
      if (request.runId !== undefined && request.runId !== run.runId) throw invalidInput(`run ${request.runId} is not this socket's run; the running one is ${run.runId}`);
      await this.queries.sendInput(this.kernelId, run.runId, request.code);
    } catch (error) {
      this.sendError(error, request.runId ?? run?.runId);
    }
  }

  /** Pulls the run's results as they come and pushes them, while the client takes them. */
  private async drive(first: Extract<ExecuteRequest, { mode: 'query' | 'batch' }>): Promise<void> {
    const run = this.current!;
    let call: ExecuteRequest = first;
    // An empty `continued` (a flush window with nothing new) is not worth a frame.
    let lastStatus = 'continued';
    try {
      await this.tenant.mayExecute(this.kernelId);
      for (;;) {
        // Output waits in the run (bounded) while the client has not taken what it was sent.
        await this.drained();
        if (this.closed) return;
        const result = await this.queries.execute(this.kernelId, call, { eager: true });
        call = { mode: 'continue', runId: run.runId };
        const final = FINAL_STATUSES.has(result.status);
        if (final) run.over = true;
        if (this.closed) return;
        if (final || result.console.length > 0 || result.status !== lastStatus) this.send(result);
        lastStatus = result.status;
        if (final) break;
      }
    } catch (error) {
      run.over = true;
      this.sendError(error, run.runId);
    }
    if (this.kernelGone) this.close(1000, `kernel removed: ${this.kernelGone}`);
  }

  /** Resolves once the client has taken its output down to the high-water mark, or the socket is closed. */
  private async drained(): Promise<void> {
    while (!this.closed && this.ws.bufferedAmount > this.config.streamHighWaterBytes) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.transport.off('drain', done);
          this.ws.off('close', done);
          resolve();
        };
        const timer = setTimeout(done, 100);
        this.transport.once('drain', done);
        this.ws.once('close', done);
      });
    }
  }

  private refill(): void {
    const now = Date.now();
    this.tokens = Math.min(FRAME_BURST, this.tokens + ((now - this.refilledAt) * FRAMES_PER_SECOND) / 1000);
    this.refilledAt = now;
  }

  /**
   * The socket is read only while no frame waits for the budget and the client takes its output: a client
   * that floods frames, or sends frames and never reads the answers, is pushed back by TCP.
   */
  private updateFlow(): void {
    const over = this.backlogHead < this.backlog.length || this.ws.bufferedAmount > this.config.streamHighWaterBytes;
    if (over && !this.paused) {
      this.paused = true;
      this.ws.pause();
    } else if (!over && this.paused) {
      this.paused = false;
      this.ws.resume();
    }
    if (this.paused && !this.recheck && !this.closed) {
      this.recheck = setTimeout(() => {
        this.recheck = undefined;
        this.pump();
      }, FLOW_RECHECK_MS);
      this.recheck.unref();
    }
  }

  private send(frame: Outgoing): void {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify(frame));
    this.updateFlow();
  }

  private sendError(error: unknown, runId: string | undefined): void {
    let answer = answerOf(error);
    if (!answer) {
      this.log.error('v1 stream run failed', { kernelId: this.kernelId, runId, error: (error as Error)?.stack ?? String(error) });
      answer = INTERNAL_ERROR;
    }
    this.send({ runId: runId ?? null, status: 'error', msg: answer.message, error: v1ErrorBody(answer) });
  }

  /** The kernel was removed: the socket closes now, or once the run's last frame (which says why) is out. */
  kernelRemoved(reason: string): void {
    this.kernelGone = reason;
    if (!this.current || this.current.over) this.close(1000, `kernel removed: ${reason}`);
  }

  /** Closed by the service (shutdown, a revoked key): the run is left to its end, not interrupted. */
  end(code: number, reason: string): void {
    this.closedByService = true;
    this.close(code, reason);
  }

  private close(code: number, reason: string): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      // A close reason holds at most 123 bytes.
      this.ws.close(code, Buffer.from(reason).subarray(0, 123).toString());
    }
  }

  /** The socket is gone. A run still going is interrupted: nobody will read it (Backend.AI does the same). */
  private gone(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.recheck);
    this.backlog = [];
    const run = this.current;
    if (!run || run.over || this.closedByService || this.kernelGone) return;
    run.over = true;
    this.log.debug('v1 stream client went away during a run; interrupting it', { kernelId: this.kernelId, runId: run.runId });
    void this.queries
      .interruptRun(this.kernelId, run.runId)
      .catch((error: Error) => this.log.debug('Could not interrupt the run of a departed stream client', { kernelId: this.kernelId, error: error.message }))
      .finally(() => this.queries.abandon(this.kernelId, run.runId, 'its streaming client went away'));
  }
}

function rawBuffer(data: RawData): Buffer {
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.isBuffer(data) ? data : Buffer.from(data);
}

/** The `upgrade` handling of /v1/stream/kernel/:id/execute: the checks of every HTTP request, then a session. */
export class ExecuteStream {
  private readonly wss: WebSocketServer;
  private readonly sessions = new Set<StreamSession>();
  private readonly edge: ReturnType<typeof edgeCheck>;
  private readonly sweeper?: NodeJS.Timeout;

  constructor(
    private readonly kernels: KernelManager,
    private readonly queries: QueryService,
    private readonly config: StreamConfig,
    private readonly log: Logger,
  ) {
    this.edge = edgeCheck(config);
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: config.maxBodyBytes,
      // A frame that is not UTF-8 is answered with an error frame (stream-frames.ts), not a close (1007).
      skipUTF8Validation: true,
    });
    kernels.on('removed', (kernelId, reason) => {
      for (const session of this.sessions) if (session.kernelId === kernelId) session.kernelRemoved(reason);
    });
    // One timer for every session: keep-alive pings, and keys revoked since a session opened.
    const interval = config.wsPingIntervalMs > 0 ? config.wsPingIntervalMs : 0;
    const sweepMs = Math.min(interval || 1000, 1000, Math.max(100, config.apiKeysReloadMs));
    let lastPing = Date.now();
    this.sweeper = setInterval(() => {
      const tenancy = Tenancy.of(this.config, this.kernels, this.log);
      const now = Date.now();
      const ping = interval > 0 && now - lastPing >= interval;
      if (ping) lastPing = now;
      for (const session of this.sessions) {
        if (!tenancy.stillValid(session.tenant.caller)) session.end(1008, 'API key revoked');
        else if (interval > 0 && now - session.lastHeard > 3 * interval) session.ws.terminate();
        else if (ping && session.ws.readyState === WebSocket.OPEN) session.ws.ping();
      }
    }, sweepMs);
    this.sweeper.unref();
  }

  /** Whether an upgrade request is for this endpoint. */
  static handles(req: IncomingMessage): boolean {
    return STREAM_PATH.test(new URL(req.url ?? '/', 'http://localhost').pathname);
  }

  readonly handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', (error) => this.log.debug('v1 stream transport error', { error: error.message }));
    const url = new URL(req.url ?? '/', 'http://localhost');
    const match = STREAM_PATH.exec(url.pathname);
    if (!match) return refuse(socket, notFound(`no WebSocket endpoint at ${url.pathname.slice(0, 200)}`));
    // A page elsewhere (CSRF) or a rebound name is refused before its token is even looked at.
    const refusal = this.edge(req.headers, req.method);
    if (refusal) return refuse(socket, forbidden(refusal));
    const authentication = Tenancy.of(this.config, this.kernels, this.log).authenticate(req.headers, url);
    if (!authentication.ok) return refuse(socket, authentication.error, authentication.headers);
    const { tenant } = authentication;
    const kernelId = match[1]!.toLowerCase();
    if (!UUID_PATTERN.test(kernelId)) return refuse(socket, invalidInput(`"${kernelId.slice(0, 60)}" is not a kernel id (expected a UUID)`));
    // A kernel of another owner is refused exactly as an unknown one.
    tenant.kernel(kernelId).then(
      () => {
        if (socket.destroyed) return;
        (socket as Socket).setNoDelay?.(true);
        this.wss.handleUpgrade(req, socket, head, (ws) => {
          explainOversizedClose(ws, this.config.maxBodyBytes);
          const session = new StreamSession(ws, socket, kernelId, tenant, this.queries, this.kernels, this.config, this.log);
          this.sessions.add(session);
          ws.once('close', () => this.sessions.delete(session));
        });
      },
      (error: unknown) => refuse(socket, error, authentication.headers, this.log),
    );
  };

  /** On shutdown of the service: every client is told to go away (1001); runs are left to their end. */
  close(): void {
    clearInterval(this.sweeper);
    for (const session of this.sessions) session.end(1001, 'service shutting down');
    this.sessions.clear();
    this.wss.close();
  }
}

/**
 * ws closes a socket whose frame passes maxPayload with 1009 and no reason (its receiver calls
 * `websocket.close(1009)` before the frame's payload is read). The close is given a reason that says the
 * bound, so the client learns what to change.
 */
function explainOversizedClose(ws: WebSocket, maxFrameBytes: number): void {
  const close = ws.close.bind(ws);
  ws.close = (code?: number, reason?: string | Buffer) =>
    close(code, reason ?? (code === 1009 ? `frame larger than ${maxFrameBytes} bytes (POLYKERNEL_MAX_BODY_BYTES)` : undefined));
}

/** A refused handshake, answered as v1 answers errors (an RFC 7807 problem document): upgrades never reach koa. */
function refuse(socket: Duplex, error: unknown, headers: Record<string, string> = {}, log?: Logger): void {
  let answer = answerOf(error);
  if (!answer) {
    log?.error('v1 stream handshake failed', { error: (error as Error)?.stack ?? String(error) });
    answer = INTERNAL_ERROR;
  }
  const body = JSON.stringify(v1ErrorBody(answer));
  const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  socket.end(
    `HTTP/1.1 ${answer.status} ${reasonPhrase(answer.status)}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `${extra}Connection: close\r\n\r\n${body}`,
  );
}

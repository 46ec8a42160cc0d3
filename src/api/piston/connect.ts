/**
 * Piston's interactive endpoint, `GET /api/v2/connect` as a WebSocket (Piston's readme, "Interactive
 * execution endpoint"; api/src/api/v2.js). Every message is a JSON object with a `type`:
 *
 *   client → server  init {execute body}, data {stream: "stdin", data}, signal {signal: "SIGINT"}
 *   server → client  runtime {language, version}, stage {stage}, data {stream: stdout|stderr, data},
 *                    exit {stage, code, signal, status, message}, error {message}
 *
 * and the close codes are Piston's: 4000 Already Initialized, 4001 Initialization Timeout (no init within
 * a second), 4002 Notified Error (after an `error` message), 4003 Not yet initialized, 4004 Can only write
 * to stdin, 4005 Invalid signal, 4999 Job Completed. Unknown message types are ignored, as in Piston.
 *
 * Beyond Piston: stdin and signals sent while the program is still compiling reach the run (Piston hands
 * them to the compiler); `exit` carries Piston's status and message as the execute stages do. Bounds: a
 * client that does not read its output is closed (1008) once POLYKERNEL_WS_MAX_BUFFERED_BYTES are queued
 * for it and its run killed; stdin queued before the run starts and stdin in all are bounded; a client
 * that goes away ends the run and removes its sandbox; a session opened with an API key that is revoked
 * is closed (1008) within a second.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { Tenancy, type TenancyConfig } from '../../auth/tenancy.js';
import type { Caller } from '../../auth/tenant.js';
import type { Config } from '../../config/index.js';
import { DomainError, forbidden, invalidInput, unavailable } from '../../errors.js';
import type { CompileResult, InteractiveRun, JudgeEngine, RunMeasurement } from '../../judge/model.js';
import type { KernelManager } from '../../kernels/kernel-manager.js';
import type { Logger } from '../../logger.js';
import { answerOf, INTERNAL_ERROR, pistonErrorBody, reasonPhrase } from '../error-bodies.js';
import { edgeCheck, type EdgeConfig } from '../origin.js';
import { readJob, type LimitConfig, type PistonJob } from './request.js';
import { endingOf, isSignalName } from './response.js';
import { pistonRuntimes } from './routes.js';

export const CONNECT_PATH = /^\/api\/v2\/connect\/?$/;

export const CLOSE = {
  alreadyInitialized: [4000, 'Already Initialized'],
  initTimeout: [4001, 'Initialization Timeout'],
  notifiedError: [4002, 'Notified Error'],
  notInitialized: [4003, 'Not yet initialized'],
  onlyStdin: [4004, 'Can only write to stdin'],
  invalidSignal: [4005, 'Invalid signal'],
  completed: [4999, 'Job Completed'],
  notRead: [1008, 'output not read'],
  revoked: [1008, 'API key revoked'],
  shutdown: [1001, 'service shutting down'],
} as const satisfies Record<string, readonly [number, string]>;

/** Piston closes a connection that sent no init within a second of opening. */
const INIT_TIMEOUT_MS = 1000;
/** stdin a client may send before its program runs (while it compiles); more is an error. */
const MAX_PENDING_STDIN_BYTES = 1024 * 1024;
/** stdin one connection may send in all. */
const MAX_STDIN_BYTES = 16 * 1024 * 1024;
/** After closing a client that does not read, the socket is cut this long later whether or not it took the close. */
const NOT_READ_GRACE_MS = 1000;

export type ConnectConfig = Pick<Config, 'maxBodyBytes' | 'wsMaxBufferedBytes'> & LimitConfig & TenancyConfig & EdgeConfig;

type Outgoing =
  | { type: 'runtime'; language: string; version: string }
  | { type: 'stage'; stage: 'compile' | 'run' }
  | { type: 'data'; stream: 'stdout' | 'stderr'; data: string }
  | { type: 'exit'; stage: 'compile' | 'run'; code: number | null; signal: string | null; status: string | null; message: string | null }
  | { type: 'error'; message: string };

/** One /connect WebSocket: Piston's job state, from init to the close. */
class ConnectSession {
  private state: 'waiting' | 'starting' | 'running' | 'ended' = 'waiting';
  private run?: InteractiveRun;
  private handle?: { close(): Promise<void> };
  private pendingStdin: Buffer[] = [];
  private pendingStdinBytes = 0;
  private stdinBytes = 0;
  private pendingSignal?: string;
  private closed = false;
  /** Aborted when the session ends: a client gone while its job waits for a judging slot leaves the line. */
  private readonly departed = new AbortController();
  private readonly initTimer: NodeJS.Timeout;

  constructor(
    private readonly ws: WebSocket,
    private readonly judge: JudgeEngine,
    private readonly config: ConnectConfig,
    private readonly log: Logger,
  ) {
    this.initTimer = setTimeout(() => {
      if (this.state === 'waiting') this.close(CLOSE.initTimeout);
    }, INIT_TIMEOUT_MS);
    ws.on('message', (data) => this.receive(data));
    ws.on('error', (error) => log.debug('Piston connect WebSocket error', { error: error.message }));
    ws.on('close', () => this.gone());
  }

  /** Ends the session from the service's side (shutdown, a revoked key). */
  end(why: readonly [number, string] = CLOSE.shutdown): void {
    this.close(why);
  }

  private receive(data: RawData): void {
    if (this.closed) return;
    let message: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(rawText(data));
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw invalidInput('a message must be a JSON object with a "type"');
      message = parsed as Record<string, unknown>;
    } catch (error) {
      return this.fail(error instanceof DomainError ? error : invalidInput(`message is not valid JSON: ${(error as Error).message}`));
    }
    switch (message.type) {
      case 'init':
        if (this.state !== 'waiting') return this.close(CLOSE.alreadyInitialized);
        this.state = 'starting';
        clearTimeout(this.initTimer);
        void this.start(message);
        return;
      case 'data':
        if (this.state === 'waiting') return this.close(CLOSE.notInitialized);
        if (message.stream !== 'stdin') return this.close(CLOSE.onlyStdin);
        if (typeof message.data !== 'string') return this.fail(invalidInput('data must be a string'));
        return this.stdin(Buffer.from(message.data, 'utf8'));
      case 'signal':
        if (this.state === 'waiting') return this.close(CLOSE.notInitialized);
        if (!isSignalName(message.signal)) return this.close(CLOSE.invalidSignal);
        if (!this.run) {
          this.pendingSignal = message.signal;
          return;
        }
        try {
          this.run.signal(message.signal);
        } catch (error) {
          this.fail(error);
        }
        return;
      default:
        // Piston ignores messages of other types.
        return;
    }
  }

  private stdin(data: Buffer): void {
    this.stdinBytes += data.length;
    if (this.stdinBytes > MAX_STDIN_BYTES) return this.fail(invalidInput(`stdin is limited to ${MAX_STDIN_BYTES} bytes per connection`));
    if (this.run) return this.write(this.run, data);
    if (this.state === 'ended') return;
    this.pendingStdinBytes += data.length;
    if (this.pendingStdinBytes > MAX_PENDING_STDIN_BYTES) {
      return this.fail(invalidInput(`at most ${MAX_PENDING_STDIN_BYTES} bytes of stdin may be sent before the program runs`));
    }
    this.pendingStdin.push(data);
  }

  /** The sandbox refuses stdin its program leaves unread past a bound: that ends the session, as any error. */
  private write(run: InteractiveRun, data: Buffer): void {
    try {
      run.write(data);
    } catch (error) {
      this.fail(error);
    }
  }

  private async start(init: Record<string, unknown>): Promise<void> {
    let job: PistonJob;
    try {
      job = readJob(init, await pistonRuntimes(this.judge), this.config);
    } catch (error) {
      return this.fail(error);
    }
    if (this.closed) return;
    this.send({ type: 'runtime', language: job.runtime.language, version: job.runtime.version });
    let compileAnnounced = false;
    if (job.runtime.lang.compileCommand) {
      this.send({ type: 'stage', stage: 'compile' });
      compileAnnounced = true;
    }
    try {
      const started = await this.judge.interactive(job.submission, this.departed.signal);
      this.handle = started;
      // The client left while its program compiled: nobody will read the run.
      if (this.closed) return void (await this.release());
      if (started.compile) {
        if (!compileAnnounced) this.send({ type: 'stage', stage: 'compile' });
        this.sendCompile(started.compile);
      }
      if (started.run && !this.closed) await this.follow(started.run);
      this.state = 'ended';
      await this.release();
      this.close(CLOSE.completed);
    } catch (error) {
      // The client went away and its sandbox was closed under the run: nobody to tell, nothing went wrong.
      if (this.closed) return void (await this.release());
      this.fail(error);
    }
  }

  private sendCompile(compile: CompileResult): void {
    if (compile.stdout.length) this.send({ type: 'data', stream: 'stdout', data: compile.stdout.toString('utf8') });
    if (compile.stderr.length) this.send({ type: 'data', stream: 'stderr', data: compile.stderr.toString('utf8') });
    this.sendExit('compile', compile);
  }

  private async follow(run: InteractiveRun): Promise<void> {
    this.send({ type: 'stage', stage: 'run' });
    // Chunks may split a UTF-8 character; each stream keeps its own partial one.
    const decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
    run.onOutput((stream, data) => {
      const text = decoders[stream].write(data);
      if (text) this.send({ type: 'data', stream, data: text });
    });
    this.run = run;
    this.state = 'running';
    for (const data of this.pendingStdin.splice(0)) this.write(run, data);
    this.pendingStdinBytes = 0;
    if (this.pendingSignal) run.signal(this.pendingSignal);
    const measurement = await run.done;
    for (const stream of ['stdout', 'stderr'] as const) {
      const rest = decoders[stream].end();
      if (rest) this.send({ type: 'data', stream, data: rest });
    }
    this.run = undefined;
    this.sendExit('run', measurement);
  }

  private sendExit(stage: 'compile' | 'run', measured: RunMeasurement): void {
    const ending = endingOf(measured);
    this.send({ type: 'exit', stage, code: measured.exitCode, signal: ending.signal, status: ending.status, message: ending.message });
  }

  private send(message: Outgoing): void {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify(message));
    // The program cannot be paused: a client that does not read would have its output queued here without end.
    if (this.ws.bufferedAmount > this.config.wsMaxBufferedBytes) {
      this.log.debug('Piston connect client does not read its output; closing it', { buffered: this.ws.bufferedAmount });
      this.close(CLOSE.notRead);
      setTimeout(() => this.ws.terminate(), NOT_READ_GRACE_MS).unref();
    }
  }

  /** Piston's way to report an error: an `error` message, then close 4002 (a close reason holds 123 bytes). */
  private fail(error: unknown): void {
    let answer = answerOf(error);
    if (!answer) {
      this.log.error('Piston connect job failed', { error: (error as Error)?.stack ?? String(error) });
      answer = INTERNAL_ERROR;
    }
    this.send({ type: 'error', message: answer.message });
    this.close(CLOSE.notifiedError);
  }

  private close([code, reason]: readonly [number, string]): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.initTimer);
    this.departed.abort(unavailable('the client went away'));
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code, reason);
    void this.release();
  }

  /** The client went away, or the connection was closed: the run ends and its sandbox goes. */
  private gone(): void {
    this.closed = true;
    clearTimeout(this.initTimer);
    this.departed.abort(unavailable('the client went away'));
    void this.release();
  }

  private async release(): Promise<void> {
    const run = this.run;
    this.run = undefined;
    this.pendingStdin = [];
    if (run) {
      try {
        run.signal('SIGKILL');
      } catch {
        // The run already ended.
      }
    }
    const handle = this.handle;
    this.handle = undefined;
    if (!handle) return;
    try {
      await handle.close();
    } catch (error) {
      this.log.warn('Could not remove an interactive sandbox', { error: (error as Error).message });
    }
  }
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data as ArrayBuffer).toString('utf8');
}

/** The `upgrade` handling of /api/v2/connect: checks as every HTTP request (Host, Origin, token), then a session. */
export class PistonConnect {
  private readonly wss: WebSocketServer;
  /** Open sessions, and the API key each was opened with (none in the open mode or with the admin token). */
  private readonly sessions = new Map<ConnectSession, Caller | undefined>();
  private readonly edge: ReturnType<typeof edgeCheck>;
  private revocationSweep?: NodeJS.Timeout;

  constructor(
    private readonly judge: JudgeEngine,
    private readonly kernels: KernelManager,
    private readonly config: ConnectConfig,
    private readonly log: Logger,
  ) {
    this.edge = edgeCheck(config);
    this.wss = new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate: false, maxPayload: config.maxBodyBytes });
  }

  /** Whether an upgrade request is for this endpoint. */
  static handles(req: IncomingMessage): boolean {
    return CONNECT_PATH.test(new URL(req.url ?? '/', 'http://localhost').pathname);
  }

  readonly handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', (error) => this.log.debug('Piston connect transport error', { error: error.message }));
    const url = new URL(req.url ?? '/', 'http://localhost');
    const refusal = this.edge(req.headers, req.method);
    if (refusal) return refuse(socket, forbidden(refusal));
    const authentication = Tenancy.of(this.config, this.kernels, this.log).authenticate(req.headers, url);
    if (!authentication.ok) return refuse(socket, authentication.error, authentication.headers);
    const { caller } = authentication.tenant;
    (socket as Socket).setNoDelay?.(true);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const session = new ConnectSession(ws, this.judge, this.config, this.log);
      this.sessions.set(session, caller.kind === 'tenant' ? caller : undefined);
      ws.once('close', () => this.sessions.delete(session));
      if (caller.kind === 'tenant') this.watchKeys();
    });
  };

  /**
   * A revoked key loses its open sessions too, not only its next handshake, as the channels WebSocket
   * does: checked as often as the keys file is (POLYKERNEL_API_KEYS_RELOAD_MS, at least every second).
   */
  private watchKeys(): void {
    if (this.revocationSweep) return;
    const tenancy = Tenancy.of(this.config, this.kernels, this.log);
    this.revocationSweep = setInterval(() => {
      for (const [session, caller] of this.sessions) {
        if (caller && !tenancy.stillValid(caller)) session.end(CLOSE.revoked);
      }
    }, Math.min(1000, Math.max(100, this.config.apiKeysReloadMs)));
    this.revocationSweep.unref();
  }

  /** Closes every open session (service shutdown); their runs end and their sandboxes go. */
  close(): void {
    clearInterval(this.revocationSweep);
    for (const session of this.sessions.keys()) session.end(CLOSE.shutdown);
  }
}

/** A refused handshake, answered as Piston answers errors (`{message}`): upgrades never reach koa. */
function refuse(socket: Duplex, error: unknown, headers: Record<string, string> = {}): void {
  const answer = answerOf(error) ?? INTERNAL_ERROR;
  const body = JSON.stringify(pistonErrorBody(answer));
  const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  socket.end(
    `HTTP/1.1 ${answer.status} ${reasonPhrase(answer.status)}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `${extra}Connection: close\r\n\r\n${body}`,
  );
}

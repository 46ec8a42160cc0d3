/**
 * A gateway's link to one node agent: a DEALER, CurveZMQ client with the cluster key, to the agent's
 * advertised address. It makes calls (each with a timeout), runs commands with back-pressure both ways,
 * multiplexes any number of kernel connections (LinkFrames), and hears of container deaths.
 * link-protocol.ts has the wire format.
 *
 * An agent silent past POLYKERNEL_LINK_PEER_TIMEOUT_MS (no heartbeat answer) is taken for gone: what waits
 * on it fails at once with 503 instead of at each call's timeout.
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import * as zmq from 'zeromq';
import { DomainError, unavailable, type ErrorCode } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Channel } from '../protocol/messages.js';
import type { FrameTransport, FramesListener } from '../transport/kernel-sockets.js';
import type { CommandOutputListener, KernelCommand, KernelRef } from '../kernels/provisioner.js';
import type { ClusterKey } from './cluster-key.js';
import { LinkDialer, payloadBytes } from './link-guard.js';
import { EXEC_CHUNK_BYTES, EXEC_WINDOW, HEARTBEAT_INTERVAL_MS, LINK_MAX_FRAME_BYTES, LINK_MESSAGE_BOUNDS, SendQueue, str, TYPE, type LinkError } from './link-protocol.js';

export interface AgentLinkOptions {
  node: string;
  address: string;
  key: ClusterKey;
  callTimeoutMs: number;
  peerTimeoutMs: number;
}

export type DeathEvent = { kernelId?: string; containerId: string; reason: string };

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer?: NodeJS.Timeout;
}

interface ExecState extends Pending {
  onOutput: CommandOutputListener;
  /** Output chunks are handed to the listener one after another, each acknowledged once taken. */
  outputChain: Promise<void>;
  stdinCredit: number;
  wakeStdin?: () => void;
}

/** The code a DomainError crossing the link had, when it is one of ours. */
const CODES = new Set<string>(['invalid_input', 'unprocessable', 'unauthorized', 'forbidden', 'not_found', 'conflict', 'limit_exceeded', 'too_many_kernels', 'payload_too_large', 'unsupported_media_type', 'rate_limited', 'unavailable', 'not_implemented', 'kernel_failed']);

function linkError(body: LinkError, node: string): Error {
  if (CODES.has(body.code)) return new DomainError(body.code as ErrorCode, body.message);
  return new Error(`node ${node}: ${body.message}`);
}

export class AgentLink {
  private readonly dealer: zmq.Dealer;
  /** The agent's messages come through it, bounded as whole messages (link-guard.ts). */
  private readonly relay: LinkDialer;
  private readonly queue: SendQueue;
  private readonly calls = new Map<string, Pending>();
  private readonly execs = new Map<string, ExecState>();
  private readonly conns = new Map<string, LinkFrames>();
  /** Per kernel, the OOM kill count its agent sent with its latest message, and the connection it came on. */
  private readonly oomSeen = new Map<string, { kills: number; conn: LinkFrames }>();
  private nextId = 1;
  private lastHeard = 0;
  private heartbeat?: NodeJS.Timeout;
  /** A heartbeat still waiting for the socket (an agent away, its pipe full) is not joined by another. */
  private heartbeatQueued = false;
  private closed = false;
  onDeath?: (event: DeathEvent) => void;

  constructor(
    readonly options: AgentLinkOptions,
    private readonly log: Logger,
  ) {
    this.dealer = new zmq.Dealer({
      linger: 0,
      routingId: randomUUID(),
      curveServerKey: options.key.publicKey,
      curvePublicKey: options.key.publicKey,
      curveSecretKey: options.key.secretKey,
      maxMessageSize: LINK_MAX_FRAME_BYTES,
      sendHighWaterMark: 1000,
      receiveHighWaterMark: 1000,
      // A send waits at most this long for room (an agent gone, its pipe full), then fails.
      sendTimeout: 2000,
      reconnectInterval: 100,
      reconnectMaxInterval: 2000,
      // No ZMTP heartbeats: the relay's window would count them; the link's own heartbeat and the relay's
      // idle cut (a connection silent past the peer timeout) stand in.
    });
    this.queue = new SendQueue(this.dealer);
    this.relay = new LinkDialer(options.address, {
      bounds: LINK_MESSAGE_BOUNDS,
      idleMs: options.peerTimeoutMs,
      onCut: (why) => this.log.warn('Cut the link to a node agent', { node: options.node, why }),
    });
    this.dealer.connect(this.relay.endpoint);
    this.lastHeard = Date.now();
    void this.readLoop();
    const beat = () => {
      if (this.heartbeatQueued) return;
      this.heartbeatQueued = true;
      void this.send([TYPE.heartbeat]).catch(() => undefined).finally(() => (this.heartbeatQueued = false));
    };
    this.heartbeat = setInterval(() => {
      beat();
      if (this.alive || this.calls.size + this.execs.size === 0) return;
      const gone = unavailable(`node agent ${options.node} does not answer; try again shortly`);
      for (const id of [...this.calls.keys()]) this.settle(id, undefined, gone);
      for (const id of [...this.execs.keys()]) this.settleExec(id, undefined, gone);
    }, HEARTBEAT_INTERVAL_MS);
    this.heartbeat.unref();
    beat();
  }

  /** Whether the agent answered within POLYKERNEL_LINK_PEER_TIMEOUT_MS. */
  get alive(): boolean {
    return Date.now() - this.lastHeard < this.options.peerTimeoutMs;
  }

  send(frames: Array<Buffer | string>, droppable = false): Promise<void> {
    if (this.closed) return Promise.reject(unavailable('the link to the node agent is closed'));
    return this.queue.send(frames.map((f) => (typeof f === 'string' ? Buffer.from(f) : f)), droppable);
  }

  call<T>(method: string, args: unknown[], timeoutMs = this.options.callTimeoutMs): Promise<T> {
    const id = String(this.nextId++);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => this.settle(id, undefined, unavailable(`node agent ${this.options.node} did not answer ${method} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.calls.set(id, { resolve: resolve as (value: unknown) => void, reject, timer });
      this.send([TYPE.call, id, method, JSON.stringify(args)]).catch((error: Error) =>
        this.settle(id, undefined, unavailable(`node agent ${this.options.node} cannot be reached: ${error.message}`)),
      );
    });
  }

  private settle(id: string, value: unknown, error?: Error): void {
    const pending = this.calls.get(id);
    if (!pending) return;
    this.calls.delete(id);
    clearTimeout(pending.timer);
    if (error) pending.reject(error);
    else pending.resolve(value);
  }

  /** Runs a command beside a kernel on the agent: stdin and output flow with at most EXEC_WINDOW chunks in flight. */
  exec(ref: KernelRef, command: KernelCommand, onOutput: CommandOutputListener): Promise<{ exitCode: number }> {
    const id = String(this.nextId++);
    const signal = command.signal;
    if (signal?.aborted) return Promise.reject(signal.reason ?? new Error('exec aborted'));
    const result = new Promise<{ exitCode: number }>((resolve, reject) => {
      this.execs.set(id, { resolve: resolve as (value: unknown) => void, reject, onOutput, outputChain: Promise.resolve(), stdinCredit: EXEC_WINDOW });
    });
    const onAbort = () => {
      void this.send([TYPE.abort, id]).catch(() => undefined);
      this.settleExec(id, undefined, signal?.reason ?? new Error('exec aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const spec = { ref, cmd: command.cmd, env: command.env, as: command.as, workingDir: command.workingDir, stdin: command.stdin !== undefined };
    this.send([TYPE.exec, id, JSON.stringify(spec)]).then(
      () => (command.stdin !== undefined ? this.pumpStdin(id, command.stdin) : undefined),
      (error: Error) => this.settleExec(id, undefined, unavailable(`node agent ${this.options.node} cannot be reached: ${error.message}`)),
    ).catch((error: Error) => {
      void this.send([TYPE.abort, id]).catch(() => undefined);
      this.settleExec(id, undefined, error);
    });
    return result.finally(() => signal?.removeEventListener('abort', onAbort));
  }

  private async pumpStdin(id: string, stdin: Buffer | string | Readable): Promise<void> {
    const source: Iterable<Buffer | string> | AsyncIterable<Buffer | string> = stdin instanceof Readable ? stdin : [stdin];
    for await (const piece of source) {
      const buffer = typeof piece === 'string' ? Buffer.from(piece) : piece;
      for (let at = 0; at < buffer.length; at += EXEC_CHUNK_BYTES) {
        const exec = this.execs.get(id);
        if (!exec) return;
        while (exec.stdinCredit === 0) {
          await new Promise<void>((resolve) => (exec.wakeStdin = resolve));
          if (!this.execs.has(id)) return;
        }
        exec.stdinCredit--;
        await this.send([TYPE.stdin, id, buffer.subarray(at, at + EXEC_CHUNK_BYTES)]);
      }
    }
    if (this.execs.has(id)) await this.send([TYPE.stdin, id]);
  }

  private settleExec(id: string, value: unknown, error?: Error): void {
    const exec = this.execs.get(id);
    if (!exec) return;
    this.execs.delete(id);
    exec.wakeStdin?.();
    // The output already received is handed over before the result.
    void exec.outputChain.then(() => (error ? exec.reject(error) : exec.resolve(value)));
  }

  /** The OOM kill count that came with the kernel's latest message over this link (see KernelProvisioner.oomKillsSeen). */
  oomKillsSeen(kernelId: string): number | undefined {
    return this.oomSeen.get(kernelId)?.kills;
  }

  /** A new multiplexed connection to a kernel's sockets on the agent. */
  connect(ref: KernelRef, onBadFrame: (error: Error) => void): LinkFrames {
    const conn = new LinkFrames(this, randomUUID(), ref, onBadFrame, () => {
      this.conns.delete(conn.id);
      if (this.oomSeen.get(ref.id)?.conn === conn) this.oomSeen.delete(ref.id);
    });
    this.conns.set(conn.id, conn);
    conn.open();
    return conn;
  }

  private async readLoop(): Promise<void> {
    try {
      for await (const frames of this.dealer) {
        this.relay.consumed(frames.length, payloadBytes(frames));
        this.lastHeard = Date.now();
        try {
          this.dispatch(frames);
        } catch (error) {
          this.log.warn('Dropped a bad message from a node agent', { node: this.options.node, error: (error as Error).message });
        }
      }
    } catch (error) {
      if (!this.closed) this.log.error('Link to node agent failed', { node: this.options.node, error: (error as Error).message });
    }
  }

  private dispatch(frames: Buffer[]): void {
    const [typeFrame, a, b, ...rest] = frames;
    switch (str(typeFrame)) {
      case TYPE.heartbeatAnswer:
        return;
      case TYPE.fromKernel: {
        const conn = this.conns.get(str(a));
        if (!conn) return;
        const [oom, ...message] = rest;
        // Before the message is handed on: a run that ends on it finds the count at least as fresh.
        const kills = oom && oom.length > 0 ? Number(str(oom)) : NaN;
        if (Number.isSafeInteger(kills) && kills >= 0) this.oomSeen.set(conn.kernelId, { kills, conn });
        return conn.deliver(str(b) as Channel, message);
      }
      case TYPE.result: {
        const id = str(a);
        const value = JSON.parse(str(b)) as unknown;
        return this.calls.has(id) ? this.settle(id, value ?? undefined) : this.settleExec(id, value);
      }
      case TYPE.error: {
        const id = str(a);
        const error = linkError(JSON.parse(str(b)) as LinkError, this.options.node);
        return this.calls.has(id) ? this.settle(id, undefined, error) : this.settleExec(id, undefined, error);
      }
      case TYPE.output: {
        const id = str(a);
        const exec = this.execs.get(id);
        if (!exec) return;
        const stream = str(b) === 'stderr' ? 'stderr' : 'stdout';
        const chunk = rest[0] ?? Buffer.alloc(0);
        exec.outputChain = exec.outputChain
          .then(() => exec.onOutput(stream, chunk))
          .catch((error: Error) => {
            void this.send([TYPE.abort, id]).catch(() => undefined);
            this.settleExec(id, undefined, error);
          })
          .finally(() => void this.send([TYPE.outputAck, id]).catch(() => undefined));
        return;
      }
      case TYPE.stdinAck: {
        const exec = this.execs.get(str(a));
        if (!exec) return;
        exec.stdinCredit = Math.min(EXEC_WINDOW, exec.stdinCredit + 1);
        exec.wakeStdin?.();
        exec.wakeStdin = undefined;
        return;
      }
      case TYPE.death:
        return this.onDeath?.(JSON.parse(str(a)) as DeathEvent);
      case TYPE.badFrame:
        return this.conns.get(str(a))?.bad(str(b));
      case TYPE.closedConn:
        return this.conns.get(str(a))?.closedByAgent(str(b));
      default:
        throw new Error(`unknown link message type ${JSON.stringify(str(typeFrame).slice(0, 8))}`);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    const gone = unavailable('the link to the node agent is closed');
    for (const id of [...this.calls.keys()]) this.settle(id, undefined, gone);
    for (const id of [...this.execs.keys()]) this.settleExec(id, undefined, gone);
    for (const conn of [...this.conns.values()]) conn.close();
    this.queue.clear();
    this.dealer.close();
    this.relay.close();
  }
}

/** Reopening a connection the agent does not know (it restarted) is tried at most this often. */
const REOPEN_INTERVAL_MS = 1000;

/** One kernel connection carried over a link: the FrameTransport a SignedTransport sits on. */
export class LinkFrames implements FrameTransport {
  private listener?: FramesListener;
  private lastOpen = 0;
  private closed = false;

  constructor(
    private readonly link: AgentLink,
    readonly id: string,
    private readonly ref: KernelRef,
    private readonly onBadFrame: (error: Error) => void,
    private readonly forget: () => void,
  ) {}

  get kernelId(): string {
    return this.ref.id;
  }

  open(): void {
    this.lastOpen = Date.now();
    void this.link.send([TYPE.open, this.id, JSON.stringify(this.ref)]).catch(() => undefined);
  }

  onFrames(listener: FramesListener): void {
    this.listener = listener;
  }

  sendFrames(channel: Channel, frames: Buffer[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('kernel connection is closed'));
    if (channel === 'iopub') return Promise.reject(new Error('cannot send on iopub'));
    return this.link.send([TYPE.toKernel, this.id, channel, ...frames], true);
  }

  deliver(channel: Channel, frames: Buffer[]): void {
    if (channel === 'shell' || channel === 'control' || channel === 'stdin' || channel === 'iopub') this.listener?.(channel, frames);
  }

  bad(why: string): void {
    this.onBadFrame(new Error(why));
  }

  closedByAgent(why: string): void {
    // The agent restarted and lost the connection: it is made again there (the kernel may still run).
    if (why === 'unknown connection' && !this.closed) {
      if (Date.now() - this.lastOpen >= REOPEN_INTERVAL_MS) this.open();
      return;
    }
    this.onBadFrame(new Error(`the node agent closed the kernel connection: ${why}`));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listener = undefined;
    this.forget();
    void this.link.send([TYPE.closeConn, this.id]).catch(() => undefined);
  }
}

/**
 * The node agent's end of the link: a ROUTER, CurveZMQ server with the cluster key, on
 * POLYKERNEL_AGENT_LISTEN. It serves calls of its provisioner, runs commands beside kernels with
 * back-pressure both ways, relays each gateway connection's kernel traffic through its own relayed ZMQ
 * sockets (KernelSockets, so a flooding kernel is cut here as it would be in one process), and pushes
 * container deaths to every live gateway. link-protocol.ts has the wire format.
 *
 * Peers are authenticated, but a gateway is still kept within bounds (README "Bounds"): whole link
 * messages (each link connection passes a LinkRelay, link-guard.ts), calls and their argument bytes in
 * flight, commands, kernel connections and bytes waiting for kernels per peer, and a peer silent past
 * POLYKERNEL_LINK_PEER_TIMEOUT_MS loses everything it held here. The agent never blocks on a peer: its ROUTER drops what a peer's full pipe (its
 * HWM) cannot take, rather than queue it.
 */
import { rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import * as zmq from 'zeromq';
import { DomainError, invalidInput, unavailable } from '../errors.js';
import type { Logger } from '../logger.js';
import { containerConnectionInfo, hostConnectionInfo } from '../protocol/connection-file.js';
import type { Channel } from '../protocol/messages.js';
import { KernelSockets } from '../transport/kernel-sockets.js';
import type { DockerProvisioner } from '../kernels/docker-provisioner.js';
import type { KernelRef, LaunchRequest } from '../kernels/provisioner.js';
import type { KernelSpecRegistry } from '../kernels/kernel-specs.js';
import type { ContainerRuntime } from '../runtime/runtime.js';
import { cgroupOomKills } from '../runtime/cgroup-files.js';
import type { ClusterKey } from './cluster-key.js';
import {
  EXEC_WINDOW,
  LINK_MAX_FRAME_BYTES,
  LINK_MAX_FRAMES,
  LINK_MESSAGE_BOUNDS,
  MAX_LINK_CONNECTIONS,
  EXEC_CHUNK_BYTES,
  MAX_CALL_ARGS_BYTES,
  MAX_CALL_BYTES_IN_FLIGHT,
  MAX_CALLS_IN_FLIGHT,
  MAX_PEERS,
  MAX_PENDING_KERNEL_BYTES_PER_PEER,
  MAX_EXECS_PER_PEER,
  SendQueue,
  str,
  TYPE,
  type LinkError,
} from './link-protocol.js';
import { LinkRelay, parseHostPort, payloadBytes, privateEndpointPath } from './link-guard.js';
import { ZapHandler } from './zap.js';

export interface AgentServerOptions {
  id: string;
  listen: string;
  key: ClusterKey;
  /** This instance's socket directories: every connDir a gateway names must be the one made here. */
  kernelsDir: string;
  maxConnectionsPerPeer: number;
  peerTimeoutMs: number;
  /** Memory caps of kernels this agent may hold together (bytes); 0 = no bound. */
  memoryBudgetBytes: number;
}

const CHANNELS: readonly Channel[] = ['shell', 'control', 'stdin'];
/** Messages to one kernel socket not yet taken by it: past this a kernel that does not read drops them. */
const MAX_PENDING_KERNEL_SENDS = 1000;
const ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const CONTAINER_ID = /^[0-9a-f]{12,64}$/;

interface Conn {
  kernelId: string;
  sockets: KernelSockets;
  pending: number;
}

interface Exec {
  abort: AbortController;
  stdin?: PassThrough;
  unackedStdin: number;
  /** Output chunks sent and not yet taken; the command's output waits while EXEC_WINDOW are. */
  unackedOutput: number;
  credit?: () => void;
}

/** One link connection: its own ROUTER behind its relay. */
interface LinkSocket {
  router: zmq.Router;
  queue: SendQueue;
  relay?: LinkRelay;
}

interface Peer {
  routing: Buffer;
  /** The connection it was last heard on: answers go there (a gateway that reconnected takes over). */
  socket: LinkSocket;
  lastSeen: number;
  calls: number;
  /** Argument bytes of its calls in flight. */
  callBytes: number;
  /** Bytes of its messages still waiting for their kernels to take them. */
  pendingKernelBytes: number;
  conns: Map<string, Conn>;
  execs: Map<string, Exec>;
}

export class AgentServer {
  private readonly listener: net.Server;
  private readonly sockets = new Set<LinkSocket>();
  private readonly zap: ZapHandler;
  private readonly peers = new Map<string, Peer>();
  /** Containers of this instance, so a call can name no other container of the host. */
  private readonly known = new Set<string>();
  /** Memory caps of the kernels launched here, by kernel id (bytes). */
  private readonly reserved = new Map<string, number>();
  private sweepTimer?: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly options: AgentServerOptions,
    private readonly provisioner: DockerProvisioner,
    private readonly runtime: Pick<ContainerRuntime, 'listKernelImages' | 'readImageFile'>,
    private readonly specs: KernelSpecRegistry,
    private readonly imagePrefix: string,
    private readonly log: Logger,
  ) {
    this.zap = new ZapHandler(options.key.publicKeyBytes, log);
    this.listener = net.createServer({ pauseOnConnect: true }, (remote) => void this.accept(remote));
    this.listener.on('error', (error) => this.log.error('Link port failed', { error: error.message }));
  }

  /**
   * One ROUTER per link connection, reached through its LinkRelay (link-guard.ts): what the relay's window
   * lets in is counted per connection, so one gateway's message past the bounds never holds up another's.
   */
  private async accept(remote: net.Socket): Promise<void> {
    // A reset before the relay holds it must not be an unhandled 'error'.
    remote.on('error', () => remote.destroy());
    if (this.closed || this.sockets.size >= MAX_LINK_CONNECTIONS) return void remote.destroy();
    const router = new zmq.Router({
      linger: 0,
      curveServer: true,
      curveSecretKey: this.options.key.secretKey,
      curvePublicKey: this.options.key.publicKey,
      zapDomain: 'polykernel',
      maxMessageSize: LINK_MAX_FRAME_BYTES,
      // A peer's pipe holds this many messages; past it the ROUTER drops what goes to that peer.
      sendHighWaterMark: 1000,
      receiveHighWaterMark: 1000,
      mandatory: false,
      // No ZMTP heartbeats: the relay's window would count them (link-guard.ts); the link's own heartbeat
      // and the relay's idle cut stand in.
      handshakeInterval: 5000,
    });
    const address = `${remote.remoteAddress ?? '?'}:${remote.remotePort ?? '?'}`;
    // A peer without the cluster secret fails the CurveZMQ handshake itself (it cannot know the server's
    // key, or cannot prove its own): libzmq says so here, before any ZAP request.
    for (const event of ['handshake:error:protocol', 'handshake:error:auth', 'handshake:error:other'] as const) {
      router.events.on(event, (details: { error?: Error }) =>
        this.zap.refuse(address, event, `its CurveZMQ handshake failed (${event.slice('handshake:error:'.length)}: ${details.error?.message ?? 'no detail'}); not a peer with the cluster key`),
      );
    }
    const socketPath = privateEndpointPath();
    const socket: LinkSocket = { router, queue: new SendQueue(router) };
    this.sockets.add(socket);
    const release = () => {
      if (!this.sockets.delete(socket)) return;
      socket.queue.clear();
      router.close();
      rmSync(socketPath, { force: true });
    };
    remote.once('close', release);
    try {
      await router.bind(`ipc://${socketPath}`);
    } catch (error) {
      this.log.warn('Could not open a link socket', { error: (error as Error).message });
      remote.destroy();
      return release();
    }
    if (this.closed || remote.destroyed) return release();
    const local = net.connect({ path: socketPath });
    socket.relay = new LinkRelay(remote, local, {
      bounds: LINK_MESSAGE_BOUNDS,
      idleMs: this.options.peerTimeoutMs,
      onCut: (why) => this.zap.refuse(address, `relay:${why.split(' ')[0]}`, `the link relay cut it: ${why}`),
      onClose: release,
    });
    void this.serve(socket);
  }

  /** Free memory under the budget, for the membership record. */
  freeMemoryBytes(): number {
    let used = 0;
    for (const bytes of this.reserved.values()) used += bytes;
    return this.options.memoryBudgetBytes > 0 ? Math.max(0, this.options.memoryBudgetBytes - used) : Number.MAX_SAFE_INTEGER;
  }

  get kernelCount(): number {
    return this.reserved.size;
  }

  /** Gateways heard from within the peer timeout, and the kernel connections they hold here. */
  get linked(): { peers: number; connections: number; commands: number; calls: number; linkConnections: number } {
    let connections = 0;
    let commands = 0;
    let calls = 0;
    for (const peer of this.peers.values()) {
      connections += peer.conns.size;
      commands += peer.execs.size;
      calls += peer.calls;
    }
    return { peers: this.peers.size, connections, commands, calls, linkConnections: this.sockets.size };
  }

  get refusedPeers(): number {
    return this.zap.refused;
  }

  async start(): Promise<void> {
    for (const found of await this.provisioner.list()) {
      this.known.add(found.containerId);
      if (found.id) this.reserved.set(found.id, 0);
    }
    await this.zap.start();
    const { host, port } = parseHostPort(this.options.listen);
    await new Promise<void>((resolve, reject) => {
      this.listener.once('error', reject);
      this.listener.listen(port, host, () => {
        this.listener.off('error', reject);
        resolve();
      });
    });
    this.sweepTimer = setInterval(() => this.sweep(), Math.min(1000, this.options.peerTimeoutMs / 2));
    this.sweepTimer.unref();
  }

  /** A container died: every live gateway hears of it. */
  reportDeath(kernelId: string | undefined, containerId: string, reason: string): void {
    const body = Buffer.from(JSON.stringify({ kernelId, containerId, reason }));
    for (const peer of this.peers.values()) void peer.socket.queue.send([peer.routing, Buffer.from(TYPE.death), body]).catch(() => undefined);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweepTimer);
    for (const id of [...this.peers.keys()]) this.dropPeer(id);
    this.listener.close();
    for (const socket of [...this.sockets]) socket.relay?.close();
    this.zap.close();
  }

  private async serve(socket: LinkSocket): Promise<void> {
    try {
      for await (const frames of socket.router) {
        // Room in the relay's window for what waits: every frame but the routing id came over the wire.
        socket.relay?.consumed(frames.length - 1, payloadBytes(frames, 1));
        try {
          this.dispatch(socket, frames);
        } catch (error) {
          this.log.warn('Dropped a bad link message', { error: (error as Error).message });
        }
      }
    } catch (error) {
      if (!this.closed && this.sockets.has(socket)) this.log.error('Link socket failed', { error: (error as Error).message });
    }
  }

  private peer(socket: LinkSocket, routing: Buffer): Peer {
    const id = routing.toString('hex');
    let peer = this.peers.get(id);
    if (!peer) {
      if (this.peers.size >= MAX_PEERS) this.dropSilentest();
      peer = { routing, socket, lastSeen: Date.now(), calls: 0, callBytes: 0, pendingKernelBytes: 0, conns: new Map(), execs: new Map() };
      this.peers.set(id, peer);
      this.log.info('Gateway linked', { peer: id.slice(0, 16) });
    }
    peer.lastSeen = Date.now();
    peer.socket = socket;
    return peer;
  }

  private reply(peer: Peer, frames: Array<Buffer | string>, droppable = false): void {
    if (this.closed) return;
    void peer.socket.queue.send([peer.routing, ...frames.map((f) => (typeof f === 'string' ? Buffer.from(f) : f))], droppable).catch(() => undefined);
  }

  private dispatch(socket: LinkSocket, frames: Buffer[]): void {
    if (frames.length > LINK_MAX_FRAMES + 1) throw new Error(`a message of ${frames.length} frames`);
    const [routing, typeFrame, a, b, ...rest] = frames;
    if (!routing) return;
    const peer = this.peer(socket, routing);
    switch (str(typeFrame)) {
      case TYPE.heartbeat:
        return this.reply(peer, [TYPE.heartbeatAnswer]);
      case TYPE.call:
        return this.call(peer, str(a), str(b), rest[0]);
      case TYPE.exec:
        return this.startExec(peer, str(a), b);
      case TYPE.stdin:
        return this.stdinChunk(peer, str(a), b);
      case TYPE.outputAck: {
        const exec = peer.execs.get(str(a));
        if (exec && exec.unackedOutput > 0) {
          exec.unackedOutput--;
          exec.credit?.();
        }
        return;
      }
      case TYPE.abort:
        return peer.execs.get(str(a))?.abort.abort(new Error('aborted by the gateway'));
      case TYPE.open:
        return this.open(peer, str(a), b);
      case TYPE.toKernel:
        return this.toKernel(peer, str(a), str(b), rest);
      case TYPE.closeConn:
        return this.closeConn(peer, str(a));
      default:
        throw new Error(`unknown link message type ${JSON.stringify(str(typeFrame).slice(0, 8))}`);
    }
  }

  private fail(peer: Peer, id: string, error: unknown): void {
    const body: LinkError =
      error instanceof DomainError ? { code: error.code, message: error.message } : { code: 'internal', message: (error as Error)?.message ?? String(error) };
    this.reply(peer, [TYPE.error, id, JSON.stringify(body)]);
  }

  private call(peer: Peer, id: string, method: string, argsFrame: Buffer | undefined): void {
    if (peer.calls >= MAX_CALLS_IN_FLIGHT) return this.fail(peer, id, unavailable(`the node agent has ${MAX_CALLS_IN_FLIGHT} calls of this gateway in flight; try again shortly`));
    const bytes = argsFrame?.length ?? 0;
    if (bytes > MAX_CALL_ARGS_BYTES) return this.fail(peer, id, invalidInput(`call arguments of ${bytes} bytes; at most ${MAX_CALL_ARGS_BYTES}`));
    // What a call holds while it runs is its arguments: bounded together, not only in count.
    if (peer.callBytes + bytes > MAX_CALL_BYTES_IN_FLIGHT) return this.fail(peer, id, unavailable(`the node agent holds ${MAX_CALL_BYTES_IN_FLIGHT} bytes of this gateway's calls in flight; try again shortly`));
    let args: unknown[];
    try {
      args = JSON.parse(str(argsFrame)) as unknown[];
      if (!Array.isArray(args)) throw new Error('not a list');
    } catch {
      return this.fail(peer, id, invalidInput('call arguments must be a JSON list'));
    }
    peer.calls++;
    peer.callBytes += bytes;
    this.run(method, args).then(
      (value) => this.reply(peer, [TYPE.result, id, JSON.stringify(value ?? null)]),
      (error) => this.fail(peer, id, error),
    ).finally(() => {
      peer.calls--;
      peer.callBytes -= bytes;
    });
  }

  /** A ref as this agent made it: its id checked, its socket directory this agent's own, its container ours. */
  private async ref(raw: unknown, needsContainer = true): Promise<KernelRef> {
    const ref = (raw ?? {}) as Partial<KernelRef>;
    if (typeof ref.id !== 'string' || !ID.test(ref.id)) throw invalidInput('a kernel ref needs a valid id');
    const containerId = typeof ref.containerId === 'string' ? ref.containerId : '';
    if (needsContainer || containerId) await this.ensureKnown(containerId);
    return {
      id: ref.id,
      lang: typeof ref.lang === 'string' ? ref.lang : '',
      key: typeof ref.key === 'string' ? ref.key : '',
      runtime: typeof ref.runtime === 'string' ? ref.runtime : '',
      containerId,
      connDir: path.join(this.options.kernelsDir, ref.id),
      node: this.options.id,
    };
  }

  private async ensureKnown(containerId: string): Promise<void> {
    if (!CONTAINER_ID.test(containerId)) throw invalidInput('a kernel ref needs a valid container id');
    if (this.known.has(containerId)) return;
    // Launched by an earlier run of this agent: the engine's labels say whether it is this instance's.
    for (const found of await this.provisioner.list()) this.known.add(found.containerId);
    if (!this.known.has(containerId)) throw new DomainError('not_found', `no kernel container ${containerId.slice(0, 12)} on node ${this.options.id}`);
  }

  private async run(method: string, args: unknown[]): Promise<unknown> {
    const p = this.provisioner;
    switch (method) {
      case 'launch':
        return this.launch(args[0] as LaunchRequest);
      case 'seal':
        return p.seal(await this.ref(args[0]));
      case 'restart':
        return p.restart(await this.ref(args[0]));
      case 'interrupt':
        return p.interrupt(await this.ref(args[0]));
      case 'updateLimits': {
        const ref = await this.ref(args[0]);
        const memoryBytes = Number((args[1] as { memoryBytes?: unknown })?.memoryBytes);
        if (!Number.isSafeInteger(memoryBytes) || memoryBytes <= 0) throw invalidInput('memoryBytes must be a positive whole number');
        await p.updateLimits(ref, { memoryBytes });
        this.reserved.set(ref.id, memoryBytes);
        return;
      }
      case 'usage':
        return p.usage(await this.ref(args[0]));
      case 'oomKills':
        return p.oomKills(await this.ref(args[0]));
      case 'inspect': {
        const containerId = String((args[0] as { containerId?: unknown })?.containerId ?? '');
        if (!CONTAINER_ID.test(containerId)) throw invalidInput('a valid container id is needed');
        return this.known.has(containerId) || (await this.isOurs(containerId)) ? p.inspect({ containerId }) : undefined;
      }
      case 'remove': {
        // Removing twice is allowed (the kernel layer's destroy is idempotent): a container no longer
        // ours is not touched again, its socket directory still goes.
        const ref = await this.ref({ ...(args[0] as object), containerId: '' }, false);
        const containerId = String((args[0] as { containerId?: unknown })?.containerId ?? '');
        if (CONTAINER_ID.test(containerId) && (await this.isOurs(containerId))) ref.containerId = containerId;
        this.closeKernelConns(ref.id, 'kernel removed');
        await p.remove(ref);
        this.known.delete(ref.containerId);
        this.reserved.delete(ref.id);
        return;
      }
      case 'settled':
        return p.settled();
      case 'list':
        return p.list();
      case 'ping':
        return p.ping();
      case 'kernelImages': {
        const images = await this.runtime.listKernelImages();
        return images.filter((image) => image.image.startsWith(this.imagePrefix));
      }
      case 'readImageFile': {
        const [image, file] = args as [string, string];
        const offered = await this.runtime.listKernelImages();
        if (typeof image !== 'string' || !offered.some((o) => o.image === image && image.startsWith(this.imagePrefix))) {
          throw invalidInput('not a kernel image of this node');
        }
        if (typeof file !== 'string' || !file.startsWith('/') || file.includes('\0')) throw invalidInput('an absolute file path is needed');
        const content = await this.runtime.readImageFile(image, file);
        return content?.toString('base64');
      }
      default:
        throw invalidInput(`unknown call ${JSON.stringify(method.slice(0, 40))}`);
    }
  }

  private async isOurs(containerId: string): Promise<boolean> {
    for (const found of await this.provisioner.list()) this.known.add(found.containerId);
    return this.known.has(containerId);
  }

  private async launch(raw: LaunchRequest): Promise<Pick<KernelRef, 'containerId' | 'connDir' | 'node'>> {
    const request = raw ?? ({} as LaunchRequest);
    if (typeof request.id !== 'string' || !ID.test(request.id)) throw invalidInput('launch needs a valid kernel id');
    if (request.workDir !== undefined) {
      throw unavailable('notebook executions mount a host work directory; not available through a node agent yet');
    }
    const spec = await this.specs.resolve(String(request.lang));
    if (!spec || spec.image !== request.image) throw invalidInput(`node ${this.options.id} offers no image ${String(request.image)} for ${String(request.lang)}`);
    if (!Number.isSafeInteger(request.memoryBytes) || request.memoryBytes <= 0) throw invalidInput('memoryBytes must be a positive whole number');
    if (typeof request.key !== 'string' || typeof request.runtime !== 'string' || !/^[a-z0-9_.-]{1,32}$/.test(request.runtime)) throw invalidInput('launch needs a key and a runtime');
    const env = request.env ?? {};
    if (typeof env !== 'object' || Object.values(env).some((v) => typeof v !== 'string')) throw invalidInput('env must map names to strings');
    if (this.options.memoryBudgetBytes > 0 && request.memoryBytes > this.freeMemoryBytes()) {
      throw unavailable(`node ${this.options.id} has not enough memory left for this kernel`);
    }
    this.reserved.set(request.id, request.memoryBytes);
    try {
      const placed = await this.provisioner.launch({
        id: request.id,
        lang: spec.name,
        image: spec.image,
        runtime: request.runtime,
        key: request.key,
        memoryBytes: request.memoryBytes,
        env,
        pooled: request.pooled === true,
      });
      this.known.add(placed.containerId);
      return { ...placed, node: this.options.id };
    } catch (error) {
      this.reserved.delete(request.id);
      throw error;
    }
  }

  private startExec(peer: Peer, id: string, body: Buffer | undefined): void {
    if (peer.execs.has(id)) return this.fail(peer, id, invalidInput('command id in use'));
    if (peer.execs.size >= MAX_EXECS_PER_PEER) return this.fail(peer, id, unavailable(`the node agent runs ${MAX_EXECS_PER_PEER} commands of this gateway already; try again shortly`));
    if ((body?.length ?? 0) > MAX_CALL_ARGS_BYTES) return this.fail(peer, id, invalidInput(`a command spec of ${body?.length} bytes; at most ${MAX_CALL_ARGS_BYTES}`));
    const exec: Exec = { abort: new AbortController(), unackedStdin: 0, unackedOutput: 0 };
    peer.execs.set(id, exec);
    void (async () => {
      const spec = JSON.parse(str(body)) as { ref: unknown; cmd: unknown; env?: Record<string, string>; as?: string; workingDir?: string; stdin?: boolean };
      if (!Array.isArray(spec.cmd) || spec.cmd.length === 0 || spec.cmd.some((part) => typeof part !== 'string')) throw invalidInput('cmd must be a list of strings');
      const ref = await this.ref(spec.ref);
      if (spec.stdin) exec.stdin = new PassThrough({ highWaterMark: 64 * 1024 });
      return this.provisioner.exec(
        ref,
        {
          cmd: spec.cmd as string[],
          env: spec.env,
          as: spec.as === 'root' ? 'root' : 'kernel',
          workingDir: typeof spec.workingDir === 'string' ? spec.workingDir : undefined,
          stdin: exec.stdin,
          signal: exec.abort.signal,
        },
        (stream, chunk) => {
          this.reply(peer, [TYPE.output, id, stream, chunk]);
          exec.unackedOutput++;
          if (exec.unackedOutput < EXEC_WINDOW) return;
          // The gateway has not taken the last window yet: the command's output waits (back-pressure).
          return new Promise<void>((resolve) => {
            const onAbort = () => resolve();
            exec.abort.signal.addEventListener('abort', onAbort, { once: true });
            exec.credit = () => {
              if (exec.unackedOutput >= EXEC_WINDOW) return;
              exec.credit = undefined;
              exec.abort.signal.removeEventListener('abort', onAbort);
              resolve();
            };
          });
        },
      );
    })().then(
      (result) => this.reply(peer, [TYPE.result, id, JSON.stringify(result)]),
      (error) => this.fail(peer, id, error instanceof SyntaxError ? invalidInput('bad command') : error),
    ).finally(() => {
      exec.stdin?.destroy();
      peer.execs.delete(id);
    });
  }

  private stdinChunk(peer: Peer, id: string, chunk: Buffer | undefined): void {
    const exec = peer.execs.get(id);
    if (!exec?.stdin) return;
    if (!chunk) return void exec.stdin.end();
    // A peer past its window, or with chunks larger than the window's, would make this buffer grow: the
    // command is cut instead (a window of 8 chunks of up to 16 MiB each would be 128 MiB per command).
    if (chunk.length > EXEC_CHUNK_BYTES) return exec.abort.abort(new Error(`a stdin chunk of ${chunk.length} bytes (at most ${EXEC_CHUNK_BYTES})`));
    if (++exec.unackedStdin > EXEC_WINDOW) return exec.abort.abort(new Error('stdin sent past its window'));
    exec.stdin.write(chunk, () => {
      exec.unackedStdin--;
      this.reply(peer, [TYPE.stdinAck, id]);
    });
  }

  private open(peer: Peer, connId: string, body: Buffer | undefined): void {
    if (!ID.test(connId) || peer.conns.has(connId)) return;
    if (peer.conns.size >= this.options.maxConnectionsPerPeer) {
      return this.reply(peer, [TYPE.closedConn, connId, `the node agent holds ${this.options.maxConnectionsPerPeer} kernel connections of this gateway already`]);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(str(body));
    } catch {
      return this.reply(peer, [TYPE.closedConn, connId, 'bad ref']);
    }
    // Held at once (a K may follow before the checks end): its sockets come once the ref is checked.
    const conn: Conn = { kernelId: '', sockets: undefined as unknown as KernelSockets, pending: 0 };
    peer.conns.set(connId, conn);
    this.ref(raw).then(
      (ref) => {
        if (peer.conns.get(connId) !== conn) return;
        conn.kernelId = ref.id;
        conn.sockets = new KernelSockets(hostConnectionInfo(ref.connDir, containerConnectionInfo(ref.key, ref.lang)), (error) =>
          this.reply(peer, [TYPE.badFrame, connId, error.message]),
        );
        // The OOM count goes with every message: read after the kernel sent it, so it holds every kill the
        // kernel could have seen before, and a gateway's run that ends on this message needs no call for
        // it (oom-notice.ts). A synchronous cgroup read: microseconds, less than relaying the message.
        conn.sockets.onFrames((channel, frames) => {
          const kills = cgroupOomKills(ref.containerId);
          this.reply(peer, [TYPE.fromKernel, connId, channel, kills === undefined ? '' : String(kills), ...frames], true);
        });
      },
      (error: Error) => {
        if (peer.conns.get(connId) === conn) peer.conns.delete(connId);
        this.reply(peer, [TYPE.closedConn, connId, error.message]);
      },
    );
  }

  private toKernel(peer: Peer, connId: string, channel: string, frames: Buffer[]): void {
    const conn = peer.conns.get(connId);
    if (!conn) return this.reply(peer, [TYPE.closedConn, connId, 'unknown connection']);
    if (!conn.sockets || !(CHANNELS as string[]).includes(channel)) return;
    if (conn.pending >= MAX_PENDING_KERNEL_SENDS) return;
    // Counted in bytes per gateway too: 1000 messages of 16 MiB to each of 1024 connections is no bound.
    const bytes = payloadBytes(frames);
    if (peer.pendingKernelBytes + bytes > MAX_PENDING_KERNEL_BYTES_PER_PEER) return;
    conn.pending++;
    peer.pendingKernelBytes += bytes;
    conn.sockets.sendFrames(channel as Channel, frames).catch(() => undefined).finally(() => {
      conn.pending--;
      peer.pendingKernelBytes -= bytes;
    });
  }

  private closeConn(peer: Peer, connId: string): void {
    const conn = peer.conns.get(connId);
    if (!conn) return;
    peer.conns.delete(connId);
    conn.sockets?.close();
  }

  private closeKernelConns(kernelId: string, why: string): void {
    for (const peer of this.peers.values()) {
      for (const [connId, conn] of peer.conns) {
        if (conn.kernelId !== kernelId) continue;
        peer.conns.delete(connId);
        conn.sockets?.close();
        this.reply(peer, [TYPE.closedConn, connId, why]);
      }
    }
  }

  private dropPeer(id: string): void {
    const peer = this.peers.get(id);
    if (!peer) return;
    this.peers.delete(id);
    for (const conn of peer.conns.values()) conn.sockets?.close();
    for (const exec of peer.execs.values()) exec.abort.abort(new Error('gateway gone'));
    peer.conns.clear();
  }

  /** Room for one more gateway: the one heard from longest ago loses what it held here. */
  private dropSilentest(): void {
    let oldest: [string, Peer] | undefined;
    for (const entry of this.peers) if (!oldest || entry[1].lastSeen < oldest[1].lastSeen) oldest = entry;
    if (!oldest) return;
    this.log.warn('Too many gateways: the one silent longest loses its kernel connections and commands here', { peer: oldest[0].slice(0, 16), max: MAX_PEERS });
    this.dropPeer(oldest[0]);
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, peer] of this.peers) {
      if (now - peer.lastSeen < this.options.peerTimeoutMs) continue;
      this.log.info('Gateway silent: its kernel connections and commands here are closed', { peer: id.slice(0, 16), connections: peer.conns.size });
      this.dropPeer(id);
    }
  }
}

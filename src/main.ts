/**
 * Composition root: config -> listen (503 "starting" until ready) -> store (waited for) -> runtime -> provisioner -> kernels -> app; graceful shutdown on SIGTERM.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createApp } from './app.js';
import { ExecutionManager } from './executions/manager.js';
import { ChannelBridge } from './channels/channel-bridge.js';
import { PistonConnect } from './api/piston/connect.js';
import { ExecuteStream } from './api/v1/execute-stream.js';
import { ConfigError, loadConfig, type Config } from './config/index.js';
import { DockerProvisioner } from './kernels/docker-provisioner.js';
import { KernelManager } from './kernels/kernel-manager.js';
import { KernelSpecRegistry } from './kernels/kernel-specs.js';
import { QueryService } from './runs/query-service.js';
import { IdleCpuBudget } from './kernels/idle-cpu.js';
import { DockerJudgeSandboxes } from './judge/docker-sandboxes.js';
import { SandboxJudgeEngine } from './judge/engine.js';
import { UsageMonitor } from './kernels/usage-monitor.js';
import { createLogger, type Logger } from './logger.js';
import { DockerRuntime, dockerOptionsFor } from './runtime/docker.js';
import { createStore } from './store/index.js';
import { LeaderLease, leaseHolderName } from './cluster/leader-lease.js';
import { createJudge0Runtime } from './api/judge0/runtime.js';
import { refuseUpgradeWhileStarting, startingApp } from './api/starting.js';
import { startAgent } from './cluster/agent.js';
import { ClusterKeyError, readClusterKey, type ClusterKey } from './cluster/cluster-key.js';
import { RedisMembership } from './cluster/membership.js';
import { RemoteProvisioner } from './cluster/remote-provisioner.js';
import type { KernelProvisioner } from './kernels/provisioner.js';
import { RedisStore } from './store/redis-store.js';

export interface RunningService {
  server: http.Server;
  config: Config;
  kernels: KernelManager;
  /** Absent on a gateway (POLYKERNEL_ROLE=gateway): judging needs a node's Docker engine. */
  judge?: SandboxJudgeEngine;
  /** Stops accepting, settles in-flight work, then keeps or removes kernels as configured. */
  stop(): Promise<void>;
}

/** What a gateway answers on the routes it cannot serve yet (see AppDeps.unavailableRoutes). */
const JUDGING_ON_GATEWAY = "judging needs a node's Docker engine; not available on a gateway yet";
const EXECUTIONS_ON_GATEWAY = 'notebook executions mount a host work directory; not available on a gateway yet';
const JUDGE_ROUTES = ['/submissions', '/languages', '/statuses', '/config_info', '/system_info', '/about', '/version', '/workers', '/authenticate', '/authorize', '/api/v2'];

export async function startService(config: Config, log: Logger = createLogger(config.logLevel)): Promise<RunningService> {
  // A start that fails halfway closes what it opened (the store's connection, timers, the engine's event
  // stream), so that a caller that retries, or a test that starts the service in its process, is not left
  // holding them. Kernels are kept: the next start adopts them.
  const opened: Array<() => unknown> = [];
  try {
    return await startParts(config, log, opened);
  } catch (error) {
    for (const close of opened.reverse()) await Promise.resolve().then(close).catch(() => undefined);
    throw error;
  }
}

async function startParts(config: Config, log: Logger, opened: Array<() => unknown>): Promise<RunningService> {
  // The server listens first, answering 503 "starting: waiting for …" until every part is up: a client (or
  // an orchestrator's health check) sees why the service does not serve yet, while it waits for Redis.
  let waitingFor = 'the state store (Redis) to answer';
  let handleRequest: http.RequestListener = startingApp(log, () => waitingFor).callback();
  let handleUpgrade = (_req: http.IncomingMessage, socket: Duplex, _head: Buffer) => refuseUpgradeWhileStarting(socket, waitingFor);
  const server = http.createServer(
    {
      // Connections that never finish their request hold a file descriptor each: they are closed after
      // these bounds, checked every second (Node's default is every 30 s).
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      connectionsCheckingInterval: 1000,
    },
    (req, res) => handleRequest(req, res),
  );
  server.keepAliveTimeout = 5000;
  limitConnections(server, config);
  closeSilentConnections(server, config.headersTimeoutMs);
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => handleUpgrade(req, socket, head));
  // Requests in flight, so that a shutdown answers them instead of cutting their sockets.
  const inFlight = new Set<http.ServerResponse>();
  let stopping: Promise<void> | undefined;
  server.on('request', (_req, res: http.ServerResponse) => {
    inFlight.add(res);
    res.once('close', () => inFlight.delete(res));
    if (stopping) res.setHeader('Connection', 'close');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.ip, () => resolve());
  });
  opened.push(() => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  });
  const address = server.address();
  log.info('polykernel listening', { address: typeof address === 'object' && address ? `${address.address}:${address.port}` : address });

  const store = await createStore(config, log, (store) => opened.push(() => store.close()));
  // Replicas sharing the Redis: the one holding this lease does the work that must happen once (culling).
  const lease = new LeaderLease(store, log, { ttlMs: config.leaderLeaseMs, holder: leaseHolderName(config.instance) });
  await lease.start();
  opened.push(() => lease.stop());
  waitingFor = 'its parts to start (adopting kernels, the Docker engine)';
  // Role gateway: kernels run on node agents, reached over the CurveZMQ link; no local engine, no judging.
  const gateway = config.role === 'gateway';
  let runtime: DockerRuntime | undefined;
  let remote: RemoteProvisioner | undefined;
  let provisioner: KernelProvisioner;
  let specs: KernelSpecRegistry;
  if (gateway) {
    if (!(store instanceof RedisStore)) throw new ConfigError('POLYKERNEL_ROLE=gateway needs REDIS_URL');
    remote = new RemoteProvisioner(
      { key: clusterKeyOf(config), callTimeoutMs: config.linkCallTimeoutMs, peerTimeoutMs: config.linkPeerTimeoutMs },
      new RedisMembership(store),
      log,
    );
    const links = remote;
    opened.push(() => links.close());
    provisioner = remote;
    specs = new KernelSpecRegistry(remote, config.imagePrefix);
  } else {
    const local = new DockerRuntime(log, config.instance, dockerOptionsFor(config.dockerHost), config.containerLabels);
    runtime = local;
    opened.push(() => local.close());
    provisioner = new DockerProvisioner(config, local, log);
    specs = new KernelSpecRegistry(local, config.imagePrefix);
  }
  const kernels = new KernelManager(config, provisioner, store, specs, log);
  await kernels.start();
  opened.push(() => kernels.stop(true));
  const queries = new QueryService(kernels, config, log);
  opened.push(() => queries.close());
  const usage = new UsageMonitor(kernels, log, config.statsIntervalMs, Date.now, new IdleCpuBudget(config.idleCpuMs, config.idleCpuWindowMs), lease);
  usage.start();
  opened.push(() => usage.stop());
  let executions: ExecutionManager | undefined;
  let judge: SandboxJudgeEngine | undefined;
  let judge0: ReturnType<typeof createJudge0Runtime> | undefined;
  if (runtime) {
    // Notebook executions: unfinished ones of this instance (an earlier run that died) are marked interrupted.
    const started = new ExecutionManager({ config, kernels, store, log });
    executions = started;
    await started.start();
    opened.push(() => started.stop());
    // Judging: sandboxes an earlier run left are removed before the first submission; warm ones start.
    const engine = new SandboxJudgeEngine({ config, sandboxes: new DockerJudgeSandboxes(runtime, log), specs, log });
    judge = engine;
    await engine.start();
    opened.push(() => engine.stop());
    // Judge0's API: its queue runs again what a restart left queued or processing.
    const queue = createJudge0Runtime({ config, store, engine, log });
    judge0 = queue;
    await queue.start();
    opened.push(() => queue.stop());
  }

  // Jupyter channels WebSocket: upgrades go to the bridge, the REST kernel model reads its connection counts.
  const channels = new ChannelBridge(kernels, config, log);
  const unavailableRoutes = gateway
    ? [
        { prefixes: JUDGE_ROUTES, message: JUDGING_ON_GATEWAY },
        { prefixes: ['/api/executions'], message: EXECUTIONS_ON_GATEWAY },
      ]
    : undefined;
  const app = createApp({ config, log, kernels, queries, store, executions, judge, judge0, unavailableRoutes, connectionCount: (id) => channels.connectionCount(id) });
  // Piston's /api/v2/connect WebSocket, beside the channels one.
  const pistonConnect = judge ? new PistonConnect(judge, kernels, config, log) : undefined;
  // v1 streaming execution (/v1/stream/kernel/:id/execute), on the same runs as POST /v1/kernel/:id.
  const executeStream = new ExecuteStream(kernels, queries, config, log);
  handleRequest = app.callback();
  handleUpgrade = (req, socket, head) => {
    if (PistonConnect.handles(req)) {
      if (pistonConnect) return pistonConnect.handleUpgrade(req, socket, head);
      socket.end(`HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${JSON.stringify({ message: JUDGING_ON_GATEWAY })}`);
      return;
    }
    (ExecuteStream.handles(req) ? executeStream.handleUpgrade : channels.handleUpgrade)(req, socket, head);
  };
  log.info('polykernel ready');
  const drain = async (boundMs: number) => {
    for (const res of inFlight) if (!res.headersSent) res.setHeader('Connection', 'close');
    const deadline = Date.now() + boundMs;
    while (inFlight.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  };

  const stop = () =>
    (stopping ??= (async () => {
      log.info('Shutting down', { keepKernels: config.keepKernelsOnShutdown });
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // Upgraded sockets are no longer the HTTP server's: the bridge closes them.
      channels.close();
      // Interactive Piston runs end with their connections; their sandboxes go with the engine's stop below.
      pistonConnect?.close();
      executeStream.close();
      usage.stop();
      // Released, so that another replica leads (culls) at once instead of after the lease's TTL.
      await lease.stop();
      queries.close();
      // Before the kernels go: running executions end as interrupted and write their output.
      await executions?.stop();
      // Running submissions of Judge0's queue are aborted and stay `processing` in the store: the next
      // start runs them again. Then the engine refuses what waits, ends what runs; no sandbox stays.
      await judge0?.stop();
      await judge?.stop();
      // In-flight requests are answered. With kernels kept, a v1 query answers at the end of its
      // flush window ("continued", output so far) while its kernel is still connected; with kernels
      // removed, the removal ends its run at once ("[kernel died: service shut down]", exit code 137).
      // Whatever is still running after the bound is cut.
      const drainMs = config.flushWindowMs + 3000;
      if (config.keepKernelsOnShutdown) await drain(drainMs);
      await kernels.stop(config.keepKernelsOnShutdown);
      await drain(drainMs);
      server.closeAllConnections();
      await closed;
      runtime?.close();
      remote?.close();
      await store.close();
    })());
  return { server, config, kernels, judge, stop };
}

/**
 * Open connections are bounded in total (server.maxConnections: Node closes one past it at once) and per
 * client address, so that one client opening sockets it never uses (half-open, no token) cannot take every
 * file descriptor and stop the service for everyone. Node has no per-address cap: sockets are counted on
 * `connection` and released on `close`, which also covers a socket upgraded to a WebSocket.
 */
function limitConnections(server: http.Server, config: Pick<Config, 'maxConnections' | 'maxConnectionsPerPeer'>): void {
  if (config.maxConnections > 0) server.maxConnections = config.maxConnections;
  const perPeer = config.maxConnectionsPerPeer;
  if (perPeer <= 0) return;
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const peer = socket.remoteAddress ?? '';
    const count = (open.get(peer) ?? 0) + 1;
    if (count > perPeer) {
      // Nothing read, nothing answered: a client past its cap is flooding, and an answer costs a write.
      socket.destroy();
      return;
    }
    open.set(peer, count);
    socket.once('close', () => {
      const left = (open.get(peer) ?? 1) - 1;
      if (left <= 0) open.delete(peer);
      else open.set(peer, left);
    });
  });
}

/**
 * Node's headersTimeout only runs once a request has begun: a connection that never sends a byte stays
 * open for ever. Each connection must have sent a whole request (or upgrade) within the header timeout;
 * later requests on a keep-alive connection are Node's (keepAliveTimeout, headersTimeout).
 */
function closeSilentConnections(server: http.Server, timeoutMs: number): void {
  const waiting = new WeakMap<Socket, NodeJS.Timeout>();
  server.on('connection', (socket: Socket) => {
    if (socket.destroyed) return;
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    timer.unref();
    waiting.set(socket, timer);
    socket.once('close', () => clearTimeout(timer));
  });
  const heard = (socket: Socket) => {
    clearTimeout(waiting.get(socket));
    waiting.delete(socket);
  };
  server.on('request', (req: http.IncomingMessage) => heard(req.socket));
  server.on('upgrade', (req: http.IncomingMessage) => heard(req.socket));
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`polykernel: bad configuration: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const log = createLogger(config.logLevel);
  // A gateway or agent without a good key file stops here, before it listens or waits for Redis.
  if (config.role !== 'all') {
    try {
      clusterKeyOf(config);
    } catch (error) {
      process.stderr.write(`polykernel: bad configuration: ${(error as Error).message}\n`);
      process.exit(2);
    }
  }
  // Handled from the first moment: the start may wait long (for Redis), and as PID 1 in a container (the
  // service image runs node without an init) a process with no handler ignores SIGTERM, so `docker stop`
  // would wait its grace and SIGKILL. Stopped while starting, nothing is served yet: it exits at once
  // (kernels it may have adopted meanwhile stay for the next start to adopt, as after a crash).
  let service: RunningService | undefined;
  let stopRunning: (() => Promise<void>) | undefined;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      const stop = stopRunning ?? (service && (() => service!.stop()));
      if (!stop) {
        log.info('Stopped while starting', { signal });
        process.exit(0);
      }
      stop().then(
        () => process.exit(0),
        (error: Error) => {
          log.error('Shutdown failed', { error: error.message });
          process.exit(1);
        },
      );
    });
  }
  if (config.role === 'agent') {
    const agent = await startAgent(config, clusterKeyOf(config), log);
    stopRunning = () => agent.stop();
    return;
  }
  service = await startService(config, log);
}

/** The cluster key of a gateway or agent; a bad key file is a bad configuration (exit 2). */
function clusterKeyOf(config: Config): ClusterKey {
  try {
    return readClusterKey(config.clusterKeyFile);
  } catch (error) {
    if (error instanceof ClusterKeyError) throw new ConfigError(error.message);
    throw error;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((error: Error) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`polykernel: bad configuration: ${error.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`polykernel: failed to start: ${error.message}\n`);
    process.exit(1);
  });
}

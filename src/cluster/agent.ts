/**
 * The node agent role (POLYKERNEL_ROLE=agent): owns this host's Docker engine through the Docker
 * provisioner, serves gateways over the CurveZMQ link (agent-server.ts) and registers itself in Redis so
 * gateways find it (membership.ts). It serves no API: its HTTP port answers a health check only.
 * It keeps no kernel records: the gateways' store does. Kernels outlive a restart of the agent (gateways
 * reconnect to them through the next one).
 */
import http from 'node:http';
import os from 'node:os';
import type { Config } from '../config/index.js';
import type { Logger } from '../logger.js';
import { instanceConnectionDirs } from '../kernels/conn-dir.js';
import { DockerProvisioner } from '../kernels/docker-provisioner.js';
import { KernelSpecRegistry } from '../kernels/kernel-specs.js';
import { DockerRuntime, dockerOptionsFor } from '../runtime/docker.js';
import { RedisStore } from '../store/redis-store.js';
import { AgentServer } from './agent-server.js';
import type { ClusterKey } from './cluster-key.js';
import { RedisMembership } from './membership.js';

export interface RunningAgent {
  id: string;
  server: http.Server;
  stop(): Promise<void>;
}

export async function startAgent(config: Config, key: ClusterKey, log: Logger): Promise<RunningAgent> {
  const id = config.agentId || os.hostname();
  const address = config.agentAdvertise || config.agentListen;
  const store = new RedisStore(config.redisUrl, config.redisPrefix);
  const opened: Array<() => unknown> = [() => store.close()];
  try {
    await store.ready((waitedMs) => log.warn('Waiting for Redis to answer', { waitedS: Math.round(waitedMs / 1000) }));
    const runtime = new DockerRuntime(log, config.instance, dockerOptionsFor(config.dockerHost), config.containerLabels);
    opened.push(() => runtime.close());
    const provisioner = new DockerProvisioner(config, runtime, log);
    const specs = new KernelSpecRegistry(runtime, config.imagePrefix);
    const link = new AgentServer(
      {
        id,
        listen: config.agentListen,
        key,
        kernelsDir: instanceConnectionDirs(config.stateDir, config.instance),
        maxConnectionsPerPeer: config.agentMaxConnectionsPerPeer,
        peerTimeoutMs: config.linkPeerTimeoutMs,
        memoryBudgetBytes: config.memoryBudgetKB * 1024,
      },
      provisioner,
      runtime,
      specs,
      config.imagePrefix,
      log,
    );
    await provisioner.start((kernelId, containerId, reason) => link.reportDeath(kernelId, containerId, reason));
    opened.push(() => provisioner.stop());
    await link.start();
    opened.push(() => link.close());

    const membership = new RedisMembership(store);
    const register = async () => {
      const languages = await specs.names().catch(() => []);
      await membership.register({ id, address, languages, freeMemoryBytes: link.freeMemoryBytes(), kernels: link.kernelCount }, config.agentTtlMs);
    };
    await register();
    const heartbeat = setInterval(() => {
      register().catch((error: Error) => log.warn('Could not renew the registration', { error: error.message }));
    }, Math.floor(config.agentTtlMs / 3));
    heartbeat.unref();
    opened.push(() => clearInterval(heartbeat));

    const server = http.createServer((req, res) => {
      const body = JSON.stringify(
        req.url === '/api' || req.url === '/api/status'
          ? { role: 'agent', id, address, kernels: link.kernelCount, ...link.linked, refusedPeers: link.refusedPeers }
          : { message: 'a node agent serves no API; use a gateway', reason: 'Not Found' },
      );
      res.writeHead(req.url === '/api' || req.url === '/api/status' ? 200 : 404, { 'Content-Type': 'application/json' });
      res.end(body);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.ip, () => resolve());
    });
    opened.push(() => new Promise((resolve) => server.close(resolve)));
    log.info('polykernel node agent ready', { id, link: config.agentListen, advertised: address });

    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        log.info('Node agent shutting down (kernels are kept for the next agent)');
        await membership.leave(id).catch(() => undefined);
        for (const close of opened.reverse()) await Promise.resolve().then(close).catch(() => undefined);
      })());
    return { id, server, stop };
  } catch (error) {
    for (const close of opened.reverse()) await Promise.resolve().then(close).catch(() => undefined);
    throw error;
  }
}

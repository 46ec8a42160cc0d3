/**
 * A gateway replica in miniature for integration tests: a KernelManager, the v1 and Jupyter REST APIs and
 * the channels WebSocket on an ephemeral port, over a provisioner and a store the caller shares between
 * several replicas in one process (one DockerProvisioner: the node agent's shape, without its link).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp } from '../../src/app.js';
import { ChannelBridge } from '../../src/channels/channel-bridge.js';
import type { Config } from '../../src/config/index.js';
import { KernelManager } from '../../src/kernels/kernel-manager.js';
import type { KernelSpecRegistry } from '../../src/kernels/kernel-specs.js';
import type { KernelProvisioner } from '../../src/kernels/provisioner.js';
import type { Logger } from '../../src/logger.js';
import { QueryService } from '../../src/runs/query-service.js';
import type { Store } from '../../src/store/store.js';
import { jsonCall, type Call } from './http-client.js';

export interface Replica {
  url: string;
  call: Call;
  kernels: KernelManager;
  /** Closes its sockets and lets go of its kernels (removing them as a service stopping with POLYKERNEL_KEEP_KERNELS_ON_SHUTDOWN=false). */
  stop(): Promise<void>;
}

export async function startReplica(config: Config, provisioner: KernelProvisioner, store: Store, specs: KernelSpecRegistry, log: Logger): Promise<Replica> {
  const kernels = new KernelManager(config, provisioner, store, specs, log);
  await kernels.start();
  const queries = new QueryService(kernels, config, log);
  const channels = new ChannelBridge(kernels, config, log);
  const app = createApp({ config, log, kernels, queries, store, connectionCount: (id) => channels.connectionCount(id) });
  const server = http.createServer(app.callback());
  server.on('upgrade', channels.handleUpgrade);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    call: jsonCall(url),
    kernels,
    async stop() {
      channels.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      queries.close();
      await kernels.stop(false);
    },
  };
}

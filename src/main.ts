/**
 * Composition root: config -> store, runtime -> kernels -> app -> listen; graceful shutdown on SIGTERM.
 */
import http from 'node:http';
import { createApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config/index.js';
import { KernelManager } from './kernels/kernel-manager.js';
import { KernelSpecRegistry } from './kernels/kernel-specs.js';
import { QueryService } from './kernels/query-service.js';
import { UsageMonitor } from './kernels/usage-monitor.js';
import { createLogger, type Logger } from './logger.js';
import { DockerRuntime } from './runtime/docker.js';
import { createStore } from './store/index.js';

export interface RunningService {
  server: http.Server;
  config: Config;
  kernels: KernelManager;
  /** Stops accepting, settles in-flight work, then keeps or removes kernels as configured. */
  stop(): Promise<void>;
}

export async function startService(config: Config, log: Logger = createLogger(config.logLevel)): Promise<RunningService> {
  const store = await createStore(config);
  const runtime = new DockerRuntime(log, config.instance);
  const specs = new KernelSpecRegistry(runtime, config.imagePrefix);
  const kernels = new KernelManager(config, runtime, store, specs, log);
  await kernels.start();
  const queries = new QueryService(kernels, config);
  const usage = new UsageMonitor(kernels, runtime, store, log, config.statsIntervalMs);
  usage.start();

  const app = createApp({ config, log, kernels, queries, store, runtime });
  const server = http.createServer(app.callback());
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.ip, () => resolve());
  });
  const address = server.address();
  log.info('polykernel listening', { address: typeof address === 'object' && address ? `${address.address}:${address.port}` : address });

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      log.info('Shutting down', { keepKernels: config.keepKernelsOnShutdown });
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      usage.stop();
      await kernels.stop(config.keepKernelsOnShutdown);
      server.closeAllConnections();
      await closed;
      runtime.close();
      await store.close();
    })());
  return { server, config, kernels, stop };
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
  const service = await startService(config, log);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      service.stop().then(
        () => process.exit(0),
        (error: Error) => {
          log.error('Shutdown failed', { error: error.message });
          process.exit(1);
        },
      );
    });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((error: Error) => {
    process.stderr.write(`polykernel: failed to start: ${error.message}\n`);
    process.exit(1);
  });
}

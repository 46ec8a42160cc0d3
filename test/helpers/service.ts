/**
 * Starts a real polykernel service for an integration test: real Docker engine, real Redis (when
 * REDIS_URL is set, else the in-process store), an ephemeral port, and its own instance label, state
 * directory and Redis prefix, so that test files running in parallel never see each other's kernels.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../src/config/index.js';
import { createLogger } from '../../src/logger.js';
import { startService, type RunningService } from '../../src/main.js';
import { jsonCall } from './http-client.js';

export interface TestService {
  url: string;
  service: RunningService;
  config: Config;
  /** fetch against the service, JSON in and out. */
  call(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Headers }>;
  stop(): Promise<void>;
}

export type StoreKind = 'redis' | 'memory';

export const redisUrl = process.env.REDIS_URL ?? '';

/** `writeLog` receives every line the service logs (they go to stderr without it). */
export async function startTestService(
  overrides: Partial<Config> = {},
  storeKind: StoreKind = redisUrl ? 'redis' : 'memory',
  writeLog?: (line: string) => void,
): Promise<TestService> {
  const instance = `test-${randomUUID().slice(0, 8)}`;
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'pk-'));
  if (storeKind === 'redis' && !redisUrl) throw new Error('REDIS_URL is not set: start redis-server (scripts/host-setup.sh)');
  const config = loadConfig(process.env, {
    port: 0,
    ip: '127.0.0.1',
    instance,
    stateDir,
    redisUrl: storeKind === 'redis' ? redisUrl : '',
    redisPrefix: `${instance}:`,
    logLevel: (process.env.POLYKERNEL_TEST_LOG_LEVEL as Config['logLevel']) ?? 'warn',
    ...overrides,
  });
  const service = await startService(config, createLogger(config.logLevel, writeLog));
  const address = service.server.address();
  if (!address || typeof address !== 'object') throw new Error('service did not bind a TCP port');
  const url = `http://127.0.0.1:${address.port}`;
  return {
    url,
    service,
    config,
    call: jsonCall(url),
    async stop() {
      await service.stop();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

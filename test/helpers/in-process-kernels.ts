/**
 * What unit tests of the kernel layer on the InProcessProvisioner share: its one language (the runner's
 * JavaScript kernel), a spec registry that knows only it, and a config around it.
 */
import { loadConfig, type Config } from '../../src/config/index.js';
import type { KernelSpecEntry, KernelSpecRegistry } from '../../src/kernels/kernel-specs.js';

export const LANG = 'javascript';

export const specs = {
  resolve: async (name: string) => (name === LANG ? ({ name: LANG, image: 'test/javascript', aliases: [], resources: [] } as unknown as KernelSpecEntry) : undefined),
  names: async () => [LANG],
} as unknown as KernelSpecRegistry;

export function configWith(overrides: Partial<Config>): Config {
  return loadConfig({}, { defaultKernelName: LANG, defaultMaxMemKB: 65536, startTimeoutMs: 20_000, memoryBudgetKB: 0, maxKernels: 0, prespawnCount: 0, poolSizes: {}, ...overrides });
}

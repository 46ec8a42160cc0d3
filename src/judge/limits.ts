/**
 * A submission's limits: what it asks for, filled in from the server's defaults and checked against the
 * server's caps. A request above a cap is refused with a message naming the limit and the cap (Judge0
 * answers the same way, with 422), never silently lowered.
 */
import { RUN_LIMIT_NAMES, type Config, type RunLimitName } from '../config/index.js';
import { invalidInput } from '../errors.js';
import type { RunLimits } from './model.js';

export type LimitKind = 'run' | 'compile';

/**
 * `requested` holds only what the client set (undefined = the default). `describe` names a limit as the
 * client's API spells it (Judge0's `cpu_time_limit` in seconds, say), so the message says what to fix.
 */
export function resolveRunLimits(
  config: Pick<Config, 'judgeLimits' | 'judgeLimitCaps' | 'judgeCompileLimits' | 'judgeCompileLimitCaps'>,
  kind: LimitKind,
  requested: Partial<RunLimits> = {},
  describe: (name: RunLimitName, value: number) => string = (name, value) => `${name} ${value}`,
): RunLimits {
  const defaults = kind === 'run' ? config.judgeLimits : config.judgeCompileLimits;
  const caps = kind === 'run' ? config.judgeLimitCaps : config.judgeCompileLimitCaps;
  const limits = {} as RunLimits;
  for (const name of RUN_LIMIT_NAMES) {
    const value = requested[name];
    if (value === undefined) {
      limits[name] = defaults[name];
      continue;
    }
    if (!Number.isFinite(value) || value < 0) throw invalidInput(`${describe(name, value)} must be a number, 0 or more`);
    if (value > caps[name]) throw invalidInput(`${describe(name, value)} is above this server's limit of ${describe(name, caps[name])}`);
    limits[name] = value;
  }
  return limits;
}

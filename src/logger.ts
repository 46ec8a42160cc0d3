/**
 * Structured logs: one JSON object per line on stderr, with the kernel and container ids as fields.
 * The level is fixed at start (POLYKERNEL_LOG_LEVEL); per-message logs on the hot path are debug only.
 *
 * Kernel code decides how often some lines are written (every frame it forges is "Dropped a bad frame
 * from a kernel"): a kernel flooding them would fill the disk under the service's log and bury every
 * other line. So each kind of line, per kernel, is rate-limited: at most `burst` lines per `intervalMs`,
 * then one summary line with the number left out when the interval ends.
 *
 * Every line goes through redactSecrets: a token in a URL or header never reaches the log.
 */
import { redactSecrets } from './auth/redact.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export interface LogRateLimit {
  /** Lines of one kind (level, message, kernel) written per interval; the rest are counted. */
  burst: number;
  intervalMs: number;
}

/** Ten lines of a kind per kernel every ten seconds: a real fault shows, a flood costs one line a second. */
const DEFAULT_LOG_RATE_LIMIT: LogRateLimit = { burst: 10, intervalMs: 10_000 };

/** Past this many tracked kinds, expired ones are swept (the table must not grow with kernels ever seen). */
const SWEEP_AT_KINDS = 10_000;

interface Window {
  startedAt: number;
  written: number;
  suppressed: number;
  summary?: NodeJS.Timeout;
}

export function createLogger(
  level: LogLevel,
  write: (line: string) => void = (l) => process.stderr.write(l),
  rateLimit: LogRateLimit = DEFAULT_LOG_RATE_LIMIT,
  clock: () => number = Date.now,
): Logger {
  const threshold = RANK[level];
  const windows = new Map<string, Window>();
  const line = (lvl: string, msg: string, fields?: Record<string, unknown>) =>
    write(`${redactSecrets(JSON.stringify({ time: new Date(clock()).toISOString(), level: lvl, msg, ...fields }))}\n`);

  const admit = (lvl: string, msg: string, fields?: Record<string, unknown>): boolean => {
    const kernelId = fields?.kernelId;
    const kind = `${lvl}\u0000${msg}\u0000${typeof kernelId === 'string' ? kernelId : ''}`;
    const now = clock();
    let window = windows.get(kind);
    if (!window || now - window.startedAt >= rateLimit.intervalMs) {
      if (windows.size >= SWEEP_AT_KINDS) {
        for (const [key, w] of windows) if (!w.summary && now - w.startedAt >= rateLimit.intervalMs) windows.delete(key);
      }
      window = { startedAt: now, written: 0, suppressed: 0 };
      windows.set(kind, window);
    }
    if (window.written < rateLimit.burst) {
      window.written++;
      return true;
    }
    window.suppressed++;
    if (!window.summary) {
      const current = window;
      current.summary = setTimeout(() => {
        if (windows.get(kind) === current) windows.delete(kind);
        line(lvl, `${msg} (repeated: ${current.suppressed} more such lines left out in ${rateLimit.intervalMs / 1000} s)`, {
          ...(typeof kernelId === 'string' ? { kernelId } : {}),
          suppressed: current.suppressed,
        });
      }, Math.max(0, current.startedAt + rateLimit.intervalMs - now));
      current.summary.unref();
    }
    return false;
  };

  const emit = (lvl: Exclude<LogLevel, 'silent'>) => (msg: string, fields?: Record<string, unknown>) => {
    if (RANK[lvl] < threshold) return;
    // Debug is for a developer chasing a fault: never thinned out.
    if (lvl !== 'debug' && !admit(lvl, msg, fields)) return;
    line(lvl, msg, fields);
  };
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}

export const silentLogger: Logger = createLogger('silent');

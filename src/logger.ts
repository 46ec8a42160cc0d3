/**
 * Structured logs: one JSON object per line on stderr, with the kernel and container ids as fields.
 * The level is fixed at start (POLYKERNEL_LOG_LEVEL); per-message logs on the hot path are debug only.
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

export function createLogger(level: LogLevel, write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const threshold = RANK[level];
  const emit = (lvl: Exclude<LogLevel, 'silent'>) => (msg: string, fields?: Record<string, unknown>) => {
    if (RANK[lvl] < threshold) return;
    write(`${redactSecrets(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...fields }))}\n`);
  };
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}

export const silentLogger: Logger = createLogger('silent');

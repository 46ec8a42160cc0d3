/**
 * The log's rate limit (logger.ts): a line repeated for one kernel is written `burst` times per interval,
 * then one summary line counts what was left out; other kernels and other messages are not affected.
 */
import test from 'ava';
import { createLogger } from '../../src/logger.js';

test('a repeated warning is written burst times per interval per kernel, then summarised', async (t) => {
  const lines: any[] = [];
  const clock = { now: 0 };
  const log = createLogger('warn', (line) => void lines.push(JSON.parse(line)), { burst: 3, intervalMs: 50 }, () => clock.now);
  for (let i = 0; i < 1000; i++) log.warn('Dropped a bad frame from a kernel', { kernelId: 'a', error: `e${i}` });
  log.warn('Dropped a bad frame from a kernel', { kernelId: 'b' });
  log.warn('Something else', { kernelId: 'a' });
  log.info('not written at warn');
  t.deepEqual(lines.map((l) => `${l.kernelId}:${l.error ?? l.msg}`), ['a:e0', 'a:e1', 'a:e2', 'b:Dropped a bad frame from a kernel', 'a:Something else']);
  await new Promise((resolve) => setTimeout(resolve, 120));
  const summary = lines.find((l) => l.suppressed !== undefined);
  t.is(summary?.suppressed, 997);
  t.is(summary?.kernelId, 'a');
  t.regex(summary?.msg, /^Dropped a bad frame from a kernel \(repeated: 997 more/);
  // The next interval writes again.
  clock.now = 100;
  log.warn('Dropped a bad frame from a kernel', { kernelId: 'a', error: 'later' });
  t.is(lines[lines.length - 1].error, 'later');
});

test('debug lines are never thinned out', (t) => {
  const lines: string[] = [];
  const log = createLogger('debug', (line) => void lines.push(line), { burst: 1, intervalMs: 60_000 });
  for (let i = 0; i < 50; i++) log.debug('hot path', { kernelId: 'a' });
  t.is(lines.length, 50);
});

/**
 * One client flooding Judge0's `POST /submissions?wait=true` with 2000 programs that sleep, on a real service
 * process with a Redis store: the service's RSS stays bounded, the flooding client is held to its share of
 * the queue (POLYKERNEL_JUDGE0_MAX_QUEUE_PER_CLIENT, 429 past it) and the overall queue (503 "queue is
 * full", as Judge0's MAX_QUEUE_SIZE), so another client's submission is still taken and judged meanwhile.
 */
import test from 'ava';
import { redisUrl } from '../helpers/service.js';
import { startServiceProcess, type ServiceProcess } from '../helpers/service-process.js';
import { auth, KeysFile } from '../helpers/tenant-keys.js';
import { removeSubmissions } from './judge0-cleanup.js';
import { PYTHON } from './judge0-helpers.js';

const FLOODER = 'flooder-key-0123456789abcdef';
const OTHER = 'other-key-0123456789abcdef01';
let svc: ServiceProcess;
let keys: KeysFile;

test.before(async () => {
  keys = await KeysFile.create([
    { id: 'flooder', key: FLOODER, rateLimit: 100_000 },
    { id: 'other', key: OTHER, rateLimit: 100_000 },
  ]);
  svc = await startServiceProcess({
    label: 'attack-judge0-wait',
    headers: auth(OTHER),
    env: {
      REDIS_URL: redisUrl,
      POLYKERNEL_API_KEYS_FILE: keys.file,
      POLYKERNEL_JUDGE0_WORKERS: '1',
      POLYKERNEL_JUDGE_CONCURRENCY: '1',
      POLYKERNEL_JUDGE0_MAX_QUEUE_SIZE: '30',
      POLYKERNEL_JUDGE0_MAX_QUEUE_PER_CLIENT: '10',
      POLYKERNEL_JUDGE0_WAIT_TIMEOUT_MS: '2000',
    },
  });
});

test.after.always(async () => {
  await svc?.stop();
  await removeSubmissions(redisUrl, svc?.instance ?? '');
  await keys?.remove();
});

test('2000 wait=true submissions of one client: RSS bounded, the client held to its share, another client still judged', async (t) => {
  t.timeout(400_000);
  const body = { language_id: PYTHON, source_code: 'import time\ntime.sleep(0.3)\nprint("slept")' };
  const warm = await svc.http.call('POST', '/submissions?wait=true', body, auth(OTHER));
  t.is(warm.status, 201, JSON.stringify(warm.body).slice(0, 300));
  const baseline = svc.rssKB();
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, svc.rssKB())), 50);
  const statuses = new Map<number, number>();
  const otherOutcomes: string[] = [];
  try {
    for (let wave = 0; wave < 10; wave++) {
      const flood = Array.from({ length: 200 }, async () => {
        // A connection each: a kept-alive socket the server closes while earlier answers wait would fail.
        const answer = await svc.http
          .call('POST', '/submissions?wait=true&fields=stdout,status_id', body, { connection: 'close', ...auth(FLOODER) })
          .catch((error: Error) => ({ status: -1, body: error.message }));
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
        if (answer.status === 503) t.deepEqual(answer.body, { error: 'queue is full' });
        if (answer.status === 429) t.regex(answer.body.error, /POLYKERNEL_JUDGE0_MAX_QUEUE_PER_CLIENT/);
      });
      // While the flood holds the line, another client's submission is taken (not 503) and gets a token.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const other = await svc.http.call('POST', '/submissions', body, { connection: 'close', ...auth(OTHER) });
      otherOutcomes.push(String(other.status));
      await Promise.all(flood);
    }
  } finally {
    clearInterval(sampler);
  }
  const growth = peak - baseline;
  t.log(`flooder statuses ${JSON.stringify([...statuses].sort())}; other client ${otherOutcomes.join(',')}; RSS baseline ${baseline} KB, peak ${peak} KB, growth ${growth} KB`);
  t.is(statuses.get(-1) ?? 0, 0, 'no request had its socket closed');
  t.deepEqual([...statuses.keys()].filter((s) => ![201, 429, 503].includes(s)), [], 'only 201, 429 and 503');
  t.true((statuses.get(429) ?? 0) > 1000, 'most of the flood was refused as past the client\'s share');
  t.deepEqual(otherOutcomes, Array(10).fill('201'), 'the other client was never refused while the flood ran');
  // Sockets held and submissions queued are bounded; what is left is garbage the collector has not taken.
  t.true(growth < 150 * 1024, `the service's RSS grew ${growth} KB`);
});

/**
 * Per-key limits against a real Docker engine and store: a loop of bursts of parallel creates (v1 and
 * Jupyter mixed) never leaves a key with more kernels, or more memory, than its policy allows; the rate
 * limit answers 429 with Backend.AI's X-RateLimit-* headers and Retry-After, on HTTP and on the channels
 * handshake; and a flood of random bogus keys leaves the service's memory flat (its own process, RSS).
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { startServiceProcess } from '../helpers/service-process.js';
import { startTestService, type TestService } from '../helpers/service.js';
import { auth, KeysFile } from '../helpers/tenant-keys.js';
import { channelsUrl } from '../helpers/jupyter-client.js';

const ADMIN = 'limits-admin-token';
const Q_KEY = 'key-with-a-quota-0123456789';
const M_KEY = 'key-with-memory-0123456789';
const R_KEY = 'key-rate-limited-0123456789';
let svc: TestService;
let keys: KeysFile;

test.before(async () => {
  keys = await KeysFile.create([
    { id: 'quota', key: Q_KEY, maxKernels: 3 },
    { id: 'memory', key: M_KEY, maxKernels: 0, maxMemKB: 300_000 },
    { id: 'rated', key: R_KEY, rateLimit: 20 },
  ]);
  svc = await startTestService({ authToken: ADMIN, apiKeysFile: keys.file, apiKeysReloadMs: 100 } as any);
});

test.after.always(async () => {
  await svc?.stop();
  await keys?.remove();
});

const containersOf = (instance: string) =>
  execFileSync('/usr/bin/docker', ['ps', '-q', '--filter', `label=org.polykernel.instance=${instance}`], { encoding: 'utf8' }).split('\n').filter(Boolean).length;

async function deleteAll(key: string): Promise<void> {
  const { body } = await svc.call('GET', '/api/kernels', undefined, auth(key));
  await Promise.all((body as { id: string }[]).map((k) => svc.call('DELETE', `/api/kernels/${k.id}`, undefined, auth(key))));
  await svc.service.kernels.settled();
}

test.serial('a loop of bursts of 10 parallel creates never gives a key more than its 3 kernels', async (t) => {
  t.timeout(300_000);
  for (let round = 0; round < 3; round++) {
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        i % 2 === 0
          ? svc.call('POST', '/v1/kernel/create', { lang: 'python3' }, auth(Q_KEY))
          : svc.call('POST', '/api/kernels', { name: 'python3' }, auth(Q_KEY)),
      ),
    );
    const created = answers.filter((a) => a.status === 201).length;
    const refused = answers.filter((a) => a.status === 402);
    t.log(`round ${round}: ${created} created, ${refused.length} refused`);
    t.true(created <= 3, `round ${round}: ${created} kernels created`);
    t.is(created + refused.length, 10, JSON.stringify(answers.filter((a) => a.status !== 201 && a.status !== 402).map((a) => a.body)));
    t.regex(refused[0]!.body.message ?? refused[0]!.body.detail, /may have 3 kernel\(s\) at once/);
    const listed = (await svc.call('GET', '/api/kernels', undefined, auth(Q_KEY))).body as unknown[];
    t.true(listed.length <= 3, `round ${round}: ${listed.length} kernels listed`);
    t.true(containersOf(svc.config.instance) <= 3);
    // One more, sequentially, is refused too, until one is deleted.
    if (listed.length === 3) t.is((await svc.call('POST', '/v1/kernel/create', { lang: 'python3' }, auth(Q_KEY))).status, 402);
    await deleteAll(Q_KEY);
  }
  // The admin is not bound by a key's quota.
  const admin = await svc.call('POST', '/v1/kernel/create', { lang: 'python3' }, auth(ADMIN));
  t.is(admin.status, 201);
  t.is((await svc.call('DELETE', `/v1/kernel/${admin.body.kernelId}`, undefined, auth(ADMIN))).status, 204);
});

test.serial('parallel creates never pass a key\'s total memory', async (t) => {
  t.timeout(180_000);
  const answers = await Promise.all(
    Array.from({ length: 8 }, () => svc.call('POST', '/v1/kernel/create', { lang: 'python3', resourceLimits: { maxMem: 100_000 } }, auth(M_KEY))),
  );
  const created = answers.filter((a) => a.status === 201).length;
  t.log(`${created} of 8 created at 100000 KB each under a 300000 KB quota`);
  t.true(created <= 3 && created >= 1);
  const refusal = answers.find((a) => a.status === 402)!;
  t.is(refusal.body.type, 'urn:polykernel:error:too_many_kernels');
  t.regex(refusal.body.detail, /300000 KB of kernel memory in total/);
  await deleteAll(M_KEY);
});

test.serial('the rate limit: 429 with X-RateLimit-Limit/Remaining/Reset/Window and Retry-After, WebSocket handshake included', async (t) => {
  const seen: { status: number; remaining: string | null }[] = [];
  for (let i = 0; i < 20; i++) {
    const answer = await svc.call('GET', '/api/kernels', undefined, auth(R_KEY));
    seen.push({ status: answer.status, remaining: answer.headers.get('x-ratelimit-remaining') });
    t.is(answer.headers.get('x-ratelimit-limit'), '20');
    t.is(answer.headers.get('x-ratelimit-window'), String(svc.config.rateLimitWindowS));
    t.true(Number(answer.headers.get('x-ratelimit-reset')) > 0);
  }
  t.true(seen.every((s) => s.status === 200));
  t.deepEqual(seen.map((s) => Number(s.remaining)), Array.from({ length: 20 }, (_, i) => 19 - i));
  const limited = await svc.call('GET', '/api/kernels', undefined, auth(R_KEY));
  t.is(limited.status, 429);
  t.is(limited.headers.get('x-ratelimit-remaining'), '0');
  t.true(Number(limited.headers.get('retry-after')) > 0);
  t.regex(limited.body.message, /rate limit of key "rated" reached \(20 requests per 900 s\)/);
  t.is(limited.body.reason, 'Too Many Requests');
  const v1 = await svc.call('GET', `/v1/kernel/${randomUUID()}`, undefined, auth(R_KEY));
  t.is(v1.status, 429);
  t.is(v1.body.type, 'urn:polykernel:error:rate_limited');
  const handshake = await new Promise<{ status: number; retryAfter?: string }>((resolve, reject) => {
    const socket = new WebSocket(`${channelsUrl(svc.url, randomUUID())}?token=${R_KEY}`);
    socket.once('unexpected-response', (_req, res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined });
    });
    socket.once('open', () => reject(new Error('the handshake was accepted')));
    socket.once('error', () => undefined);
  });
  t.is(handshake.status, 429);
  t.truthy(handshake.retryAfter);
  // Other keys are not affected.
  t.is((await svc.call('GET', '/api/kernels', undefined, auth(Q_KEY))).status, 200);
});

test.serial('a flood of 150000 distinct bogus keys leaves the service\'s memory flat; all are 401', async (t) => {
  t.timeout(300_000);
  // The service as its own process, for a clean RSS figure.
  const service = await startServiceProcess({
    label: 'flood',
    env: { KG_AUTH_TOKEN: ADMIN, POLYKERNEL_API_KEYS_FILE: keys.file },
    headers: auth(ADMIN),
  });
  const status = async (key: string) => (await service.http.call('GET', '/api/kernels', undefined, auth(key))).status;
  try {
    const flood = async (count: number) => {
      let unauthorized = 0;
      let next = 0;
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          while (next < count) {
            next++;
            if ((await status(randomBytes(24).toString('base64url'))) === 401) unauthorized++;
          }
        }),
      );
      return unauthorized;
    };
    t.is(await flood(20_000), 20_000, 'warm-up: every bogus key is 401');
    const before = service.rssKB();
    t.is(await flood(150_000), 150_000);
    const after = service.rssKB();
    t.log(`service RSS ${before} KB -> ${after} KB after 150000 bogus keys (${after - before} KB)`);
    // A per-key structure for bogus keys would hold 150000 entries (tens of MB); allow allocator noise.
    t.true(after - before < 25_000, `RSS grew by ${after - before} KB`);
    t.is(await status(Q_KEY), 200, 'a valid key still works');
  } finally {
    await service.stop();
  }
});

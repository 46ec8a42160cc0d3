/**
 * The tenant machinery without Docker: the keys file (parsing, hashing, re-read on change, revocation),
 * the fixed-window rate limit (counts, reset, bounded map), the per-key kernel quota under a burst of
 * parallel creates, and the redaction of tokens from log lines.
 */
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { digestOf, KeyFileError, KeyRegistry, parseKeyFile, type ApiKey, type KeyPolicy } from '../../src/auth/api-keys.js';
import { KernelQuota } from '../../src/auth/quota.js';
import { FixedWindowLimiter } from '../../src/auth/rate-limit.js';
import { redactSecrets } from '../../src/auth/redact.js';
import type { CreateKernelRequest } from '../../src/kernels/kernel-manager.js';
import type { KernelRecord } from '../../src/kernels/kernel-record.js';
import { createLogger, silentLogger } from '../../src/logger.js';

const DEFAULTS: KeyPolicy = { maxKernels: 2, maxMemKB: 0, maxCpuCreditMs: 0, rateLimit: 10 };
const SECRET_A = 'alice-secret-0123456789';
const SECRET_B = 'bob-secret-0123456789';

test('the keys file: plain keys are hashed, sha256 entries used as given, per-key policies override defaults', (t) => {
  const keys = parseKeyFile(
    JSON.stringify({ keys: [{ id: 'alice', key: SECRET_A, maxKernels: 5 }, { id: 'bob', sha256: digestOf(SECRET_B), rateLimit: 0 }] }),
    DEFAULTS,
  );
  t.is(keys.size, 2);
  const alice = keys.get(digestOf(SECRET_A))!;
  t.is(alice.id, 'alice');
  t.deepEqual(alice.policy, { ...DEFAULTS, maxKernels: 5 });
  t.false(JSON.stringify([...keys.values()]).includes(SECRET_A), 'the secret itself is not kept');
  t.is(keys.get(digestOf(SECRET_B))!.policy.rateLimit, 0);
});

test('the keys file: bad entries are refused with what to fix', (t) => {
  const bad = (doc: unknown, pattern: RegExp) => t.regex(t.throws(() => parseKeyFile(JSON.stringify(doc), DEFAULTS), { instanceOf: KeyFileError }).message, pattern);
  t.throws(() => parseKeyFile('{nope', DEFAULTS), { instanceOf: KeyFileError });
  bad({ keys: 'x' }, /expected/);
  bad({ keys: [{ id: 'a b', key: SECRET_A }] }, /id must be/);
  bad({ keys: [{ id: 'a', key: 'short' }] }, /at least 16/);
  bad({ keys: [{ id: 'a', key: SECRET_A }, { id: 'a', key: SECRET_B }] }, /twice/);
  bad({ keys: [{ id: 'a', key: SECRET_A }, { id: 'b', key: SECRET_A }] }, /same key/);
  bad({ keys: [{ id: 'a', key: SECRET_A, maxKernels: -1 }] }, /maxKernels/);
});

test('the registry re-reads a changed file: an added key works and a revoked one is refused without a restart', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pk-keys-'));
  const file = path.join(dir, 'keys.json');
  await writeFile(file, JSON.stringify({ keys: [{ id: 'alice', key: SECRET_A }] }));
  let now = 1000;
  const registry = new KeyRegistry({ file, reloadMs: 100, defaults: DEFAULTS, log: silentLogger, clock: () => now });
  const revoked: string[] = [];
  registry.onRevoked = (ids) => revoked.push(...ids);
  const alice = registry.lookup(SECRET_A)!;
  t.is(alice.id, 'alice');
  t.is(registry.lookup(SECRET_B), undefined);
  t.is(registry.lookup(SECRET_A.slice(0, -1)), undefined);
  await writeFile(file, JSON.stringify({ keys: [{ id: 'bob', key: SECRET_B }] }));
  now += 100;
  t.is(registry.lookup(SECRET_B)?.id, 'bob');
  t.is(registry.lookup(SECRET_A), undefined);
  t.false(registry.isValid(alice));
  t.deepEqual(revoked, ['alice']);
  // A broken edit keeps the keys read before: a typo neither locks everyone out nor opens the service.
  await writeFile(file, '{"keys": [');
  now += 100;
  t.is(registry.lookup(SECRET_B)?.id, 'bob');
  await rm(dir, { recursive: true, force: true });
});

test('a missing keys file at start is an error that names it', (t) => {
  const error = t.throws(() => new KeyRegistry({ file: '/nonexistent/keys.json', reloadMs: 0, defaults: DEFAULTS, log: silentLogger }));
  t.regex(error!.message, /POLYKERNEL_API_KEYS_FILE \/nonexistent\/keys.json/);
});

test('the rate limit: a fixed window, remaining counts down, refused past the limit, a new window after it', (t) => {
  let now = 0;
  const limiter = new FixedWindowLimiter(60_000, () => now);
  const first = limiter.hit('alice', 3);
  t.deepEqual(first, { allowed: true, limit: 3, remaining: 2, resetS: 60, windowS: 60 });
  now = 10_000;
  t.is(limiter.hit('alice', 3).remaining, 1);
  t.true(limiter.hit('alice', 3).allowed);
  const refused = limiter.hit('alice', 3);
  t.false(refused.allowed);
  t.is(refused.remaining, 0);
  t.is(refused.resetS, 50);
  t.true(limiter.hit('bob', 3).allowed, 'keys have their own windows');
  now = 60_000;
  t.deepEqual(limiter.hit('alice', 3), { allowed: true, limit: 3, remaining: 2, resetS: 60, windowS: 60 });
});

test('the rate limit map stays bounded: expired windows are swept and revoked keys forgotten', (t) => {
  let now = 0;
  const limiter = new FixedWindowLimiter(1000, () => now);
  for (let i = 0; i < 10_000; i++) limiter.hit(`k${i}`, 5);
  t.is(limiter.size, 10_000);
  now = 5000;
  limiter.hit('k0', 5);
  t.is(limiter.size, 1);
  limiter.forget(['k0']);
  t.is(limiter.size, 0);
});

/** A kernel manager double whose creates take a while, as real ones do, and whose list is the store's. */
function fakeKernels(delayMs = 20) {
  const records: KernelRecord[] = [];
  let next = 0;
  return {
    records,
    resolveLimits: (limits: CreateKernelRequest['limits'] = {}) => ({ maxMemKB: limits.maxMemKB ?? 1000, timeoutMs: 1, idleTimeoutMs: 0, maxCpuCreditMs: 0 }),
    list: async () => {
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 5));
      return records.map((record) => ({ ...record }));
    },
    create: async (request: CreateKernelRequest) => {
      const record = {
        id: `k${next++}`,
        owner: request.owner,
        state: 'starting',
        clientSessionToken: request.clientSessionToken,
        limits: { maxMemKB: request.limits?.maxMemKB ?? 1000 },
        cpuCreditUsedMs: 0,
      } as unknown as KernelRecord;
      records.push(record);
      await new Promise((resolve) => setTimeout(resolve, Math.random() * delayMs));
      record.state = 'idle';
      return { record, created: true };
    },
  };
}

const key = (id: string, policy: Partial<KeyPolicy>): ApiKey => ({ id, digest: id, policy: { ...DEFAULTS, ...policy } });

test('the quota: 50 parallel creates of one key never make more than its maxKernels', async (t) => {
  const kernels = fakeKernels();
  const quota = new KernelQuota(kernels as any);
  const alice = key('alice', { maxKernels: 3 });
  const results = await Promise.allSettled(Array.from({ length: 50 }, () => quota.create(alice, { lang: 'python3' })));
  const made = results.filter((r) => r.status === 'fulfilled').length;
  t.is(made, 3);
  t.is(kernels.records.filter((r) => r.owner === 'alice').length, 3);
  const refusal = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
  t.regex(refusal.reason.message, /may have 3 kernel\(s\) at once/);
  // Another key has its own quota.
  t.truthy(await quota.create(key('bob', { maxKernels: 1 }), { lang: 'python3' }));
});

test('the quota: total memory caps sum across the key kernels, parallel creates included', async (t) => {
  const kernels = fakeKernels();
  const quota = new KernelQuota(kernels as any);
  const alice = key('alice', { maxKernels: 0, maxMemKB: 2500 });
  const results = await Promise.allSettled(Array.from({ length: 20 }, () => quota.create(alice, { lang: 'python3', limits: { maxMemKB: 1000 } })));
  t.is(results.filter((r) => r.status === 'fulfilled').length, 2);
  const refusal = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
  t.regex(refusal.reason.message, /2500 KB of kernel memory in total/);
  await t.throwsAsync(quota.create(alice, { lang: 'python3', limits: { maxMemKB: 600 } }), { message: /ask for less/ });
  t.truthy(await quota.create(alice, { lang: 'python3', limits: { maxMemKB: 500 } }));
});

test('the quota: a key at its limit still gets its own kernel back by clientSessionToken', async (t) => {
  const kernels = fakeKernels(1);
  const quota = new KernelQuota(kernels as any);
  const alice = key('alice', { maxKernels: 1 });
  await quota.create(alice, { lang: 'python3', clientSessionToken: 'repl' });
  // The double creates a new one each time; what matters is that the check lets the REPL token through.
  await t.notThrowsAsync(quota.create(alice, { lang: 'python3', clientSessionToken: 'repl' }));
  await t.throwsAsync(quota.create(alice, { lang: 'python3', clientSessionToken: 'other' }), { message: /at once/ });
});

test('the quota: a key whose kernels used its CPU credit cannot start more', async (t) => {
  const kernels = fakeKernels(1);
  const quota = new KernelQuota(kernels as any);
  const alice = key('alice', { maxKernels: 0, maxCpuCreditMs: 500 });
  const { record } = await quota.create(alice, { lang: 'python3' });
  record.cpuCreditUsedMs = 600;
  await t.throwsAsync(quota.create(alice, { lang: 'python3' }), { message: /CPU credit/ });
});

test('tokens in URLs and Authorization values are redacted from log lines', (t) => {
  const lines: string[] = [];
  const log = createLogger('debug', (line) => lines.push(line));
  log.error('Unhandled error', { path: '/api/kernels/x/channels?session_id=1&token=sup3rs3cret-value', error: 'GET /x?token=another-secret failed' });
  log.info('header', { auth: 'Authorization: token abcdefgh12345678', bearer: 'Bearer zyxwvuts98765432' });
  const text = lines.join('');
  for (const secret of ['sup3rs3cret-value', 'another-secret', 'abcdefgh12345678', 'zyxwvuts98765432']) t.false(text.includes(secret), secret);
  t.true(text.includes('session_id=1&token=[redacted]'));
  t.is(redactSecrets('/api?token=a&b=c'), '/api?token=[redacted]&b=c');
});

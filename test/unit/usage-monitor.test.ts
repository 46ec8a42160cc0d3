/**
 * Culling decisions with an injected clock (no sleeps): the idle timeout applies only to a kernel that is
 * not busy, the CPU credit to any kernel, and 0 means no limit for either. One sampling round with fakes
 * checks that a decision is acted on and that CPU credit is cumulative and monotonic.
 */
import test from 'ava';
import type { KernelHandle } from '../../src/kernels/kernel-handle.js';
import type { KernelRecord, KernelState } from '../../src/kernels/kernel-record.js';
import { KernelRecords } from '../../src/kernels/kernel-records.js';
import { IdleCpuBudget } from '../../src/kernels/idle-cpu.js';
import { UsageMonitor, type SampledKernels } from '../../src/kernels/usage-monitor.js';
import { silentLogger } from '../../src/logger.js';
import { MemoryStore } from '../../src/store/memory-store.js';

const T0 = 1_700_000_000_000;

function record(overrides: Partial<KernelRecord> = {}, limits: Partial<KernelRecord['limits']> = {}): KernelRecord {
  return {
    id: 'k-1',
    lang: 'python3',
    image: 'polykernel/python3:latest',
    runtime: 'runc',
    containerId: 'c-1',
    connDir: '/tmp/k-1',
    key: 'key',
    createdAt: T0,
    lastActivity: T0,
    state: 'idle',
    limits: { maxMemKB: 262144, timeoutMs: 15000, idleTimeoutMs: 60_000, maxCpuCreditMs: 0, ...limits },
    numQueriesExecuted: 0,
    memoryUsedKB: 0,
    cpuCreditUsedMs: 0,
    cpuCreditBaseMs: 0,
    connections: 0,
    ...overrides,
  };
}

function monitorAt(clock: { now: number }, kernels = {} as SampledKernels): UsageMonitor {
  return new UsageMonitor(kernels, silentLogger, 1000, () => clock.now);
}

test('an idle kernel is culled only once it has been inactive for longer than its idle timeout', (t) => {
  const clock = { now: T0 };
  const monitor = monitorAt(clock);
  const kernel = record({ lastActivity: T0 });
  t.is(monitor.cullReason(kernel), undefined);
  clock.now = T0 + 60_000;
  t.is(monitor.cullReason(kernel), undefined, 'exactly at the timeout it may stay');
  clock.now = T0 + 60_001;
  t.is(monitor.cullReason(kernel), 'idle timeout');
  t.is(monitor.cullReason(record({ lastActivity: T0 + 30_000 })), undefined, 'recent activity resets the clock');
});

test('a busy kernel is never culled for idleness, however long since its last message', (t) => {
  const clock = { now: T0 + 24 * 3600_000 };
  const monitor = monitorAt(clock);
  t.is(monitor.cullReason(record({ state: 'busy' })), undefined);
  t.is(monitor.cullReason(record({ state: 'idle' })), 'idle timeout');
});

test('an idle timeout of 0 means a kernel is never culled for idleness', (t) => {
  const monitor = monitorAt({ now: T0 + 365 * 24 * 3600_000 });
  t.is(monitor.cullReason(record({}, { idleTimeoutMs: 0 })), undefined);
});

test('a kernel is culled once its CPU time exceeds its credit, busy or not', (t) => {
  const monitor = monitorAt({ now: T0 });
  const limits = { maxCpuCreditMs: 5000 };
  t.is(monitor.cullReason(record({ cpuCreditUsedMs: 4999 }, limits)), undefined);
  t.is(monitor.cullReason(record({ cpuCreditUsedMs: 5000 }, limits)), undefined, 'using exactly the credit is allowed');
  t.is(monitor.cullReason(record({ cpuCreditUsedMs: 5001 }, limits)), 'CPU credit exhausted');
  t.is(monitor.cullReason(record({ cpuCreditUsedMs: 5001, state: 'busy' }, limits)), 'CPU credit exhausted');
});

test('a CPU credit of 0 means no CPU limit', (t) => {
  const monitor = monitorAt({ now: T0 });
  t.is(monitor.cullReason(record({ cpuCreditUsedMs: Number.MAX_SAFE_INTEGER }, { maxCpuCreditMs: 0 })), undefined);
});

test('with both limits at 0 nothing is ever culled', (t) => {
  const monitor = monitorAt({ now: T0 + 10 ** 12 });
  t.is(monitor.cullReason(record({ cpuCreditUsedMs: 10 ** 9 }, { idleTimeoutMs: 0, maxCpuCreditMs: 0 })), undefined);
});

// --- one sampling round with fakes ---------------------------------------------------------------------

interface FakeLive {
  id: string;
  lastActivity: number;
  state: KernelState;
  numQueriesExecuted: number;
  executing?: boolean;
}

/** Kernels as the monitor sees them: the records in a memory store, one handle whose usage is `usage()`. */
async function fakeKernels(stored: KernelRecord, live: FakeLive, usage: () => { memoryBytes: number; cpuMs: number }) {
  const records = new KernelRecords(new MemoryStore());
  await records.put(stored);
  const deleted: [string, string | undefined][] = [];
  const handle = { id: live.id, kernel: live, usage: async () => usage() } as unknown as KernelHandle;
  const kernels: SampledKernels = {
    records,
    handles: () => [handle],
    delete: async (id: string, reason?: string) => void deleted.push([id, reason]),
  };
  return { kernels, deleted, records };
}

async function sampleRound(stored: KernelRecord, live: FakeLive, cpuMs: number, now: number) {
  const { kernels, deleted, records } = await fakeKernels(stored, live, () => ({ memoryBytes: 10 * 1024 * 1024, cpuMs }));
  await monitorAt({ now }, kernels).sampleOnce();
  return { deleted, after: (await records.get(stored.id))! };
}

test('a sampling round stores usage, adds CPU of earlier incarnations, and culls a kernel past its credit', async (t) => {
  const stored = record({ cpuCreditBaseMs: 3000, cpuCreditUsedMs: 3000 }, { maxCpuCreditMs: 4000, idleTimeoutMs: 0 });
  const live = { id: 'k-1', lastActivity: T0, state: 'busy' as const, numQueriesExecuted: 0 };
  const { deleted, after } = await sampleRound(stored, live, 1500, T0);
  t.is(after.memoryUsedKB, 10 * 1024);
  t.is(after.cpuCreditUsedMs, 4500);
  t.deepEqual(deleted, [['k-1', 'CPU credit exhausted']]);
});

test('CPU credit never goes down when the container reports less (a process exited)', async (t) => {
  const stored = record({ cpuCreditUsedMs: 9000 }, { maxCpuCreditMs: 0 });
  const live = { id: 'k-1', lastActivity: T0, state: 'idle' as const, numQueriesExecuted: 0 };
  const { deleted, after } = await sampleRound(stored, live, 100, T0);
  t.is(after.cpuCreditUsedMs, 9000);
  t.deepEqual(deleted, []);
});

test('a sampling round culls on idleness using the live kernel\'s latest activity and the injected clock', async (t) => {
  const stored = record({ lastActivity: T0 }, { idleTimeoutMs: 1000 });
  const recentlyActive = { id: 'k-1', lastActivity: T0 + 5000, state: 'idle' as const, numQueriesExecuted: 0 };
  t.deepEqual((await sampleRound(stored, recentlyActive, 0, T0 + 5500)).deleted, []);
  const quiet = { ...recentlyActive, lastActivity: T0 };
  t.deepEqual((await sampleRound(stored, quiet, 0, T0 + 5500)).deleted, [['k-1', 'idle timeout']]);
});

test('idle-CPU budget: CPU used long after the last request, with no execution open, culls; an open execution spares', async (t) => {
  const run = async (executing: boolean) => {
    const stored = record({ lastActivity: T0 }, { idleTimeoutMs: 0, timeoutMs: 1000 });
    const live = { id: 'k-1', lastActivity: T0, state: 'idle' as const, numQueriesExecuted: 0, executing };
    let cpuMs = 0;
    const { kernels, deleted } = await fakeKernels(stored, live, () => ({ memoryBytes: 0, cpuMs }));
    const clock = { now: T0 + 10_000 };
    const monitor = new UsageMonitor(kernels, silentLogger, 1000, () => clock.now, new IdleCpuBudget(1500, 10_000));
    for (let i = 0; i < 4 && deleted.length === 0; i++) {
      await monitor.sampleOnce();
      clock.now += 1000;
      cpuMs += 1000;
    }
    return deleted;
  };
  const culled = await run(false);
  t.is(culled.length, 1);
  t.regex(culled[0]![1]!, /CPU used while idle: 2000 ms/);
  t.deepEqual(await run(true), []);
});

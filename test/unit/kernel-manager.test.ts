/**
 * The kernel manager's parts against a provisioner whose kernels are the runner's JavaScript kernel in
 * this process (real Jupyter messages, no Docker) and the memory store: admission under concurrent
 * creates, clientSessionToken claims, adoption by a second manager, the automatic-restart budget, and a
 * failed launch giving back what it took.
 */
import test from 'ava';
import { loadConfig, type Config } from '../../src/config/index.js';
import { DomainError } from '../../src/errors.js';
import { KernelManager } from '../../src/kernels/kernel-manager.js';
import { RESTART_LIMIT } from '../../src/kernels/kernel-restarter.js';
import type { KernelSpecEntry, KernelSpecRegistry } from '../../src/kernels/kernel-specs.js';
import type { LiveKernel } from '../../src/kernels/live-kernel.js';
import { silentLogger } from '../../src/logger.js';
import type { ExecuteReplyContent } from '../../src/protocol/messages.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { InProcessProvisioner } from '../helpers/in-process-provisioner.js';

const LANG = 'javascript';
const CAP_KB = 65536;

const specs = {
  resolve: async (name: string) => (name === LANG ? ({ name: LANG, image: 'test/javascript', aliases: [], resources: [] } as unknown as KernelSpecEntry) : undefined),
  names: async () => [LANG],
} as unknown as KernelSpecRegistry;

function configWith(overrides: Partial<Config>): Config {
  return loadConfig({}, { defaultKernelName: LANG, defaultMaxMemKB: CAP_KB, startTimeoutMs: 20_000, memoryBudgetKB: 0, maxKernels: 0, prespawnCount: 0, poolSizes: {}, ...overrides });
}

async function managerWith(overrides: Partial<Config> = {}, provisioner?: InProcessProvisioner, store = new MemoryStore()) {
  const placed = provisioner ?? (await InProcessProvisioner.create());
  const manager = new KernelManager(configWith(overrides), placed, store, specs, silentLogger);
  await manager.start();
  return { manager, provisioner: placed, store };
}

async function evaluate(kernel: LiveKernel, code: string): Promise<ExecuteReplyContent> {
  const request = kernel.message('execute_request', { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false });
  return (await kernel.request('shell', request, 10_000)).content as ExecuteReplyContent;
}

const codeOf = (error: unknown) => (error instanceof DomainError ? error.code : String(error));

test('concurrent creates never start more kernels than KG_MAX_KERNELS; a delete makes room again', async (t) => {
  const { manager, provisioner } = await managerWith({ maxKernels: 3 });
  t.teardown(() => manager.stop(false).then(() => provisioner.dispose()));
  const outcomes = await Promise.allSettled(Array.from({ length: 8 }, () => manager.create({})));
  const created = outcomes.filter((o) => o.status === 'fulfilled');
  const refused = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
  t.is(created.length, 3);
  t.deepEqual([...new Set(refused.map((o) => codeOf(o.reason)))], ['too_many_kernels']);
  t.is(manager.handles().length, 3);
  t.is(provisioner.placed.size, 3, 'a refused create starts nothing');
  await manager.delete((created[0] as PromiseFulfilledResult<{ record: { id: string } }>).value.record.id);
  await t.notThrowsAsync(manager.create({}));
});

test('concurrent creates never hold more memory than the budget; a refused create holds none', async (t) => {
  const { manager, provisioner } = await managerWith({ memoryBudgetKB: 2 * CAP_KB });
  t.teardown(() => manager.stop(false).then(() => provisioner.dispose()));
  const outcomes = await Promise.allSettled(Array.from({ length: 6 }, () => manager.create({})));
  t.is(outcomes.filter((o) => o.status === 'fulfilled').length, 2);
  t.true(outcomes.filter((o) => o.status === 'rejected').every((o) => codeOf((o as PromiseRejectedResult).reason) === 'unavailable'));
  t.is(manager.memory.usedKB, 2 * CAP_KB);
});

test('concurrent creates with one clientSessionToken make one kernel, which every create returns', async (t) => {
  const { manager, provisioner } = await managerWith();
  t.teardown(() => manager.stop(false).then(() => provisioner.dispose()));
  const results = await Promise.all(Array.from({ length: 5 }, () => manager.create({ clientSessionToken: 'repl-1', owner: 'tenant-a' })));
  t.is(new Set(results.map((r) => r.record.id)).size, 1);
  t.is(results.filter((r) => r.created).length, 1);
  const other = await manager.create({ clientSessionToken: 'repl-1', owner: 'tenant-b' });
  t.not(other.record.id, results[0]!.record.id, "another owner's token of the same name is another kernel");
  t.is(provisioner.placed.size, 2);
});

test('a launch that fails gives back its capacity, memory and token, and leaves no record', async (t) => {
  const { manager, provisioner, store } = await managerWith({ maxKernels: 1, memoryBudgetKB: CAP_KB });
  t.teardown(() => manager.stop(false).then(() => provisioner.dispose()));
  provisioner.failLaunches = 1;
  const error = await t.throwsAsync(manager.create({ clientSessionToken: 't' }));
  t.is(codeOf(error), 'kernel_failed');
  t.deepEqual(await store.list('kernels'), []);
  t.is(manager.memory.usedKB, 0);
  const { record, created } = await manager.create({ clientSessionToken: 't' });
  t.true(created, 'the token is free again');
  t.is((await evaluate((await manager.handle(record.id)).kernel, '1 + 1')).status, 'ok');
});

test('a second manager adopts the kernels the first kept, with their state; it removes a record whose kernel died and a leftover', async (t) => {
  const store = new MemoryStore();
  const first = await managerWith({}, undefined, store);
  const provisioner = first.provisioner;
  t.teardown(() => provisioner.dispose());
  const kept = (await first.manager.create({ owner: 'tenant-a' })).record;
  const dying = (await first.manager.create({})).record;
  await evaluate((await first.manager.handle(kept.id)).kernel, 'globalThis.answer = 42');
  await first.manager.stop(true);
  await provisioner.kill(dying.containerId);
  // A container no record knows (a pooled kernel of the earlier run, say).
  const leftover = await provisioner.launch({ id: 'leftover', lang: LANG, image: 'x', runtime: 'runc', key: 'k', memoryBytes: 1, env: {} });

  const { manager } = await managerWith({}, provisioner, store);
  t.teardown(() => manager.stop(false));
  const adopted = await manager.handle(kept.id);
  t.is(adopted.owner, 'tenant-a');
  t.true(provisioner.sealed.has(kept.id), 'adopted kernels are sealed before clients reach them');
  const reply = await evaluate(adopted.kernel, 'answer');
  t.is(reply.status, 'ok', 'the same kernel process, its globals intact');
  t.is(codeOf(await t.throwsAsync(manager.handle(dying.id))), 'not_found');
  t.is(await store.get('kernels', dying.id), undefined);
  t.false(provisioner.placed.has(leftover.containerId), 'the leftover container was reaped');
  t.deepEqual(manager.handles().map((h) => h.id), [kept.id]);
});

test(`a kernel whose container keeps dying is restarted ${RESTART_LIMIT} times within a minute, then removed`, async (t) => {
  const { manager, provisioner } = await managerWith({ restartDeadKernels: true });
  t.teardown(() => manager.stop(false).then(() => provisioner.dispose()));
  const { record } = await manager.create({});
  const died: string[] = [];
  manager.on('died', (id) => died.push(id));
  for (let round = 0; round < RESTART_LIMIT; round++) {
    const restarted = new Promise<void>((resolve) => {
      const onState = (id: string, state: string) => {
        // The state once the restart is over: idle, or busy while the readiness probe's idle is under way.
        if (id === record.id && state !== 'restarting') {
          manager.off('state', onState);
          resolve();
        }
      };
      manager.on('state', onState);
    });
    await provisioner.kill(record.containerId, 'out-of-memory');
    await restarted;
    t.is((await evaluate((await manager.handle(record.id)).kernel, '1')).status, 'ok', `round ${round}: the restarted kernel answers`);
  }
  t.is(died.length, RESTART_LIMIT);
  const removed = new Promise<string>((resolve) => manager.once('removed', (_id, reason) => resolve(reason)));
  await provisioner.kill(record.containerId, 'out-of-memory');
  t.is(await removed, 'out-of-memory');
  t.is(provisioner.restarts.length, RESTART_LIMIT);
  t.is(codeOf(await t.throwsAsync(manager.handle(record.id))), 'not_found');
});

test('a kernel whose container dies while it is adopted is removed, not served dead', async (t) => {
  const store = new MemoryStore();
  const first = await managerWith({}, undefined, store);
  const provisioner = first.provisioner;
  t.teardown(() => provisioner.dispose());
  const { record } = await first.manager.create({});
  await first.manager.stop(true);
  // Dies after the second manager connected and found it answering, before it is registered.
  provisioner.onSeal = async (ref) => {
    if (ref.id === record.id) await provisioner.kill(ref.containerId);
  };

  const { manager } = await managerWith({}, provisioner, store);
  t.teardown(() => manager.stop(false));
  t.is(codeOf(await t.throwsAsync(manager.handle(record.id))), 'not_found');
  t.is(await store.get('kernels', record.id), undefined, 'its record is gone');
  t.false(provisioner.placed.has(record.containerId), 'its container is removed');
  t.is(manager.memory.usedKB, 0, 'its memory is given back');
});

test('a kernel whose container dies while its start is being recorded is removed', async (t) => {
  const store = new MemoryStore();
  const { manager, provisioner } = await managerWith({}, undefined, store);
  t.teardown(() => manager.stop(false).then(() => provisioner.dispose()));
  // The record gets its container id in this update: the death is reported before it lands.
  const update = store.update.bind(store);
  let killed = false;
  store.update = async (ns, id, patch) => {
    const containerId = (patch as { containerId?: string }).containerId;
    if (ns === 'kernels' && containerId && !killed) {
      killed = true;
      await provisioner.kill(containerId);
    }
    return update(ns, id, patch);
  };
  const removed = new Promise<string>((resolve) => manager.once('removed', (_id, reason) => resolve(reason)));
  const { record } = await manager.create({});
  t.is(await removed, 'killed');
  t.is(codeOf(await t.throwsAsync(manager.handle(record.id))), 'not_found');
  t.is(await store.get('kernels', record.id), undefined);
  t.false(provisioner.placed.has(record.containerId));
});

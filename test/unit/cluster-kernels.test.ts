/**
 * Two kernel managers sharing one store, as gateway replicas share one Redis (each with its own
 * in-process provisioner: a replica's kernels are its own). Run against the memory store and a real
 * Redis: a clientSessionToken names one kernel however many replicas create with it at once.
 */
import test, { type ExecutionContext } from 'ava';
import { DomainError } from '../../src/errors.js';
import { KernelManager } from '../../src/kernels/kernel-manager.js';
import { KernelSlots } from '../../src/kernels/kernel-slots.js';
import { silentLogger } from '../../src/logger.js';
import type { Store } from '../../src/store/store.js';
import { InProcessProvisioner } from '../helpers/in-process-provisioner.js';
import type { Config } from '../../src/config/index.js';
import { configWith, LANG, specs } from '../helpers/in-process-kernels.js';
import { STORE_KINDS, redisKeys, removeRunKeys, runPrefix, sharedStore, type StoreKind } from '../helpers/stores.js';

const RUN = runPrefix('cluster-kernels');

interface Replica {
  manager: KernelManager;
  provisioner: InProcessProvisioner;
  store: Store;
  /** Where the shared store's Redis keys live. */
  prefix: string;
}

/** `count` replicas on one shared store, all started before any kernel exists (none adopts another's). */
async function replicas(
  t: ExecutionContext,
  kind: StoreKind,
  count: number,
  overrides: Partial<Config> = {},
  wrap: (store: Store) => Store = (store) => store,
): Promise<Replica[]> {
  const shared = sharedStore(t, kind, RUN);
  const made: Replica[] = [];
  for (let i = 0; i < count; i++) {
    const provisioner = await InProcessProvisioner.create();
    const store = wrap(await shared.open());
    const manager = new KernelManager(configWith(overrides), provisioner, store, specs, silentLogger);
    await manager.start();
    t.teardown(() => manager.stop(false).then(() => provisioner.dispose()));
    made.push({ manager, provisioner, store, prefix: shared.prefix });
  }
  return made;
}

/** A store whose writes of kernel records land `ms` late: a replica on a slow link to Redis. */
function slowKernelWrites(ms: number): (store: Store) => Store {
  return (store) =>
    new Proxy(store, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (typeof value !== 'function') return value;
        if (property !== 'put') return value.bind(target);
        return async (ns: string, ...rest: unknown[]) => {
          if (ns === 'kernels') await new Promise((resolve) => setTimeout(resolve, ms));
          return value.call(target, ns, ...rest);
        };
      },
    });
}

const codeOf = (error: unknown) => (error instanceof DomainError ? error.code : String(error));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const placedIn = (all: Replica[]) => all.reduce((sum, r) => sum + r.provisioner.placed.size, 0);

for (const kind of STORE_KINDS) {
  test(`[${kind}] concurrent creates with one clientSessionToken on two replicas make one kernel, which every create returns`, async (t) => {
    const all = await replicas(t, kind, 2);
    for (let round = 0; round < 5; round++) {
      const token = `repl-${round}`;
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) => all[i % 2]!.manager.create({ clientSessionToken: token, owner: 'tenant-a' })),
      );
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      t.deepEqual(failed.map((r) => String(r.reason)), [], `round ${round}: no create fails`);
      const values = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      t.is(new Set(values.map((v) => v.record.id)).size, 1, `round ${round}: one kernel id for every create`);
      t.is(values.filter((v) => v.created).length, 1, `round ${round}: exactly one create made it`);
    }
    t.is(placedIn(all), 5, 'one kernel started per token across both replicas');
    t.is((await all[0]!.store.list('kernels')).length, 5);
    t.is((await all[0]!.store.list('tokens')).length, 5);
  });

  test(`[${kind}] one token, two replicas, the winner's kernel record landing late: still one kernel`, async (t) => {
    const all = await replicas(t, kind, 2, {}, slowKernelWrites(100));
    const results = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => all[i % 2]!.manager.create({ clientSessionToken: 'late' })));
    t.deepEqual(results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason)), []);
    const values = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    t.is(new Set(values.map((v) => v.record.id)).size, 1);
    t.is(values.filter((v) => v.created).length, 1);
    t.is(placedIn(all), 1);
  });

  test(`[${kind}] a create that loses the token to a start that then fails is not handed the failed kernel`, async (t) => {
    const all = await replicas(t, kind, 2);
    // The first replica's launch takes a while, then fails (an engine refusing the container).
    const slow = all[0]!.provisioner;
    slow.launch = async () => {
      await new Promise((resolve) => setTimeout(resolve, 150));
      throw new Error('launch refused by the test');
    };
    const first = all[0]!.manager.create({ clientSessionToken: 'doomed' });
    // The second create arrives while the first holds the token and is starting.
    await new Promise((resolve) => setTimeout(resolve, 5));
    const second = all[1]!.manager.create({ clientSessionToken: 'doomed' });
    const [a, b] = await Promise.allSettled([first, second]);
    t.is(a.status, 'rejected', 'the first start fails');
    t.is(b.status, 'fulfilled', 'the second create gets a kernel');
    const { record } = (b as PromiseFulfilledResult<Awaited<typeof second>>).value;
    const stored = await all[1]!.store.get<{ id: string; state: string }>('kernels', record.id);
    t.truthy(stored, 'the kernel it was given exists');
    t.not(stored?.state, 'starting');
    t.is(placedIn(all), 1);
  });
}

for (const kind of STORE_KINDS) {
  test(`[${kind}] KG_MAX_KERNELS bounds the kernels of both replicas together; a delete on one makes room on the other`, async (t) => {
    const all = await replicas(t, kind, 2, { maxKernels: 3 });
    const outcomes = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => all[i % 2]!.manager.create({})));
    const created = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value.record.id] : []));
    const refused = outcomes.flatMap((o) => (o.status === 'rejected' ? [codeOf(o.reason)] : []));
    t.is(created.length, 3);
    t.deepEqual([...new Set(refused)], ['too_many_kernels']);
    t.is(placedIn(all), 3, 'a refused create starts nothing');
    t.is(await all[0]!.manager.slots.count(), 3);
    const owner = all.find((r) => r.manager.handles().some((h) => h.id === created[0]))!;
    const other = all.find((r) => r !== owner)!;
    await owner.manager.delete(created[0]!);
    t.is(await other.manager.slots.count(), 2, 'the deleted kernel released its slot');
    await t.notThrowsAsync(other.manager.create({}));
    t.is(codeOf(await t.throwsAsync(owner.manager.create({}))), 'too_many_kernels');
  });

  test(`[${kind}] 1000 concurrent claims from two replicas with KG_MAX_KERNELS=4 give exactly 4`, async (t) => {
    const shared = sharedStore(t, kind, RUN);
    const clients = [new KernelSlots(await shared.open(), 4, 60_000), new KernelSlots(await shared.open(), 4, 60_000)];
    const outcomes = await Promise.allSettled(Array.from({ length: 1000 }, (_, i) => clients[i % 2]!.take(`k-${i}`)));
    t.is(outcomes.filter((o) => o.status === 'fulfilled').length, 4);
    t.true(outcomes.every((o) => o.status === 'fulfilled' || codeOf(o.reason) === 'too_many_kernels'));
    t.is(await clients[0]!.count(), 4);
  });

  test(`[${kind}] a slot claimed by a replica that crashes before its kernel is ready is free once the claim TTL passes`, async (t) => {
    const shared = sharedStore(t, kind, RUN);
    // Seconds, not milliseconds: on a loaded machine the steps between claims take their time too.
    const crashed = new KernelSlots(await shared.open(), 1, 2000);
    const survivor = new KernelSlots(await shared.open(), 1, 2000);
    await crashed.take('never-confirmed');
    t.is(codeOf(await t.throwsAsync(survivor.take('k-2'))), 'too_many_kernels');
    await sleep(3000);
    await t.notThrowsAsync(survivor.take('k-2'));
    await survivor.hold('k-2');
    await sleep(3000);
    t.is(codeOf(await t.throwsAsync(crashed.take('k-3'))), 'too_many_kernels', 'a kernel made ready holds its slot past the TTL');
  });

  test(`[${kind}] the leader's reconcile releases a held slot whose kernel is gone and holds one for a live kernel that lost its claim`, async (t) => {
    const shared = sharedStore(t, kind, RUN);
    const store = await shared.open();
    const slots = new KernelSlots(store, 4, 60_000);
    await slots.take('lost');
    await slots.hold('lost');
    await slots.take('live');
    await slots.hold('live');
    await slots.take('starting');
    const records = [
      { id: 'live', state: 'idle' as const },
      { id: 'starting', state: 'starting' as const },
      { id: 'unclaimed', state: 'busy' as const },
      { id: 'crashed-mid-start', state: 'starting' as const },
    ];
    t.deepEqual(await slots.reconcile(async () => records), { released: 1, held: 1 });
    const claims = new Map((await store.slots('kernel-slots')).map((c) => [c.member, c.expiresAt]));
    t.deepEqual([...claims.keys()].sort(), ['live', 'starting', 'unclaimed']);
    t.is(claims.get('unclaimed'), undefined, 'the live kernel holds its slot until released');
    t.truthy(claims.get('starting'), 'the one still starting keeps its lapsing claim');
    t.deepEqual(await slots.reconcile(async () => records), { released: 0, held: 0 }, 'nothing left to mend');
    await t.notThrowsAsync(slots.take('new'));
    t.is(codeOf(await t.throwsAsync(slots.take('one-too-many'))), 'too_many_kernels');
  });

  test(`[${kind}] warm-pool kernels take no slot until handed out, as before`, async (t) => {
    const [replica] = await replicas(t, kind, 1, { maxKernels: 1, poolSizes: { [LANG]: 2 } });
    t.true(await replica!.manager.pool.whenFull(20_000));
    t.is(await replica!.manager.slots.count(), 0);
    await replica!.manager.create({});
    t.is(await replica!.manager.slots.count(), 1);
    t.is(codeOf(await t.throwsAsync(replica!.manager.create({}))), 'too_many_kernels');
  });

  test(`[${kind}] creating and deleting kernels in a loop on two replicas leaves nothing behind in the store`, async (t) => {
    const all = await replicas(t, kind, 2, { maxKernels: 1 });
    const { store, prefix } = all[0]!;
    const before = kind === 'redis' ? await redisKeys(prefix) : [];
    for (let round = 0; round < 20; round++) {
      const replica = all[round % 2]!;
      const { record } = await replica.manager.create({ clientSessionToken: `loop-${round}` });
      // A create refused on the other replica (the one slot is taken) leaves nothing either, its token claim neither.
      const refused = await t.throwsAsync(all[(round + 1) % 2]!.manager.create({ clientSessionToken: `refused-${round}` }));
      t.is(codeOf(refused), 'too_many_kernels');
      await replica.manager.delete(record.id);
    }
    t.deepEqual(await store.list('kernels'), []);
    t.deepEqual(await store.list('tokens'), []);
    t.deepEqual(await store.slots('kernel-slots'), []);
    if (kind === 'redis') t.deepEqual(await redisKeys(prefix), before, 'the same Redis keys as before the loop');
  });
}

test.after.always('remove every Redis key of this run', async (t) => {
  t.log(`removed ${await removeRunKeys(RUN)} Redis keys under ${RUN}`);
});

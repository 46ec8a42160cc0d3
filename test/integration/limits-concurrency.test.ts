/**
 * KG_MAX_KERNELS and the per-clientSessionToken limit under concurrent creates (issue #6): no race lets one
 * more through. One clientSessionToken maps to at most one live kernel: concurrent creates with the same
 * token all get the same kernelId, and exactly one container starts.
 */
import test from 'ava';
import { startTestService, type TestService } from '../helpers/service.js';
import { containersOfInstance } from '../helpers/docker.js';

async function withService(overrides: Parameters<typeof startTestService>[0], body: (svc: TestService) => Promise<void>): Promise<void> {
  const svc = await startTestService(overrides);
  try {
    await body(svc);
  } finally {
    await svc.stop();
  }
}

test.serial('KG_MAX_KERNELS=2: of 6 concurrent creates (v1 and Jupyter) exactly 2 succeed, the rest get 402', async (t) => {
  await withService({ maxKernels: 2 }, async (svc) => {
    const creates = await Promise.all([
      ...[1, 2, 3].map(() => svc.call('POST', '/v1/kernel/create', { lang: 'python3' })),
      ...[1, 2, 3].map(() => svc.call('POST', '/api/kernels', { name: 'python3' })),
    ]);
    const statuses = creates.map((r) => r.status).sort();
    t.deepEqual(statuses.filter((s) => s === 200 || s === 201).length, 2, `statuses ${statuses}`);
    t.deepEqual(statuses.filter((s) => s === 402).length, 4, `statuses ${statuses}`);
    for (const refused of creates.filter((r) => r.status === 402)) {
      t.regex(JSON.stringify(refused.body), /KG_MAX_KERNELS=2/);
    }
    await svc.service.kernels.settled();
    t.is(containersOfInstance(svc.config.instance).length, 2, 'no container beyond the limit');
    // A freed slot can be taken again.
    const first = creates.find((r) => r.status === 201)!;
    const id = first.body.kernelId ?? first.body.id;
    t.is((await svc.call('DELETE', `/v1/kernel/${id}`)).status, 204);
    t.is((await svc.call('POST', '/v1/kernel/create', { lang: 'python3' })).status, 201);
    t.is((await svc.call('POST', '/v1/kernel/create', { lang: 'python3' })).status, 402);
  });
});

test.serial('8 concurrent creates with one clientSessionToken: one kernel, one container, the same kernelId for all', async (t) => {
  await withService({}, async (svc) => {
    const token = 'concurrent-token';
    const creates = await Promise.all(
      Array.from({ length: 8 }, () => svc.call('POST', '/v1/kernel/create', { lang: 'python3', clientSessionToken: token })),
    );
    const ids = new Set(creates.map((r) => r.body.kernelId));
    t.is(ids.size, 1, `kernel ids ${[...ids]}`);
    t.deepEqual(creates.map((r) => r.status).sort(), [200, 200, 200, 200, 200, 200, 200, 201]);
    await svc.service.kernels.settled();
    t.is(containersOfInstance(svc.config.instance).length, 1);
    const id = [...ids][0];
    t.is((await svc.call('GET', `/v1/kernel/${id}`)).status, 200);
    // The same token with another language is refused, not a second kernel.
    const other = await svc.call('POST', '/v1/kernel/create', { lang: 'bash', clientSessionToken: token });
    t.true(other.status === 409 || other.status === 400, `${other.status}`);
    t.is(containersOfInstance(svc.config.instance).length, 1);
  });
});

test.serial('KG_MAX_KERNELS=1 and one token: 5 concurrent creates all get the one kernel, none is refused', async (t) => {
  await withService({ maxKernels: 1 }, async (svc) => {
    const creates = await Promise.all(
      Array.from({ length: 5 }, () => svc.call('POST', '/v1/kernel/create', { lang: 'python3', clientSessionToken: 'only-one' })),
    );
    t.deepEqual(creates.map((r) => r.status).sort(), [200, 200, 200, 200, 201]);
    t.is(new Set(creates.map((r) => r.body.kernelId)).size, 1);
    // Another token does not fit.
    t.is((await svc.call('POST', '/v1/kernel/create', { lang: 'python3', clientSessionToken: 'another' })).status, 402);
    await svc.service.kernels.settled();
    t.is(containersOfInstance(svc.config.instance).length, 1);
  });
});

test.serial('two tokens racing for the last slot: exactly one wins, and each token maps to at most one kernel', async (t) => {
  await withService({ maxKernels: 1 }, async (svc) => {
    const creates = await Promise.all(
      ['a', 'b', 'a', 'b', 'a', 'b'].map((token) => svc.call('POST', '/v1/kernel/create', { lang: 'python3', clientSessionToken: `race-${token}` })),
    );
    const ok = creates.filter((r) => r.status === 200 || r.status === 201);
    t.is(new Set(ok.map((r) => r.body.kernelId)).size, 1, 'one kernel');
    t.is(ok.filter((r) => r.status === 201).length, 1);
    t.true(creates.every((r) => r.status === 200 || r.status === 201 || r.status === 402), `${creates.map((r) => r.status)}`);
    await svc.service.kernels.settled();
    t.is(containersOfInstance(svc.config.instance).length, 1);
  });
});

/**
 * Files (issue #6): the writable work directory, /tmp and /dev/shm have size caps (tmpfs; 8 MB here);
 * filling them fails inside the container only: ENOSPC for the program, the kernel answers, and nothing
 * lands on the host (the socket directory, the only host directory a kernel sees, is not writable).
 * Under runc and runsc.
 */
import test from 'ava';
import { readdirSync, lstatSync } from 'node:fs';
import path from 'node:path';
import { startTestService, type TestService } from '../helpers/service.js';
import { batch, createKernel, query } from '../helpers/v1-client.js';

const RUNTIMES = ['runc', 'runsc'] as const;
const CAP_MB = 8;
const services = new Map<string, TestService>();

test.before(async () => {
  for (const runtime of RUNTIMES) {
    services.set(runtime, await startTestService({ containerRuntime: runtime, workDirSizeMB: CAP_MB, tmpSizeMB: CAP_MB, flushWindowMs: 20_000 }));
  }
});

test.after.always(async () => {
  for (const svc of services.values()) await svc.stop();
});

/** Bytes in a host directory (the kernel's socket directory): what a kernel could have put on the host. */
function hostBytes(dir: string): number {
  return readdirSync(dir).reduce((sum, name) => sum + lstatSync(path.join(dir, name)).size, 0);
}

for (const runtime of RUNTIMES) {
  test.serial(`${runtime}: filling the work directory, /tmp or /dev/shm fails with ENOSPC at the cap; the kernel answers`, async (t) => {
    const svc = services.get(runtime)!;
    const id = await createKernel(svc.call, { lang: 'python3', resourceLimits: { maxMem: 512 * 1024 } });
    const { connDir } = await svc.service.kernels.get(id);
    const before = hostBytes(connDir);
    for (const dir of ['/home/work', '/tmp', '/dev/shm']) {
      // dd stops at the first failed write; 64 MB asked, the cap is 8 MB.
      const outcome = await batch(svc.call, id, `dd if=/dev/zero of=${dir}/fill bs=1M count=64 2>&1; echo "exit=$?"; du -m ${dir}/fill | cut -f1`);
      t.regex(outcome.text, /No space left on device/, `${dir}: ${outcome.text}`);
      t.regex(outcome.text, /exit=1/);
      const mb = Number(outcome.text.trim().split('\n').pop());
      t.true(mb <= CAP_MB, `${dir} holds ${mb} MB`);
      await batch(svc.call, id, `rm -f ${dir}/fill`);
    }
    // The language's own view: OSError ENOSPC, and the kernel carries on.
    const py = await query(
      svc.call,
      id,
      'import errno\ntry:\n    with open("/home/work/big", "wb") as f:\n        for _ in range(64): f.write(b"\\0" * 2**20)\nexcept OSError as e:\n    print("failed", errno.errorcode[e.errno])',
    );
    t.is(py.text, 'failed ENOSPC\n');
    t.is((await query(svc.call, id, 'print("alive")')).text, 'alive\n');
    t.is(hostBytes(connDir), before, 'nothing was written on the host');
    await svc.call('DELETE', `/v1/kernel/${id}`);
  });
}

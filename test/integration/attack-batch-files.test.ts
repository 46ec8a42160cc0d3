/**
 * A kernel that plants links in its work directory between runs cannot make a batch run's files land
 * outside it: options.files go through the image's file helper (no link followed, staged unnamed and
 * linked into place at the end), as v1 uploads do. A link planted where a file's directory should be is a
 * clear 400; a directory swapped for a link over and over while batches write through it never lets a
 * file out of /home/work.
 */
import test from 'ava';
import { startTestService, type TestService } from '../helpers/service.js';
import { createKernel, queryText, runToEnd } from '../helpers/v1-client.js';

let svc: TestService;

test.before(async () => {
  svc = await startTestService({ flushWindowMs: 20_000 });
});

test.after.always(async () => {
  await svc?.stop();
});

const py = (id: string, code: string) => queryText(svc.call, id, code);

test('a link to a directory outside, planted where a batch file goes, is refused (400) and nothing lands outside', async (t) => {
  const id = await createKernel(svc.call);
  await py(id, 'import os\nos.makedirs("/tmp/outside", exist_ok=True)\nos.symlink("/tmp/outside", "d")');
  const outcome = await runToEnd(svc.call, id, { mode: 'batch', options: { files: [{ name: 'd/planted.txt', content: 'escaped' }], exec: 'true' } });
  t.log(outcome.status, outcome.text.slice(0, 300));
  t.is(outcome.status, 'http 400', outcome.text);
  t.regex(outcome.text, /symbolic link/);
  t.is(await py(id, 'import os\nprint(sorted(os.listdir("/tmp/outside")))'), '[]\n', 'nothing was written through the link');
  // A plain file still goes in, parents made.
  const plain = await runToEnd(svc.call, id, { mode: 'batch', options: { files: [{ name: 'src/a/main.txt', content: 'hello' }], exec: 'cat src/a/main.txt' } });
  t.is(plain.status, 'finished');
  t.is(plain.text, 'hello');
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

test('a directory swapped for a link over and over while batches write through it: no file ever lands outside', async (t) => {
  t.timeout(180_000);
  const id = await createKernel(svc.call);
  // A background process of the kernel's user swaps "s" between a directory and a link to /tmp/out2.
  await py(
    id,
    [
      'import os, subprocess, sys',
      'os.makedirs("/tmp/out2", exist_ok=True)',
      'loop = "import os, time, shutil\\nend = time.time() + 60\\nwhile time.time() < end:\\n    try:\\n        os.makedirs(\'s\', exist_ok=True)\\n        time.sleep(0.002)\\n        shutil.rmtree(\'s\', ignore_errors=True)\\n        os.symlink(\'/tmp/out2\', \'s\')\\n        time.sleep(0.002)\\n        os.unlink(\'s\')\\n    except OSError:\\n        pass\\n"',
      'subprocess.Popen([sys.executable, "-c", loop], start_new_session=True)',
    ].join('\n'),
  );
  const outcomes = new Map<string, number>();
  for (let i = 0; i < 30; i++) {
    const outcome = await runToEnd(svc.call, id, { mode: 'batch', options: { files: [{ name: `s/f-${i}.txt`, content: 'x' }], exec: 'true' } });
    outcomes.set(outcome.status, (outcomes.get(outcome.status) ?? 0) + 1);
    t.true(outcome.status === 'finished' || outcome.status === 'http 400' || outcome.status === 'http 409', `${outcome.status} ${outcome.text.slice(0, 200)}`);
  }
  t.log(`outcomes: ${JSON.stringify([...outcomes])}`);
  t.is(await py(id, 'import os\nprint(sorted(os.listdir("/tmp/out2")))'), '[]\n', 'no batch file was written through the link');
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

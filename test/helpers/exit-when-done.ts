/**
 * Loaded into every test worker (package.json, ava.require). ava waits for every worker to exit by itself
 * before it prints its summary, so a worker that some lingering handle keeps alive after its tests are done
 * holds up the whole run, with nothing saying which file it is. After a grace period the worker says what
 * keeps it alive and exits; its tests' results are already reported.
 */
import test, { registerCompletionHandler } from 'ava';

const GRACE_MS = 15_000;

registerCompletionHandler(() => {
  const timer = setTimeout(() => {
    const file = test.meta.file.replace(/^file:\/\//, '');
    process.stderr.write(`${file}: still running ${GRACE_MS / 1000} s after its tests ended, kept alive by ${process.getActiveResourcesInfo().join(', ')}; exiting\n`);
    process.exit(0);
  }, GRACE_MS);
  timer.unref();
});

/**
 * The judge engine as the service runs it (src/main.ts): sandboxes an earlier run of the instance left
 * are removed at start, warm sandboxes start with the service, the engine judges through the service's
 * own wiring, and a shutdown leaves no sandbox behind — a running submission ends as unavailable.
 */
import test from 'ava';
import { randomUUID } from 'node:crypto';
import { DockerJudgeSandboxes } from '../../src/judge/docker-sandboxes.js';
import { silentLogger } from '../../src/logger.js';
import { DockerRuntime } from '../../src/runtime/docker.js';
import { containersOfInstance, docker } from '../helpers/docker.js';
import { startTestService } from '../helpers/service.js';

/** The judge sandboxes of an instance (not the short-lived containers that read files out of images). */
const sandboxesOf = (instance: string) =>
  docker('ps', '-aq', '--filter', `label=org.polykernel.instance=${instance}`, '--filter', 'label=org.polykernel.judge=true').split('\n').filter(Boolean);

const until = async (check: () => boolean, ms = 20_000) => {
  for (const end = Date.now() + ms; Date.now() < end && !check(); ) await new Promise((resolve) => setTimeout(resolve, 100));
  return check();
};

test('leftovers reaped at start, warm sandboxes at start, judging through the service, nothing left after a shutdown', async (t) => {
  const instance = `test-judge-svc-${randomUUID().slice(0, 8)}`;
  const prefix = process.env.POLYKERNEL_IMAGE_PREFIX ?? 'polykernel/';
  // An earlier run of this instance that died with a sandbox up.
  const runtime = new DockerRuntime(silentLogger, instance);
  const earlier = await new DockerJudgeSandboxes(runtime, silentLogger).create({ image: `${prefix}c:latest`, runtime: 'runc', memoryKB: 65536, maxProcesses: 8, diskMB: 16 });
  runtime.close();
  t.true(containersOfInstance(instance).some((id) => earlier.id.startsWith(id)));

  const service = await startTestService({ instance, imagePrefix: prefix, judgeWarm: { python3: 1 } });
  try {
    t.false(containersOfInstance(instance).some((id) => earlier.id.startsWith(id)), 'the leftover is gone once the service listens');
    t.true(await until(() => sandboxesOf(instance).length === 1, 60_000), `one warm sandbox: ${sandboxesOf(instance).join()}`);
    const judge = service.service.judge!;
    const { config } = service;
    const languages = await judge.languages();
    t.true(languages.some((language) => language.name === 'python3' && /^\d+\.\d+/.test(language.version)), JSON.stringify(languages.map((l) => [l.name, l.version])));
    const submission = (source: string) => ({
      lang: 'python3',
      files: [{ name: '', content: Buffer.from(source) }],
      limits: config.judgeLimits,
      compileLimits: config.judgeCompileLimits,
      tests: [{ stdin: Buffer.from('2'), expectedOutput: Buffer.from('4') }],
      comparison: 'lines' as const,
    });
    t.is((await judge.judge(submission('print(int(input()) * 2)'))).verdict, 'accepted');
    const running = judge.judge(submission('import time\ntime.sleep(60)'));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await service.stop();
    const ended = await running.then(
      () => 'resolved',
      (error: { code?: string }) => error.code,
    );
    t.is(ended, 'unavailable', 'a submission cut by the shutdown is refused as unavailable, not judged');
  } finally {
    await service.stop();
  }
  t.true(await until(() => containersOfInstance(instance).length === 0, 10_000), containersOfInstance(instance).join());
});

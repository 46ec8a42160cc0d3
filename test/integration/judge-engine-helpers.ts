/**
 * The judge engine on the real sandbox (Docker, the supervisor in the language images): an engine of its
 * own instance per test file, submissions made short, and a check that nothing of the instance is left.
 */
import { randomUUID } from 'node:crypto';
import { loadConfig, type Config } from '../../src/config/index.js';
import { SandboxJudgeEngine } from '../../src/judge/engine.js';
import { DockerJudgeSandboxes } from '../../src/judge/docker-sandboxes.js';
import type { JudgeSandbox, JudgeSandboxes, RunMeasurement, RunRequest, SandboxSpec, Submission, TestCase } from '../../src/judge/model.js';
import { KernelSpecRegistry } from '../../src/kernels/kernel-specs.js';
import { silentLogger } from '../../src/logger.js';
import { DockerRuntime } from '../../src/runtime/docker.js';
import type { TestFn } from 'ava';
import { containersOfInstance } from '../helpers/docker.js';
import { runtimeRegistered } from './sandbox-helpers.js';

/** Times of every run() call as the engine sees them, beside what the supervisor measured. */
export interface TimedRun {
  sandboxId: string;
  request: RunRequest;
  engineMs: number;
  measured: RunMeasurement;
}

/** Passes everything to the real sandboxes and records how long each run took from the engine's side. */
class TimedSandboxes implements JudgeSandboxes {
  readonly runs: TimedRun[] = [];
  readonly created: string[] = [];
  constructor(private readonly inner: JudgeSandboxes) {}
  async create(spec: SandboxSpec): Promise<JudgeSandbox> {
    const sandbox = await this.inner.create(spec);
    this.created.push(sandbox.id);
    const runs = this.runs;
    return {
      id: sandbox.id,
      writeFiles: (files) => sandbox.writeFiles(files),
      async run(request) {
        const started = process.hrtime.bigint();
        const measured = await sandbox.run(request);
        runs.push({ sandboxId: sandbox.id, request, engineMs: Number(process.hrtime.bigint() - started) / 1e6, measured });
        return measured;
      },
      runInteractive: (request) => sandbox.runInteractive(request),
      close: () => sandbox.close(),
    };
  }
  reap(): Promise<void> {
    return this.inner.reap();
  }
}

export interface JudgeFixture {
  engine: SandboxJudgeEngine;
  config: Config;
  instance: string;
  sandboxes: TimedSandboxes;
  submission(lang: string, source: string, tests: TestCase[], over?: Partial<Submission>): Submission;
  leftovers(): string[];
  close(): Promise<void>;
}

export async function judgeFixture(env: Record<string, string> = {}): Promise<JudgeFixture> {
  const instance = `test-judge-${randomUUID().slice(0, 8)}`;
  // POLYKERNEL_IMAGE_PREFIX runs the same tests on another set of images (built under another prefix).
  const prefix = process.env.POLYKERNEL_IMAGE_PREFIX ? { POLYKERNEL_IMAGE_PREFIX: process.env.POLYKERNEL_IMAGE_PREFIX } : {};
  const config = loadConfig({ POLYKERNEL_INSTANCE: instance, POLYKERNEL_JUDGE_CONCURRENCY: '2', ...prefix, ...env });
  const runtime = new DockerRuntime(silentLogger, instance);
  const sandboxes = new TimedSandboxes(new DockerJudgeSandboxes(runtime, silentLogger));
  const engine = new SandboxJudgeEngine({ config, sandboxes, specs: new KernelSpecRegistry(runtime, config.imagePrefix), log: silentLogger });
  await engine.start();
  return {
    engine,
    config,
    instance,
    sandboxes,
    submission: (lang, source, tests, over = {}) => ({
      lang,
      files: [{ name: '', content: Buffer.from(source) }],
      limits: config.judgeLimits,
      compileLimits: config.judgeCompileLimits,
      tests,
      comparison: 'lines',
      ...over,
    }),
    leftovers: () => containersOfInstance(instance),
    close: async () => {
      await engine.stop();
      runtime.close();
    },
  };
}

export const io = (stdin: string, expectedOutput?: string): TestCase => ({
  stdin: Buffer.from(stdin),
  ...(expectedOutput === undefined ? {} : { expectedOutput: Buffer.from(expectedOutput) }),
});

/** runc, and runsc where the engine has it: the runtimes an attack runs under. */
export const ATTACK_RUNTIMES = ['runc', ...(runtimeRegistered('runsc') ? ['runsc'] : [])];

/** One judge fixture per runtime of ATTACK_RUNTIMES, made before a file's tests and closed after them. */
export function fixturePerRuntime(test: TestFn): Record<string, JudgeFixture> {
  const fixtures: Record<string, JudgeFixture> = {};
  test.before(async () => {
    for (const runtime of ATTACK_RUNTIMES) fixtures[runtime] = await judgeFixture({ POLYKERNEL_JUDGE_RUNTIME: runtime });
  });
  test.after.always(async () => {
    for (const fixture of Object.values(fixtures)) await fixture.close();
  });
  return fixtures;
}

/**
 * npm run load: the load test of issue #6, bounded in count and time, loopback only. It starts the
 * service as a child process (`node dist/src/main.js`, its own instance label, state directory and Redis
 * prefix), creates K kernels through the v1 API, runs E executions spread over them (each kernel runs
 * its share one after the other, all kernels at once), deletes the kernels, and checks what is left: no
 * error, no container of the instance, no socket directory, no store key, and the service's memory back
 * near where it started. Prints the figures as JSON on stdout.
 *
 *   npm run load                                   50 kernels, 2,000 executions
 *   npm run load -- --kernels 10 --executions 200  the CI-sized run (test/integration/load-small.test.ts)
 *   npm run load -- --rounds 3                     the same service three times over (leak or allocator?)
 *
 * Memory is the service process's resident set (VmRSS) read from /proc; a full GC is triggered in it
 * (SIGUSR2, through a preload) before the "after" figure, so that garbage V8 has not collected yet does
 * not pass for a leak. Uses REDIS_URL when set, else the in-process store.
 */
import { execFileSync } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { instanceConnectionDirs } from '../../src/kernels/conn-dir.js';
import os from 'node:os';
import { startServiceProcess, type ServiceProcess } from '../helpers/service-process.js';
import { sleep } from '../helpers/wait.js';
import { containersOfInstance } from '../helpers/docker.js';

export interface LoadOptions {
  kernels: number;
  executions: number;
  /** Creates and deletes in flight at once. */
  createConcurrency?: number;
  /** Bound on the whole run; past it the run fails. */
  timeoutMs?: number;
  redisUrl?: string;
  /** Create/execute/delete rounds in the same service; the figures are the first round's. */
  rounds?: number;
  log?: (line: string) => void;
}

export interface Distribution {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface LoadFigures {
  kernels: number;
  executions: number;
  errors: number;
  firstErrors: string[];
  createPhaseMs: number;
  createMs: Distribution;
  executePhaseMs: number;
  executionsPerSecond: number;
  executeMs: Distribution;
  deletePhaseMs: number;
  /** CPU time the service process spent per execution, during the execute phase. */
  serviceCpuMsPerExecution: number;
  /** Resident set of the service process, MB. */
  rssMB: { started: number; beforeLoad: number; peak: number; withKernels: number; afterLoad: number };
  /** V8 heap in use after a full GC, MB: the leak indicator that RSS (kept by the allocator) is not. */
  heapUsedMB: { beforeLoad: number; afterLoad: number };
  /** Memory after a full GC at the end of each round (`rounds` > 1: growth round after round is a leak). */
  afterEachRound: { rssMB: number; heapUsedMB: number; heapTotalMB: number; externalMB: number }[];
  leaks: { containers: number; socketDirs: number; storeKeys: number | null; kernelsListed: number };
  store: 'redis' | 'memory';
  machine: { cpus: number; node: string };
}

// A full GC on demand, without changing the service: `kill -USR2 <pid>` runs it (needs --expose-gc) and
// writes the process's memory figures to stderr as one JSON line.
const GC_ON_SIGNAL =
  'data:text/javascript,process.on("SIGUSR2",()=>{globalThis.gc();process.stderr.write(JSON.stringify({loadMemory:process.memoryUsage()})+"\\n")})';

function distribution(values: number[]): Distribution {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0);
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: Math.round(sorted.at(-1) ?? 0) };
}

/** Resident memory of the service, MB with one decimal. */
const rssMB = (service: ServiceProcess) => Math.round(service.rssKB() / 102.4) / 10;

/** Runs `work` over `items` with at most `limit` in flight. */
async function pool<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

export async function runLoad(options: LoadOptions): Promise<LoadFigures> {
  const log = options.log ?? (() => undefined);
  const createConcurrency = options.createConcurrency ?? 4;
  const deadline = Date.now() + (options.timeoutMs ?? 15 * 60_000);
  const redisUrl = options.redisUrl ?? process.env.REDIS_URL ?? '';
  const errors: string[] = [];
  const fail = (what: string) => {
    errors.push(what);
    if (errors.length <= 5) log(`error: ${what}`);
  };
  const checkDeadline = () => {
    if (Date.now() > deadline) throw new Error('the load run took longer than its bound');
  };

  const service = await startServiceProcess({
    label: 'load',
    nodeArgs: ['--expose-gc', '--import', GC_ON_SIGNAL],
    env: {
      REDIS_URL: redisUrl,
      // One call per execution: no "continued" answers in the figures.
      POLYKERNEL_FLUSH_WINDOW_MS: '30000',
      KG_MAX_KERNELS: '0',
      KG_PRESPAWN_COUNT: '0',
      POLYKERNEL_POOL_SIZES: '',
      POLYKERNEL_KEEP_KERNELS_ON_SHUTDOWN: 'false',
    },
  });
  const { instance, stateDir } = service;
  const call = (method: string, route: string, body?: unknown) => service.http.call(method, route, body);
  const containers = () => containersOfInstance(instance);
  let figures: LoadFigures;
  try {
    const started = rssMB(service);
    let peak = started;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, rssMB(service));
      } catch {
        // The process ended.
      }
    }, 100);
    sampler.unref();
    // Twice, some seconds apart: V8 and the allocator give freed pages back to the system lazily.
    const gcThenMemory = async () => {
      service.signal('SIGUSR2');
      await sleep(3000);
      service.signal('SIGUSR2');
      await sleep(1000);
      const lines = service.stderr().split('\n').filter((line) => line.startsWith('{"loadMemory"'));
      const memory = lines.length ? (JSON.parse(lines.at(-1)!) as { loadMemory: NodeJS.MemoryUsage }).loadMemory : undefined;
      const mb = (bytes: number | undefined) => (bytes === undefined ? NaN : Math.round(bytes / 1024 / 102.4) / 10);
      return { rss: rssMB(service), heap: mb(memory?.heapUsed), heapTotal: mb(memory?.heapTotal), external: mb(memory?.external) };
    };

    try {
      // Warm-up (lazily loaded modules, JIT, connection pools), so that "before" is a steady state.
      const warm = await call('POST', '/v1/kernel/create', { lang: 'python3' });
      if (warm.status !== 201) throw new Error(`warm-up create answered ${warm.status}: ${JSON.stringify(warm.body)}`);
      for (let i = 0; i < 20; i++) await call('POST', `/v1/kernel/${warm.body.kernelId}`, { mode: 'query', code: `print(${i})` });
      await call('DELETE', `/v1/kernel/${warm.body.kernelId}`);
      const beforeLoad = await gcThenMemory();
      log(`service up: RSS ${started} MB at start, ${beforeLoad.rss} MB after warm-up (heap ${beforeLoad.heap} MB used of ${beforeLoad.heapTotal} MB)`);

      // One round: K kernels, E executions spread over them, every kernel deleted. Later rounds in the
      // same process tell a leak (memory grows round after round) from memory the allocator keeps.
      const round = async () => {
        // 1. K kernels.
        const kernels: string[] = [];
        const createTimes: number[] = [];
        let phase = performance.now();
        await pool(
          Array.from({ length: options.kernels }, (_, i) => i),
          createConcurrency,
          async () => {
            checkDeadline();
            const t0 = performance.now();
            const { status, body } = await call('POST', '/v1/kernel/create', { lang: 'python3' });
            createTimes.push(performance.now() - t0);
            if (status === 201) kernels.push(body.kernelId);
            else fail(`create answered ${status}: ${JSON.stringify(body).slice(0, 200)}`);
          },
        );
        const createPhaseMs = Math.round(performance.now() - phase);
        log(`${kernels.length} kernels alive after ${createPhaseMs} ms`);

        // 2. E executions, round robin over the kernels; every kernel runs its share in order, all at once.
        const shares = kernels.map(() => [] as number[]);
        for (let i = 0; i < options.executions; i++) shares[i % kernels.length]!.push(i);
        const executeTimes: number[] = [];
        const cpuBefore = service.cpuMs();
        phase = performance.now();
        await Promise.all(
          kernels.map(async (kernelId, k) => {
            for (const i of shares[k]!) {
              checkDeadline();
              const t0 = performance.now();
              try {
                const { status, body } = await call('POST', `/v1/kernel/${kernelId}`, { mode: 'query', code: `n = ${i}\nprint(n * 2)` });
                executeTimes.push(performance.now() - t0);
                const result = body?.result;
                if (status !== 200 || result?.status !== 'finished' || result.exitCode !== 0 || JSON.stringify(result.console) !== JSON.stringify([['stdout', `${i * 2}\n`]])) {
                  fail(`execution ${i} on ${kernelId}: ${status} ${JSON.stringify(body).slice(0, 200)}`);
                }
              } catch (error) {
                fail(`execution ${i} on ${kernelId}: ${(error as Error).message}`);
              }
            }
          }),
        );
        const executePhaseMs = Math.round(performance.now() - phase);
        const serviceCpu = service.cpuMs() - cpuBefore;
        const withKernels = rssMB(service);
        log(`${executeTimes.length} executions in ${executePhaseMs} ms`);

        // 3. Delete everything, then wait for the containers to be gone.
        phase = performance.now();
        await pool(kernels, createConcurrency * 2, async (kernelId) => {
          const { status, body } = await call('DELETE', `/v1/kernel/${kernelId}`);
          if (status !== 204) fail(`delete of ${kernelId} answered ${status}: ${JSON.stringify(body)}`);
        });
        for (let i = 0; i < 600 && containers().length > 0; i++) await sleep(100);
        const deletePhaseMs = Math.round(performance.now() - phase);
        await sleep(2000);
        const after = await gcThenMemory();
        log(`round done: RSS ${after.rss} MB, heap ${after.heap} MB used of ${after.heapTotal} MB, external ${after.external} MB after a full GC`);
        return { createTimes, createPhaseMs, executeTimes, executePhaseMs, serviceCpu, withKernels, deletePhaseMs, after };
      };

      const rounds: Awaited<ReturnType<typeof round>>[] = [];
      for (let r = 0; r < (options.rounds ?? 1); r++) rounds.push(await round());
      const first = rounds[0]!;
      const { createTimes, createPhaseMs, executeTimes, executePhaseMs, serviceCpu, withKernels, deletePhaseMs } = first;
      const afterLoad = first.after;
      const listed = (await call('GET', '/api/kernels')).body as unknown[];
      clearInterval(sampler);

      figures = {
        kernels: options.kernels,
        executions: options.executions,
        errors: errors.length,
        firstErrors: errors.slice(0, 5),
        createPhaseMs,
        createMs: distribution(createTimes),
        executePhaseMs,
        executionsPerSecond: Math.round((executeTimes.length / executePhaseMs) * 1000 * 10) / 10,
        executeMs: distribution(executeTimes),
        deletePhaseMs,
        serviceCpuMsPerExecution: Math.round((serviceCpu / Math.max(1, executeTimes.length)) * 100) / 100,
        rssMB: { started, beforeLoad: beforeLoad.rss, peak, withKernels, afterLoad: afterLoad.rss },
        heapUsedMB: { beforeLoad: beforeLoad.heap, afterLoad: afterLoad.heap },
        afterEachRound: rounds.map((r) => ({ rssMB: r.after.rss, heapUsedMB: r.after.heap, heapTotalMB: r.after.heapTotal, externalMB: r.after.external })),
        // The store is counted once the service has stopped: while it runs it rightly holds its leader lease.
        leaks: { containers: containers().length, socketDirs: (await readdir(instanceConnectionDirs(stateDir, instance))).length, storeKeys: null, kernelsListed: listed.length },
        store: redisUrl ? 'redis' : 'memory',
        machine: { cpus: os.cpus().length, node: process.version },
      };
    } finally {
      clearInterval(sampler);
    }
  } finally {
    await service.stop(30_000);
    // Whatever a failed run left behind.
    for (const id of containers()) execFileSync('/usr/bin/docker', ['rm', '-f', id], { stdio: 'ignore' });
  }
  if (redisUrl) {
    figures.leaks.storeKeys = execFileSync('redis-cli', ['-u', redisUrl, '--scan', '--pattern', `${instance}:*`], { encoding: 'utf8' }).split('\n').filter(Boolean).length;
  }
  return figures;
}

function option(args: string[], name: string, fallback: number): number {
  const at = args.indexOf(name);
  const value = at >= 0 ? Number(args[at + 1]) : fallback;
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a whole number >= 1`);
  return value;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  runLoad({
    kernels: option(args, '--kernels', 50),
    executions: option(args, '--executions', 2000),
    createConcurrency: option(args, '--create-concurrency', 4),
    rounds: option(args, '--rounds', 1),
    log: (line) => process.stderr.write(`load: ${line}\n`),
  }).then(
    (figures) => {
      process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
      const leaked = figures.leaks.containers + figures.leaks.socketDirs + (figures.leaks.storeKeys ?? 0) + figures.leaks.kernelsListed;
      process.exit(figures.errors === 0 && leaked === 0 ? 0 : 1);
    },
    (error: Error) => {
      process.stderr.write(`load: failed: ${error.stack ?? error.message}\n`);
      process.exit(1);
    },
  );
}

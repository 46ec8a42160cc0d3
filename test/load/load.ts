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
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers/free-port.js';

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

const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));
// A full GC on demand, without changing the service: `kill -USR2 <pid>` runs it (needs --expose-gc) and
// writes the process's memory figures to stderr as one JSON line.
const GC_ON_SIGNAL =
  'data:text/javascript,process.on("SIGUSR2",()=>{globalThis.gc();process.stderr.write(JSON.stringify({loadMemory:process.memoryUsage()})+"\\n")})';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function distribution(values: number[]): Distribution {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0);
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: Math.round(sorted.at(-1) ?? 0) };
}

function rssMB(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Math.round(Number(match[1]) / 102.4) / 10 : NaN;
}

/** utime + stime of a process, ms. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / 100;
}

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
  const instance = `load-${randomUUID().slice(0, 8)}`;
  const prefix = `${instance}:`;
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'pk-load-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const errors: string[] = [];
  const fail = (what: string) => {
    errors.push(what);
    if (errors.length <= 5) log(`error: ${what}`);
  };
  const checkDeadline = () => {
    if (Date.now() > deadline) throw new Error('the load run took longer than its bound');
  };

  let child: ChildProcess | undefined;
  let stderr = '';
  const containers = () =>
    execFileSync('/usr/bin/docker', ['ps', '-aq', '--filter', `label=org.polykernel.instance=${instance}`], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean);
  try {
    child = spawn(process.execPath, ['--expose-gc', '--import', GC_ON_SIGNAL, MAIN], {
      env: {
        ...process.env,
        KG_PORT: String(port),
        KG_IP: '127.0.0.1',
        POLYKERNEL_INSTANCE: instance,
        POLYKERNEL_STATE_DIR: stateDir,
        REDIS_URL: redisUrl,
        POLYKERNEL_REDIS_PREFIX: prefix,
        // One call per execution: no "continued" answers in the figures.
        POLYKERNEL_FLUSH_WINDOW_MS: '30000',
        POLYKERNEL_LOG_LEVEL: 'warn',
        KG_MAX_KERNELS: '0',
        KG_PRESPAWN_COUNT: '0',
        POLYKERNEL_POOL_SIZES: '',
        POLYKERNEL_KEEP_KERNELS_ON_SHUTDOWN: 'false',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-20_000)));
    const pid = child.pid!;
    const call = async (method: string, route: string, body?: unknown) => {
      const response = await fetch(url + route, {
        method,
        headers: { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : undefined };
    };
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) throw new Error(`the service exited at start: ${stderr}`);
      if (await call('GET', '/api').then((r) => r.status === 200, () => false)) break;
      if (i > 300) throw new Error(`the service did not listen within 30 s: ${stderr}`);
      await sleep(100);
    }
    const started = rssMB(pid);
    let peak = started;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, rssMB(pid));
      } catch {
        // The process ended.
      }
    }, 100);
    sampler.unref();
    // Twice, some seconds apart: V8 and the allocator give freed pages back to the system lazily.
    const gcThenMemory = async () => {
      child!.kill('SIGUSR2');
      await sleep(3000);
      child!.kill('SIGUSR2');
      await sleep(1000);
      const lines = stderr.split('\n').filter((line) => line.startsWith('{"loadMemory"'));
      const memory = lines.length ? (JSON.parse(lines.at(-1)!) as { loadMemory: NodeJS.MemoryUsage }).loadMemory : undefined;
      const mb = (bytes: number | undefined) => (bytes === undefined ? NaN : Math.round(bytes / 1024 / 102.4) / 10);
      return { rss: rssMB(pid), heap: mb(memory?.heapUsed), heapTotal: mb(memory?.heapTotal), external: mb(memory?.external) };
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
        const cpuBefore = cpuMs(pid);
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
        const serviceCpu = cpuMs(pid) - cpuBefore;
        const withKernels = rssMB(pid);
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

      const storeKeys = redisUrl
        ? execFileSync('redis-cli', ['-u', redisUrl, '--scan', '--pattern', `${prefix}*`], { encoding: 'utf8' }).split('\n').filter(Boolean).length
        : null;
      return {
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
        leaks: { containers: containers().length, socketDirs: (await readdir(stateDir)).length, storeKeys, kernelsListed: listed.length },
        store: redisUrl ? 'redis' : 'memory',
        machine: { cpus: os.cpus().length, node: process.version },
      };
    } finally {
      clearInterval(sampler);
    }
  } finally {
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(30_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    // Whatever a failed run left behind.
    for (const id of containers()) execFileSync('/usr/bin/docker', ['rm', '-f', id], { stdio: 'ignore' });
    await rm(stateDir, { recursive: true, force: true });
  }
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

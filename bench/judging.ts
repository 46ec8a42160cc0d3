/**
 * The judging section of `npm run bench`, through Judge0's API as a judge's backend calls it:
 *  - submissions per second, sustained, of a Python `print` and of a C A+B (compiled and run), each in a
 *    fresh sandbox, against the ceiling of this machine: `docker run --rm` of the same image doing the same
 *    work with the same hardening, at the same concurrency;
 *  - the overhead per test case beyond the program's own run time: 100 tests of one C program;
 *  - a burst of 50 submissions at once: latency p50 / p99, and that none is lost.
 */
import { spawn } from 'node:child_process';
import type { ServiceProcess } from '../test/helpers/service-process.js';
import { DOCKER } from '../test/helpers/docker.js';
import { summarize, timeIt, type Summary } from './stats.js';

/** Judge0's language ids. */
const PYTHON = 71;
const C = 50;
const PRINT_PY = 'print("hello")\n';
const AB_C = '#include <stdio.h>\nint main(void){long a,b;if(scanf("%ld %ld",&a,&b)!=2)return 1;printf("%ld\\n",a+b);return 0;}\n';

export interface JudgingOptions {
  /** Submissions in flight at once, for the service and the ceiling alike. */
  concurrency: number;
  /** Submissions per language in the sustained runs. */
  perLanguage: number;
}

export interface JudgingFigures {
  concurrency: number;
  sustained: Record<'python_print' | 'c_ab', { service_per_s: number; ceiling_per_s: number; of_ceiling: number }>;
  per_test_overhead_ms: Summary & { tests: number; compilations: number };
  burst_50: Summary & { lost: number };
}

interface Judge0Result {
  status: { id: number; description: string };
  stdout?: string | null;
  time?: string | null;
  wall_time?: string | null;
  compile_output?: string | null;
  message?: string | null;
  [field: string]: unknown;
}

async function submit(service: ServiceProcess, body: Record<string, unknown>): Promise<Judge0Result> {
  return (await service.http.ok('POST', '/submissions?base64_encoded=false&wait=true', body)) as Judge0Result;
}

function expectAccepted(result: Judge0Result, what: string): void {
  if (result.status?.id !== 3) throw new Error(`${what}: not accepted: ${JSON.stringify(result)}`);
}

/** Runs `n` tasks with at most `concurrency` in flight; resolves with the elapsed ms. */
async function pool(n: number, concurrency: number, task: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  return timeIt(() =>
    Promise.all(
      Array.from({ length: Math.min(concurrency, n) }, async () => {
        while (next < n) await task(next++);
      }),
    ),
  );
}

/** `docker run --rm -i` of the language image, hardened as a sandbox is, doing one submission's work. */
function dockerRun(image: string, script: string, stdin: string): Promise<string> {
  const args = [
    'run', '--rm', '-i', '--network', 'none', '--read-only', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges',
    '--memory', '256m', '--memory-swap', '256m', '--pids-limit', '64', '--user', '1000:1000',
    '--tmpfs', '/tmp:rw,exec,nosuid,nodev,size=64m', '--workdir', '/tmp', '--log-driver', 'none',
    image, 'sh', '-c', script,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(DOCKER, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`docker run exited ${code}: ${err}`))));
    child.stdin.end(stdin);
  });
}

const ceilingWork = {
  python_print: () => dockerRun('polykernel/python:latest', `python3 -c 'print("hello")'`, ''),
  // The source comes in on stdin, then is compiled and run with the test's input, as a judge does.
  c_ab: () => dockerRun('polykernel/c:latest', 'cat > main.c && gcc -O2 -o main main.c -lm && echo "1 2" | ./main', AB_C),
};

const serviceWork = (service: ServiceProcess) => ({
  python_print: async () => expectAccepted(await submit(service, { language_id: PYTHON, source_code: PRINT_PY, expected_output: 'hello\n' }), 'python print'),
  c_ab: async () => expectAccepted(await submit(service, { language_id: C, source_code: AB_C, stdin: '1 2\n', expected_output: '3\n' }), 'C A+B'),
});

export async function benchJudging(service: ServiceProcess, options: JudgingOptions, log: (msg: string) => void): Promise<JudgingFigures> {
  const { concurrency, perLanguage } = options;
  const work = serviceWork(service);
  const sustained = {} as JudgingFigures['sustained'];
  for (const name of ['python_print', 'c_ab'] as const) {
    // One of each first: images paged in, warm sandboxes started.
    await work[name]();
    await ceilingWork[name]();
    const serviceMs = await pool(perLanguage, concurrency, () => work[name]());
    const ceilingMs = await pool(perLanguage, concurrency, () => ceilingWork[name]());
    const service_per_s = Math.round((perLanguage * 100_000) / serviceMs) / 100;
    const ceiling_per_s = Math.round((perLanguage * 100_000) / ceilingMs) / 100;
    sustained[name] = { service_per_s, ceiling_per_s, of_ceiling: Math.round((service_per_s / ceiling_per_s) * 100) / 100 };
    log(`judging sustained ${name} ${JSON.stringify(sustained[name])}`);
  }

  // Overhead per test: what 99 more tests add to a submission's time, per test, less the program's own
  // wall time (which the supervisor measures), so that the sandbox's start and the compile cancel out.
  const TESTS = 100;
  const testCases = (n: number) => Array.from({ length: n }, (_, i) => ({ stdin: `${i} ${i}\n`, expected_output: `${2 * i}\n` }));
  const judged = async (n: number) => {
    let result: Judge0Result = { status: { id: 0, description: '' } };
    const elapsed = await timeIt(async () => (result = await submit(service, { language_id: C, source_code: AB_C, test_cases: testCases(n) })));
    const perTest = (result.test_results ?? []) as Judge0Result[];
    if (perTest.length !== n || perTest.some((t) => t.status?.id !== 3)) throw new Error(`${n} tests: ${JSON.stringify(result).slice(0, 500)}`);
    const programMs = perTest.reduce((sum, t) => sum + Number(t.wall_time ?? 0) * 1000, 0);
    return { elapsed, programMs, compilations: Number(result.compilations ?? NaN) };
  };
  const overheads: number[] = [];
  let compilations = NaN;
  for (let round = 0; round < 5; round++) {
    const one = await judged(1);
    const many = await judged(TESTS);
    compilations = many.compilations;
    overheads.push((many.elapsed - one.elapsed - (many.programMs - one.programMs)) / (TESTS - 1));
  }
  const per_test_overhead_ms = { ...summarize(overheads), tests: TESTS, compilations };
  log(`judging per-test overhead ${JSON.stringify(per_test_overhead_ms)}`);

  // A burst: 50 at once, each timed from its own send.
  const latencies: number[] = [];
  let lost = 0;
  await Promise.all(
    Array.from({ length: 50 }, async (_, i) => {
      try {
        latencies.push(await timeIt(async () => expectAccepted(await submit(service, { language_id: C, source_code: AB_C, stdin: `${i} 1\n`, expected_output: `${i + 1}\n` }), 'burst')));
      } catch {
        lost++;
      }
    }),
  );
  const burst_50 = { ...summarize(latencies), lost };
  log(`judging burst of 50 ${JSON.stringify(burst_50)}`);
  return { concurrency, sustained, per_test_overhead_ms, burst_50 };
}

/**
 * Sustained C A+B submissions/s of services that differ only in their sandboxes' OCI runtime, measured in
 * alternating rounds so that the machine's load moves them alike: the median round of each.
 */
export async function compareSandboxRuntimes(services: Record<string, ServiceProcess>, options: JudgingOptions & { rounds: number }, log: (msg: string) => void): Promise<Record<string, number>> {
  const perRound: Record<string, number[]> = Object.fromEntries(Object.keys(services).map((runtime) => [runtime, []]));
  for (const service of Object.values(services)) await serviceWork(service).c_ab();
  for (let round = 0; round < options.rounds; round++) {
    for (const [runtime, service] of Object.entries(services)) {
      const work = serviceWork(service);
      const ms = await pool(options.perLanguage, options.concurrency, () => work.c_ab());
      perRound[runtime]!.push((options.perLanguage * 1000) / ms);
    }
  }
  const medians = Object.fromEntries(Object.entries(perRound).map(([runtime, rates]) => [runtime, Math.round(summarize(rates).p50 * 100) / 100]));
  log(`judging sandbox runtimes, C A+B submissions/s ${JSON.stringify(medians)}`);
  return medians;
}

/**
 * The judge engine on the real sandbox, for what depends on a language's runtime: a Java program fits in
 * 128 MB (its heap capped from the limit) and its memory figure is what it used, a Go program likewise,
 * a Java file named after its own class, and the per-test overhead of the engine and the sandbox,
 * measured on 100 tests of a tiny C program. An abort removes the sandbox.
 */
import test from 'ava';
import { docker } from '../helpers/docker.js';
import { io, judgeFixture, type JudgeFixture } from './judge-engine-helpers.js';

let fixture: JudgeFixture;
test.before(async () => {
  fixture = await judgeFixture();
});
test.after.always(async () => {
  await fixture?.close();
});

const JAVA_KEEP = (mb: number) => `import java.util.*;
public class Main { public static void main(String[] a) { Scanner s = new Scanner(System.in); int n = s.nextInt();
  byte[][] keep = new byte[n][]; for (int i = 0; i < n; i++) { keep[i] = new byte[1 << 20]; Arrays.fill(keep[i], (byte) 1); }
  System.out.println(keep.length + ${mb - mb}); } }`;

test.serial('java: A+B and a program holding 60 MB run within 128 MB; the figures are what they used', async (t) => {
  const limits = { ...fixture.config.judgeLimits, memoryKB: 128000 };
  const result = await fixture.engine.judge(fixture.submission('java', JAVA_KEEP(0), [io('0', '0'), io('60', '60')], { limits }));
  t.is(result.verdict, 'accepted', JSON.stringify(result.tests.map((r) => [r.verdict, r.message, r.memoryKB, String(r.stderr).slice(0, 300)])));
  const [small, big] = result.tests;
  t.log(`java memory: empty ${small.memoryKB} KB, 60 MB held ${big.memoryKB} KB; cpu ${small.cpuTimeMs} / ${big.cpuTimeMs} ms`);
  t.true(small.memoryKB > 10_000 && small.memoryKB < 80_000, `an idle JVM is a few tens of MB, not its reservation: ${small.memoryKB} KB`);
  t.true(big.memoryKB > 60_000 && big.memoryKB < 128_000, `${big.memoryKB} KB`);
  t.true(big.memoryKB - small.memoryKB > 55_000, 'the figure follows what the program touched');
});

test.serial('java: a submission naming its own file runs as that class', async (t) => {
  const source = 'public class Solution { public static void main(String[] a) { System.out.println("from Solution"); } }';
  const result = await fixture.engine.judge({ ...fixture.submission('java', source, [io('', 'from Solution')]), files: [{ name: 'Solution.java', content: Buffer.from(source) }] });
  t.is(result.verdict, 'accepted', JSON.stringify([String(result.compile?.stderr), result.tests.map((r) => [r.message, String(r.stderr)])]));
});

test.serial('go: a program holding 60 MB runs within 128 MB with GOMEMLIMIT set from the limit', async (t) => {
  const source = `package main
import ("fmt"; "os")
func main() { keep := make([][]byte, 60); for i := range keep { keep[i] = make([]byte, 1<<20); for j := range keep[i] { keep[i][j] = 1 } }
  fmt.Println(len(keep), os.Getenv("GOMEMLIMIT") != "") }`;
  const result = await fixture.engine.judge(fixture.submission('go', source, [io('', '60 true')], { limits: { ...fixture.config.judgeLimits, memoryKB: 128000 } }));
  t.is(result.verdict, 'accepted', JSON.stringify([String(result.compile?.stderr), result.tests.map((r) => [r.verdict, r.message, r.memoryKB, String(r.stderr).slice(0, 300)])]));
  t.log(`go memory with 60 MB held: ${result.tests[0].memoryKB} KB`);
  t.true(result.tests[0].memoryKB > 60_000 && result.tests[0].memoryKB < 128_000);
});

test.serial('per-test overhead: 100 tests of a tiny C program (the run as the engine sees it minus the program\'s own wall time)', async (t) => {
  const tests = Array.from({ length: 100 }, (_, i) => io(`${i} 1`, `${i + 1}`));
  const before = fixture.sandboxes.runs.length;
  const started = Date.now();
  const result = await fixture.engine.judge(fixture.submission('c', '#include <stdio.h>\nint main(void){int a,b;scanf("%d %d",&a,&b);printf("%d\\n",a+b);return 0;}', tests));
  const totalMs = Date.now() - started;
  t.is(result.verdict, 'accepted');
  t.is(result.compilations, 1);
  const runs = fixture.sandboxes.runs.slice(before).filter((run) => run.request.as === 'program');
  t.is(runs.length, 100);
  const overheads = runs.map((run) => run.engineMs - run.measured.wallTimeMs).sort((a, b) => a - b);
  const engineWalls = runs.map((run) => run.engineMs).sort((a, b) => a - b);
  const programWalls = runs.map((run) => run.measured.wallTimeMs).sort((a, b) => a - b);
  const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
  t.log(
    `100 tests in ${totalMs} ms (compile and sandbox included); per test: run as seen by the engine p50 ${pct(engineWalls, 50).toFixed(2)} ms, ` +
      `program wall p50 ${pct(programWalls, 50).toFixed(2)} ms; overhead p50 ${pct(overheads, 50).toFixed(2)} ms, p90 ${pct(overheads, 90).toFixed(2)} ms, p99 ${pct(overheads, 99).toFixed(2)} ms`,
  );
  // A figure, not a timing assertion (shared machine): the overhead is only required to be a run's, not a container's.
  t.true(pct(overheads, 50) < 200, `p50 overhead ${pct(overheads, 50)} ms`);
});

test.serial('an abort during a run ends it and removes the sandbox', async (t) => {
  const controller = new AbortController();
  const judging = fixture.engine.judge(fixture.submission('python3', 'import time\ntime.sleep(60)\n', [io('')]), controller.signal);
  const created = fixture.sandboxes.created.length;
  for (let i = 0; i < 200 && fixture.sandboxes.created.length === created; i++) await new Promise((resolve) => setTimeout(resolve, 50));
  await new Promise((resolve) => setTimeout(resolve, 500));
  controller.abort();
  const ended = await judging.then(
    () => 'resolved',
    (error: Error) => error.name,
  );
  t.is(ended, 'AbortError', 'the submission rejects with the signal\'s reason');
  for (let i = 0; i < 100 && fixture.leftovers().length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 100));
  t.deepEqual(fixture.leftovers(), []);
});

test.serial('a sandbox removed from outside during a run: internal_error for that test and the next, no hang', async (t) => {
  const limits = { ...fixture.config.judgeLimits, wallTimeMs: 15_000, cpuTimeMs: 10_000 };
  const started = Date.now();
  const before = fixture.sandboxes.runs.length;
  const judging = fixture.engine.judge(fixture.submission('python3', 'import time, sys\nif sys.stdin.read() == "wait": time.sleep(60)\n', [io(''), io('wait'), io('')], { limits }));
  // Once this submission's first test is over (earlier tests' runs are in the list too), the second sleeps.
  const firstDone = () => fixture.sandboxes.runs.slice(before).some((run) => run.request.stdin.toString() === '');
  for (let i = 0; i < 400 && !firstDone(); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  await new Promise((resolve) => setTimeout(resolve, 700));
  for (const id of fixture.leftovers()) docker('rm', '-f', id);
  const result = await judging;
  t.deepEqual(result.tests.map((r) => r.verdict), ['accepted', 'internal_error', 'internal_error']);
  t.is(result.verdict, 'internal_error');
  t.true(Date.now() - started < 14_000, 'answered at once, not at the wall limit');
});

/**
 * The judge engine on the real sandbox: A+B accepted in the compiled languages and Python, the classic
 * failures of a C program (wrong answer, CPU and wall time limits, a 1 GB allocation, a null dereference,
 * a division by zero, a compile error, an output flood), 50 tests compiled once, a checker, and a program
 * that looks for the expected output and other tests' inputs and finds nothing. No sandbox is left after.
 */
import test from 'ava';
import { MEMORY_HEADROOM_BYTES } from '../../src/judge/docker-sandboxes.js';
import { io, judgeFixture, type JudgeFixture } from './judge-engine-helpers.js';

let fixture: JudgeFixture;
test.before(async () => {
  fixture = await judgeFixture();
});
test.after.always(async () => {
  await fixture?.close();
});

const SOURCES: Record<string, string> = {
  c: '#include <stdio.h>\nint main(void){long a,b;if(scanf("%ld %ld",&a,&b)!=2)return 2;printf("%ld\\n",a+b);return 0;}\n',
  cpp: '#include <iostream>\nint main(){long long a,b;std::cin>>a>>b;std::cout<<a+b<<"\\n";}\n',
  python3: 'a, b = map(int, input().split())\nprint(a + b)\n',
  java: 'import java.util.*;\npublic class Main { public static void main(String[] x) { Scanner s = new Scanner(System.in); System.out.println(s.nextLong() + s.nextLong()); } }\n',
  go: 'package main\nimport "fmt"\nfunc main() { var a, b int64; fmt.Scan(&a, &b); fmt.Println(a + b) }\n',
  rust: 'use std::io::Read;\nfn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap(); let v: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect(); println!("{}", v[0] + v[1]); }\n',
};

for (const [lang, source] of Object.entries(SOURCES)) {
  test.serial(`${lang}: A+B is accepted on every test, compiled ${lang === 'python3' ? 'never' : 'once'}`, async (t) => {
    const result = await fixture.engine.judge(fixture.submission(lang, source, [io('1 2', '3'), io('40 2\n', '42\n'), io('-5 5', '0')]));
    t.is(result.verdict, 'accepted', JSON.stringify({ compile: result.compile && String(result.compile.stderr), tests: result.tests.map((r) => [r.verdict, r.message, String(r.stderr)]) }));
    t.is(result.compilations, lang === 'python3' ? 0 : 1);
    t.deepEqual(result.tests.map((r) => r.stdout.toString().trim()), ['3', '42', '0']);
    for (const run of result.tests) {
      t.true(run.memoryKB > 0 && run.memoryKB < 128000, `memory ${run.memoryKB} KB`);
      t.true(run.wallTimeMs >= run.cpuTimeMs * 0.5 || run.cpuTimeMs < 20, `cpu ${run.cpuTimeMs} wall ${run.wallTimeMs}`);
    }
  });
}

const C_A_PLUS_B = SOURCES.c;

test.serial('c: a wrong sum is wrong_answer; the output is reported', async (t) => {
  const result = await fixture.engine.judge(fixture.submission('c', C_A_PLUS_B, [io('1 2', '3'), io('1 2', '4')]));
  t.deepEqual(result.tests.map((r) => r.verdict), ['accepted', 'wrong_answer']);
  t.is(result.verdict, 'wrong_answer');
  t.is(result.tests[1].stdout.toString(), '3\n');
});

test.serial('c: an endless loop is TLE (cpu) past cpuTimeMs; a sleep is TLE (wall)', async (t) => {
  const limits = { ...fixture.config.judgeLimits, cpuTimeMs: 500, extraCpuTimeMs: 200, wallTimeMs: 2000 };
  // The loop's wall limit is far off: on a loaded machine (two cores, CI running suites side by side) a busy
  // loop may get a third of a core, and 700 ms of CPU then takes longer than 2 s of wall time.
  const loopLimits = { ...limits, wallTimeMs: 20_000 };
  const loopSource = '#include <stdio.h>\nint main(void){puts("partial");fflush(stdout);volatile unsigned long i=0;for(;;)i++;}';
  const loop = await fixture.engine.judge(fixture.submission('c', loopSource, [io('')], { limits: loopLimits }));
  t.is(loop.verdict, 'time_limit_exceeded');
  t.is(loop.tests[0].timeLimit, 'cpu');
  t.true(loop.tests[0].cpuTimeMs > 500, `cpu ${loop.tests[0].cpuTimeMs}`);
  t.is(loop.tests[0].stdout.toString(), 'partial\n', 'the output before the kill is kept');
  const sleep = await fixture.engine.judge(fixture.submission('c', '#include <unistd.h>\nint main(void){sleep(30);return 0;}', [io('')], { limits }));
  t.is(sleep.verdict, 'time_limit_exceeded');
  t.is(sleep.tests[0].timeLimit, 'wall');
  t.true(sleep.tests[0].wallTimeMs >= 2000 && sleep.tests[0].wallTimeMs < 10_000, `wall ${sleep.tests[0].wallTimeMs}`);
});

test.serial("c: touching 1 GB is MLE (128 MB limit), its figure past the limit and within the sandbox's cap", async (t) => {
  // Every page written through a volatile pointer, so the compiler cannot drop the allocation.
  const source = '#include <stdio.h>\n#include <stdlib.h>\nint main(void){size_t n=1UL<<30;volatile char*p=malloc(n);if(!p)return 3;for(size_t i=0;i<n;i+=4096)p[i]=1;long s=0;for(size_t i=0;i<n;i+=4096)s+=p[i];printf("%ld\\n",s);return 0;}';
  const result = await fixture.engine.judge(fixture.submission('c', source, [io('')]));
  t.is(result.verdict, 'memory_limit_exceeded', JSON.stringify([result.tests[0].message, result.tests[0].exitCode, result.tests[0].signal, result.tests[0].killedFor]));
  // The supervisor kills the run when it sees the limit passed (it looks every few ms); what the program
  // touched between two looks counts, and a loaded machine makes the looks late (206 MB was seen in CI).
  // The container's cap bounds it whatever the delay: the largest limit of the sandbox (the compile's)
  // plus the headroom.
  const capKB = Math.max(fixture.config.judgeCompileLimits.memoryKB, fixture.config.judgeLimits.memoryKB) + MEMORY_HEADROOM_BYTES / 1024;
  t.log(`peak ${result.tests[0].memoryKB} KB for a 128000 KB limit; the sandbox's cap ${capKB} KB`);
  t.true(result.tests[0].memoryKB > 128000 && result.tests[0].memoryKB <= capKB, `memory ${result.tests[0].memoryKB}`);
});

test.serial('c: a null dereference is SIGSEGV, a division by zero SIGFPE, abort() SIGABRT, exit(3) NZEC, kill SIGKILL, a big file SIGXFSZ', async (t) => {
  const cases: Array<[string, string]> = [
    ['int main(void){volatile int*p=0;*p=1;return 0;}', 'Killed by signal 11 (SIGSEGV)'],
    // Both operands volatile: gcc turns 1/z into a comparison, with no division to trap.
    ['#include <stdio.h>\nint main(void){volatile int x=7,z=0;printf("%d",x/z);return 0;}', 'Killed by signal 8 (SIGFPE)'],
    ['#include <stdlib.h>\nint main(void){abort();}', 'Killed by signal 6 (SIGABRT)'],
    ['#include <stdlib.h>\nint main(void){exit(3);}', 'Exited with error status 3'],
    ['#include <signal.h>\n#include <unistd.h>\nint main(void){kill(getpid(),SIGKILL);pause();return 0;}', 'Killed by signal 9 (SIGKILL)'],
    // 2 MB into a file past maxFileSizeKB (1024): the kernel's SIGXFSZ (the work directory is the builder's; /tmp is the program's).
    ['#include <stdio.h>\nint main(void){FILE*f=fopen("/tmp/big","w");if(!f)return 9;static char b[1<<16];for(int i=0;i<32;i++)fwrite(b,1,sizeof b,f);fclose(f);return 0;}', 'Killed by signal 25 (SIGXFSZ)'],
  ];
  for (const [source, message] of cases) {
    const result = await fixture.engine.judge(fixture.submission('c', source, [io('')]));
    t.is(result.verdict, 'runtime_error', `${message}: ${JSON.stringify([result.tests[0]?.message, String(result.compile?.stderr)])}`);
    t.is(result.tests[0].message, message);
  }
});

test.serial('c: a compile error is compilation_error with the compiler\'s output apart, no test run', async (t) => {
  const result = await fixture.engine.judge(fixture.submission('c', 'int main(void){ return undefined_name; }', [io('1 2', '3')]));
  t.is(result.verdict, 'compilation_error');
  t.false(result.compile?.ok);
  t.regex(String(result.compile?.stderr) + String(result.compile?.stdout), /undefined_name/);
  t.deepEqual(result.tests, []);
  t.is(result.compilations, 1);
});

test.serial('c: an output flood is OLE and the output before the kill is kept', async (t) => {
  const limits = { ...fixture.config.judgeLimits, maxOutputBytes: 65536 };
  const result = await fixture.engine.judge(fixture.submission('c', '#include <stdio.h>\nint main(void){for(;;)fputs("yyyyyyyyyyyyyyy\\n",stdout);}', [io('')], { limits }));
  t.is(result.verdict, 'output_limit_exceeded');
  const out = result.tests[0].stdout;
  t.true(out.length > 0 && out.length <= 65536, `${out.length} bytes kept`);
  t.true(out.subarray(0, 16).equals(Buffer.from('yyyyyyyyyyyyyyy\n')));
});

test.serial('c: 50 test cases, one compile, 50 verdicts', async (t) => {
  const tests = Array.from({ length: 50 }, (_, i) => io(`${i} ${i * 2}`, `${i * 3}`));
  const result = await fixture.engine.judge(fixture.submission('c', C_A_PLUS_B, tests));
  t.is(result.compilations, 1);
  t.is(result.tests.length, 50);
  t.true(result.tests.every((r) => r.verdict === 'accepted'));
  t.is(result.verdict, 'accepted');
});

test.serial('a checker accepts any of several right answers and refuses a wrong one, in a sandbox of its own', async (t) => {
  // The problem: print any divisor of n other than 1 and n. The checker reads input, output, answer.
  const checker = `#include <stdio.h>
int main(int argc, char **argv) {
  if (argc != 4) return 3;
  FILE *in = fopen(argv[1], "r"), *out = fopen(argv[2], "r");
  long n, d;
  if (!in || fscanf(in, "%ld", &n) != 1) { puts("bad input"); return 3; }
  if (!out || fscanf(out, "%ld", &d) != 1) { puts("no number in the output"); return 2; }
  if (d > 1 && d < n && n % d == 0) { printf("ok %ld divides %ld\\n", d, n); return 0; }
  printf("wrong: %ld does not divide %ld\\n", d, n);
  return 1;
}`;
  const program = 'n = int(input())\nimport sys\nprint(int(sys.argv[1]) if len(sys.argv) > 1 else next(d for d in range(2, n) if n % d == 0))\n';
  const submission = (args?: string[]) =>
    fixture.submission('python3', program, [io('12', '2'), io('35', '5')], { checker: { lang: 'c', files: [{ name: 'checker.c', content: Buffer.from(checker) }] }, ...(args ? { args } : {}) });
  const firstDivisor = await fixture.engine.judge(submission());
  t.deepEqual(firstDivisor.tests.map((r) => [r.verdict, r.message]), [
    ['accepted', 'ok 2 divides 12'],
    ['accepted', 'ok 5 divides 35'],
  ]);
  // Another right answer for 12 (not the expected 2), and a wrong one for 35.
  const other = await fixture.engine.judge(submission(['6']));
  t.deepEqual(other.tests.map((r) => [r.verdict, r.message]), [
    ['accepted', 'ok 6 divides 12'],
    ['wrong_answer', 'wrong: 6 does not divide 35'],
  ]);
  t.is(other.verdict, 'wrong_answer');
});

test.serial('a program that looks for the expected output and for other tests\' inputs finds nothing', async (t) => {
  // It reads every file it can (and what earlier tests may have left in /tmp and the work directory),
  // writes its own input where a later test could look, and prints what it found.
  const program = `
import os, sys
data = sys.stdin.read()
markers = [b'EXPECTED-SECRET-' + b'7431', b'INPUT-SECRET-' + b'TWO', b'INPUT-SECRET-' + b'ONE']
found = set()
for root in ['/']:
    for d, dirs, files in os.walk(root):
        if d in ('/proc', '/sys', '/dev'):
            dirs[:] = []
            continue
        for f in files:
            p = os.path.join(d, f)
            try:
                with open(p, 'rb') as h:
                    blob = h.read(1 << 22)
            except Exception:
                continue
            for m in markers:
                if m in blob and m.decode() not in data:
                    found.add(p)
for pid in os.listdir('/proc'):
    if pid.isdigit():
        for what in ('cmdline', 'environ'):
            try:
                blob = open(f'/proc/{pid}/{what}', 'rb').read()
            except Exception:
                continue
            if any(m in blob for m in markers):
                found.add(f'/proc/{pid}/{what}')
for place in ('/tmp/leak', 'leak', '/dev/shm/leak'):
    try:
        open(place, 'w').write(data)
    except Exception:
        pass
print('found ' + ' '.join(sorted(found)) if found else 'clean')
`;
  const result = await fixture.engine.judge(
    fixture.submission('python3', program, [io('INPUT-SECRET-ONE', 'EXPECTED-SECRET-7431'), io('INPUT-SECRET-TWO', 'EXPECTED-SECRET-7431')]),
  );
  t.deepEqual(result.tests.map((r) => r.stdout.toString().trim()), ['clean', 'clean'], JSON.stringify(result.tests.map((r) => String(r.stderr))));
  t.deepEqual(result.tests.map((r) => r.verdict), ['wrong_answer', 'wrong_answer']);
});

test.serial('after the submissions no sandbox of this instance is left', async (t) => {
  // The engine removes a container in the background once its removal is under way.
  for (let i = 0; i < 100 && fixture.leftovers().length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 100));
  t.deepEqual(fixture.leftovers(), []);
});

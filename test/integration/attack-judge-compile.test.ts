/**
 * The compile step as an attack, on the real engine: sources that make the compiler read endless or
 * private files, compile bombs, and compiler options that try a shell, another output path or a response
 * file. Each ends as a compilation error (or a compile that does no harm) within the compile limits, and
 * the next submission is judged as usual.
 */
import test from 'ava';
import { io, judgeFixture, type JudgeFixture } from './judge-engine-helpers.js';

let fixture: JudgeFixture;
test.before(async () => {
  fixture = await judgeFixture();
});
test.after.always(async () => {
  await fixture?.close();
});

const A_PLUS_B = '#include <stdio.h>\nint main(void){long a,b;if(scanf("%ld %ld",&a,&b)!=2)return 2;printf("%ld\\n",a+b);return 0;}\n';
const quick = () => ({ ...fixture.config.judgeCompileLimits, cpuTimeMs: 4000, wallTimeMs: 8000 });

test.serial('c: #include of /dev/zero, /dev/urandom, /dev/stdin, /proc/1/environ, /etc/shadow: compilation errors within the limits', async (t) => {
  for (const path of ['/dev/zero', '/dev/urandom', '/dev/stdin', '/proc/1/environ', '/proc/self/fd/0', '/etc/shadow']) {
    const started = Date.now();
    const result = await fixture.engine.judge(fixture.submission('c', `#include "${path}"\nint main(void){return 0;}\n`, [io('1 2', '3')], { compileLimits: quick() }));
    const compile = result.compile!;
    t.log(`${path}: ${result.verdict}, ${compile.killedFor ?? compile.exitCode} in ${Date.now() - started} ms, ${compile.memoryKB} KB: ${compile.stderr.toString().split('\n')[0]?.slice(0, 120)}`);
    // /dev/stdin and /proc/self/fd/0 are the compile's empty stdin: nothing to wait for.
    if (path === '/dev/stdin' || path === '/proc/self/fd/0') t.not(result.verdict, 'internal_error');
    else t.is(result.verdict, 'compilation_error', path);
    t.true(compile.stdout.length + compile.stderr.length <= fixture.config.judgeCompileLimits.maxOutputBytes);
    t.false(/root:|PATH=/.test(compile.stderr.toString()), 'no private bytes in the compiler output');
  }
});

test.serial('c and c++: compile bombs (a huge initialised array, deep templates, an include loop) end within the compile limits', async (t) => {
  const bombs: [string, string][] = [
    ['c', 'char a[1L<<34] = {1};\nint main(void){return a[0];}\n'],
    ['cpp', 'template<int N> struct F { static const int v = F<N-1>::v + F<N-2>::v; };\ntemplate<> struct F<0>{static const int v=0;};\ntemplate<> struct F<1>{static const int v=1;};\nint main(){return F<100000>::v;}\n'],
    ['c', '#include "main.c"\n#include "main.c"\nint main(void){return 0;}\n'],
  ];
  for (const [lang, source] of bombs) {
    const started = Date.now();
    const result = await fixture.engine.judge(fixture.submission(lang, source, [io('')], { compileLimits: quick() }));
    t.log(`${lang} bomb: ${result.verdict}, ${result.compile?.killedFor ?? result.compile?.exitCode} in ${Date.now() - started} ms`);
    t.is(result.verdict, 'compilation_error');
    t.true(Date.now() - started < 8000 + 15_000);
  }
  const after = await fixture.engine.judge(fixture.submission('c', A_PLUS_B, [io('1 2', '3')]));
  t.is(after.verdict, 'accepted');
});

test.serial('c: compiler options are words for gcc, never a shell: `; touch`, $(...), -o elsewhere, @/etc/passwd, -wrapper', async (t) => {
  const cases: [string, RegExp | 'accepted'][] = [
    ['; touch /home/work/pwned', /touch|No such file/],
    ['$(id) `id`', /\$\(id\)|`id`|No such file/],
    ['-o /opt/polykernel/judge/supervisor', /Read-only file system|Permission denied|cannot open output file/],
    ['-o /home/work/../../tmp/x', 'accepted'],
    ['@/etc/passwd', /root|No such file|unrecognized/],
  ];
  for (const [options, expected] of cases) {
    const result = await fixture.engine.judge(fixture.submission('c', A_PLUS_B, [io('1 2', '3')], { compilerOptions: options }));
    const said = result.compile?.stderr.toString() ?? '';
    t.log(`${options}: ${result.verdict}: ${said.split('\n')[0]?.slice(0, 150)}`);
    if (expected === 'accepted') t.not(result.verdict, 'internal_error');
    else {
      t.is(result.verdict, 'compilation_error', options);
      t.regex(said, expected, options);
    }
  }
  // Nothing of those compiles reached the next submission's sandbox.
  const look = await fixture.engine.judge(fixture.submission('python3', 'import os\nprint(sorted(os.listdir(".")), sorted(os.listdir("/tmp")))', [io('')]));
  t.is(look.tests[0].stdout.toString().trim(), "['main.py'] []");
});

test.serial('a source file named like an option is refused before anything runs', async (t) => {
  for (const name of ['-o', '--help', '-fplugin=x.so', '.hidden']) {
    const error = await t.throwsAsync(
      fixture.engine.judge(fixture.submission('c', A_PLUS_B, [io('1 2', '3')], { files: [{ name: '', content: Buffer.from(A_PLUS_B) }, { name, content: Buffer.from('x') }] })),
    );
    t.regex(error!.message, /not starting with/, name);
  }
});

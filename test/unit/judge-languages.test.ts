/**
 * Judged languages from image labels: batch mode's commands unless the image says otherwise, the version
 * from the image's version file, and commands run as argv with the client's words never in a shell line.
 */
import test from 'ava';
import { commandArgv, judgedLanguage, splitWords } from '../../src/judge/languages.js';
import type { KernelSpecEntry } from '../../src/kernels/kernel-specs.js';

const entry = (name: string, labels: Record<string, string>, display = `${name} (sandboxed)`): KernelSpecEntry => ({
  name,
  spec: { language: name, display_name: display, argv: [], env: {}, metadata: {}, interrupt_mode: 'signal' },
  image: `polykernel/${name}:latest`,
  aliases: [],
  resources: [],
  build: labels['org.polykernel.build'],
  exec: labels['org.polykernel.exec'],
  labels,
});

test('a plain command line is split into argv; the client\'s words follow as separate arguments', (t) => {
  t.deepEqual(commandArgv('./main', ['a b', '$(rm -rf /)']), ['./main', 'a b', '$(rm -rf /)']);
  t.deepEqual(commandArgv('python3 main.py', []), ['python3', 'main.py']);
  t.deepEqual(commandArgv('java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 Main', ['x']), ['java', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', 'Main', 'x']);
});

test('a shell line runs under sh -c with the client\'s words as positional parameters, never interpolated', (t) => {
  t.deepEqual(commandArgv('gcc -O2 -o main *.c -lm', ['-DX=1;reboot']), ['/bin/sh', '-c', 'gcc -O2 -o main *.c -lm "$@"', 'sh', '-DX=1;reboot']);
  // Where the line puts "$@", the words go there (options before the file names).
  t.deepEqual(commandArgv('go build -o main "$@" *.go', ['-x']), ['/bin/sh', '-c', 'go build -o main "$@" *.go', 'sh', '-x']);
});

test('compiler options are cut at white space', (t) => {
  t.deepEqual(splitWords('  -O3   -Wall\t-DN=5 '), ['-O3', '-Wall', '-DN=5']);
  t.deepEqual(splitWords(undefined), []);
});

test('batch labels make a judged language: main<ext>, its build and exec; version and name from the version file', (t) => {
  const c = judgedLanguage(
    entry('c', { 'org.polykernel.build': 'gcc -O2 -o main main.c -lm', 'org.polykernel.exec': './main', 'org.polykernel.file_extension': '.c' }, 'C (gcc, sandboxed)'),
    'gcc 12.2.0',
  );
  t.like(c, { name: 'c', displayName: 'C (gcc 12.2.0)', version: '12.2.0', sourceFile: 'main.c', compileCommand: 'gcc -O2 -o main main.c -lm', runCommand: './main', keepsSourceName: false });
  const python = judgedLanguage(entry('python3', { 'org.polykernel.build': '', 'org.polykernel.exec': 'python3 main.py', 'org.polykernel.file_extension': '.py' }, 'Python 3 (sandboxed)'), 'CPython 3.11.2');
  t.is(python?.compileCommand, undefined, 'an empty build label: nothing to compile');
  t.is(python?.displayName, 'Python 3 (CPython 3.11.2)');
});

test('judge labels override batch mode\'s; a judge source label keeps the client\'s name for the main file', (t) => {
  const java = judgedLanguage(
    entry('java', {
      'org.polykernel.build': 'cp main.java Main.java && javac Main.java',
      'org.polykernel.exec': 'java Main',
      'org.polykernel.file_extension': '.java',
      'org.polykernel.judge.source': 'Main.java',
      'org.polykernel.judge.build': 'javac "$@" *.java',
      'org.polykernel.judge.exec': 'exec java "${POLYKERNEL_SOURCE%.java}"',
    }),
    '',
  );
  t.like(java, { sourceFile: 'Main.java', compileCommand: 'javac "$@" *.java', runCommand: 'exec java "${POLYKERNEL_SOURCE%.java}"', keepsSourceName: true, version: 'unknown' });
});

test('an image without an exec label is not a judged language', (t) => {
  t.is(judgedLanguage(entry('odd', {}), '1.0'), undefined);
});

test('a kernel-only image (judge.enabled=false) is not a judged language, though it has batch commands', (t) => {
  const labels = { 'org.polykernel.build': '', 'org.polykernel.exec': 'python3 main.py', 'org.polykernel.file_extension': '.py' };
  t.truthy(judgedLanguage(entry('python3', labels), 'CPython 3.11.2'));
  t.is(judgedLanguage(entry('python3-data', { ...labels, 'org.polykernel.judge.enabled': 'false' }), 'CPython 3.11.2'), undefined);
});

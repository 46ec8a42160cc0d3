/**
 * Piston's job request into the engine's submission: Piston's checks in Piston's order and words
 * (api/src/api/v2.js get_job), file encodings, the main file, version selectors, and limits in Piston's
 * units held to the server's caps.
 */
import test from 'ava';
import { loadConfig } from '../../src/config/index.js';
import { DomainError } from '../../src/errors.js';
import type { JudgeLanguage } from '../../src/judge/model.js';
import { readJob } from '../../src/api/piston/request.js';
import { matchRuntime, pistonRuntimeOf, runtimesBody, semverOf } from '../../src/api/piston/runtimes.js';

const config = loadConfig({});

const language = (name: string, version: string, extra: Partial<JudgeLanguage> = {}): JudgeLanguage => ({
  name,
  displayName: name,
  version,
  aliases: [],
  sourceFile: 'main',
  runCommand: 'run',
  ...extra,
});

const runtimes = [
  language('python3', 'Python 3.11.2', { aliases: ['python'] }),
  language('c', 'gcc 12.2.0', { compileCommand: 'gcc' }),
  language('cpp', 'g++ 12.2.0', { compileCommand: 'g++' }),
  language('javascript', 'v18.19.0'),
].map(pistonRuntimeOf);

const refused = (t: import('ava').ExecutionContext, body: unknown, message: string | RegExp) => {
  const error = t.throws(() => readJob(body, runtimes, config), { instanceOf: DomainError });
  if (typeof message === 'string') t.is(error?.message, message);
  else t.regex(error?.message ?? '', message);
  t.is(error?.code, 'invalid_input');
};

const py = (extra: Record<string, unknown> = {}) => ({ language: 'python', version: '*', files: [{ content: 'print(1)' }], ...extra });

test('runtimes are listed under Piston\'s names with semver versions; runtime only where Piston names one', (t) => {
  t.deepEqual(runtimesBody(runtimes), [
    { language: 'python', version: '3.11.2', aliases: ['py', 'py3', 'python3'] },
    { language: 'c', version: '12.2.0', aliases: ['gcc'] },
    { language: 'c++', version: '12.2.0', aliases: ['cpp', 'g++'] },
    { language: 'javascript', version: '18.19.0', aliases: ['node-javascript', 'node-js', 'js'], runtime: 'node' },
  ]);
  t.is(semverOf('3.11'), '3.11.0');
  t.is(semverOf('no digits'), '0.0.0');
  const unknown = pistonRuntimeOf(language('cobol', '3.2', { aliases: ['cbl'] }));
  t.is(unknown.language, 'cobol');
  t.deepEqual(unknown.aliases, ['cbl']);
});

test('a version selector is a semver range, matched against name or alias, the latest match wins', (t) => {
  const two = [...runtimes, pistonRuntimeOf(language('python3', '3.12.1'))];
  t.is(matchRuntime(two, 'python', '*')?.version, '3.12.1');
  t.is(matchRuntime(two, 'py', '3.11.x')?.version, '3.11.2');
  t.is(matchRuntime(two, 'python3', '3.11.2')?.version, '3.11.2');
  t.is(matchRuntime(two, 'python', '3')?.version, '3.12.1');
  t.is(matchRuntime(two, 'python', '>=3.11 <3.12')?.version, '3.11.2');
  t.is(matchRuntime(two, 'python', '2.x'), undefined);
  t.is(matchRuntime(two, 'python', 'latest'), undefined);
  t.is(matchRuntime(two, 'c++', '12')?.lang.name, 'cpp');
  t.is(matchRuntime(two, 'g++', '*')?.lang.name, 'cpp');
});

test('a request becomes a submission: the language\'s kernel, files, args, and stdin with Piston\'s newline', (t) => {
  const job = readJob(py({ args: ['a', 'b'], stdin: '1 2' }), runtimes, config);
  t.is(job.runtime.language, 'python');
  t.is(job.submission.lang, 'python3');
  t.deepEqual(job.submission.files, [{ name: '', content: Buffer.from('print(1)') }]);
  t.deepEqual(job.submission.args, ['a', 'b']);
  t.is(job.stdin.toString(), '1 2\n');
  t.is(readJob(py({ stdin: 'x\n' }), runtimes, config).stdin.toString(), 'x\n');
  t.is(readJob(py(), runtimes, config).stdin.toString(), '\n');
  t.deepEqual(readJob(py(), runtimes, config).submission.args, []);
});

test('files: utf8, base64 and hex decoded; the first utf8 file is the main one; unnamed others get Piston\'s names', (t) => {
  const job = readJob(
    {
      language: 'c',
      version: '*',
      files: [
        { name: 'data.bin', content: Buffer.from([0, 1, 2, 255]).toString('base64'), encoding: 'base64' },
        { name: 'main.c', content: '#include "lib.h"\nint main(){}' },
        { content: '6869', encoding: 'hex' },
        { name: 'sub/lib.h', content: 'int f(void);', encoding: 'utf8' },
      ],
    },
    runtimes,
    config,
  );
  t.deepEqual(
    job.submission.files.map((file) => [file.name, file.content]),
    [
      ['main.c', Buffer.from('#include "lib.h"\nint main(){}')],
      ['data.bin', Buffer.from([0, 1, 2, 255])],
      ['file2.code', Buffer.from('hi')],
      ['sub/lib.h', Buffer.from('int f(void);')],
    ],
  );
  // An encoding Piston does not know is read as utf8, as Piston does.
  t.deepEqual(readJob(py({ files: [{ content: 'x', encoding: 'utf8' }, { content: 'é', encoding: 'latin1' }] }), runtimes, config).submission.files[1], {
    name: 'file1.code',
    content: Buffer.from('é', 'utf8'),
  });
  // A leading slash is joined under the job directory, as Piston's path.join does.
  t.is(readJob(py({ files: [{ name: '/abs/x.py', content: 'x' }] }), runtimes, config).submission.files[0]!.name, 'abs/x.py');
});

test('Piston\'s messages for a bad request, in Piston\'s order', (t) => {
  refused(t, {}, 'language is required as a string');
  refused(t, [], 'language is required as a string');
  refused(t, { language: 5 }, 'language is required as a string');
  refused(t, { language: 'python' }, 'version is required as a string');
  refused(t, { language: 'python', version: '' }, 'version is required as a string');
  refused(t, { language: 'python', version: '1 '.repeat(200) }, 'version must be at most 256 characters');
  refused(t, { language: 'p'.repeat(257), version: '*' }, 'language must be at most 256 characters');
  refused(t, { language: 'python', version: '*' }, 'files is required as an array');
  refused(t, { language: 'python', version: '*', files: 'print(1)' }, 'files is required as an array');
  refused(t, { language: 'python', version: '*', files: [{ content: 'x' }, { name: 'a' }] }, 'files[1].content is required as a string');
  refused(t, { language: 'python', version: '*', files: [null] }, 'files[0].content is required as a string');
  refused(t, { language: 'html', version: '5.0.0', files: [] }, 'html-5.0.0 runtime is unknown');
  refused(t, { language: 'python', version: '9.x', files: [] }, 'python-9.x runtime is unknown');
  refused(t, py({ files: [] }), 'files must include at least one utf8 encoded file');
  refused(t, py({ files: [{ content: 'AAAA', encoding: 'base64' }] }), 'files must include at least one utf8 encoded file');
  refused(t, py({ files: [{ name: '../x.py', content: 'x' }] }), 'File path "../x.py" tries to escape parent directory: ../x.py');
  refused(t, py({ files: [{ name: 'a/../../x', content: 'x' }] }), /tries to escape parent directory/);
  refused(t, py({ files: [{ name: 3, content: 'x' }] }), 'files[0].name must be a string');
  refused(t, py({ files: [{ name: '.', content: 'x' }] }), /files\[0\]\.name must name a file/);
  refused(t, py({ files: [{ name: 'a\0b', content: 'x' }] }), /NUL/);
  refused(t, py({ stdin: 5 }), 'stdin must be a string');
  refused(t, py({ args: 'a b' }), 'args must be an array of strings (without NUL)');
  refused(t, py({ args: [1] }), 'args must be an array of strings (without NUL)');
  refused(t, py({ args: ['a\0b'] }), 'args must be an array of strings (without NUL)');
  refused(t, py({ args: Array(1025).fill('x') }), 'args has 1025 items; at most 1024');
});

test('base64 and hex that do not decode are refused instead of silently changed', (t) => {
  refused(t, py({ files: [{ content: 'x' }, { content: 'not base64!', encoding: 'base64' }] }), 'files[1].content is not valid base64');
  refused(t, py({ files: [{ content: 'x' }, { content: 'ABCDE', encoding: 'base64' }] }), 'files[1].content is not valid base64');
  refused(t, py({ files: [{ content: 'x' }, { content: 'abc', encoding: 'hex' }] }), /files\[1\]\.content is not valid hex/);
  refused(t, py({ files: [{ content: 'x' }, { content: 'zz', encoding: 'hex' }] }), /not valid hex/);
  t.deepEqual(readJob(py({ files: [{ content: 'x' }, { content: 'aGk=\n', encoding: 'base64' }] }), runtimes, config).submission.files[1]!.content, Buffer.from('hi'));
});

test('limits in Piston\'s units (ms, bytes) become the engine\'s (ms, KB); absent or 0 is the server default', (t) => {
  const job = readJob(py({ run_timeout: 1500, run_cpu_time: 1000, run_memory_limit: 64 * 1024 * 1024, compile_timeout: 9000, compile_cpu_time: 8000, compile_memory_limit: 1000 }), runtimes, config);
  t.is(job.submission.limits.wallTimeMs, 1500);
  t.is(job.submission.limits.cpuTimeMs, 1000);
  t.is(job.submission.limits.memoryKB, 65536);
  t.is(job.submission.compileLimits.wallTimeMs, 9000);
  t.is(job.submission.compileLimits.cpuTimeMs, 8000);
  // Bytes round up to whole KB: a limit is never lowered.
  t.is(job.submission.compileLimits.memoryKB, 1);
  // Piston kills at the CPU limit (isolate's --extra-time=0).
  t.is(job.submission.limits.extraCpuTimeMs, 0);
  const defaults = readJob(py({ run_timeout: 0, run_cpu_time: null }), runtimes, config).submission;
  t.deepEqual({ ...defaults.limits, extraCpuTimeMs: config.judgeLimits.extraCpuTimeMs }, config.judgeLimits);
  t.deepEqual({ ...defaults.compileLimits, extraCpuTimeMs: config.judgeCompileLimits.extraCpuTimeMs }, config.judgeCompileLimits);
});

test('memory -1 is Piston\'s "no limit": the server\'s cap; a negative time is refused as Piston refuses it', (t) => {
  const job = readJob(py({ run_memory_limit: -1, compile_memory_limit: -1 }), runtimes, config);
  t.is(job.submission.limits.memoryKB, config.judgeLimitCaps.memoryKB);
  t.is(job.submission.compileLimits.memoryKB, config.judgeCompileLimitCaps.memoryKB);
  refused(t, py({ run_timeout: -1 }), 'run_timeout must be non-negative');
  refused(t, py({ compile_cpu_time: -5 }), 'compile_cpu_time must be non-negative');
  refused(t, py({ run_timeout: '1000' }), 'If specified, run_timeout must be a number');
  refused(t, py({ compile_memory_limit: true }), 'If specified, compile_memory_limit must be a number');
});

test('a limit above the server\'s cap is a 400 naming Piston\'s field, its value and the cap in Piston\'s units', (t) => {
  const cap = config.judgeLimitCaps;
  refused(t, py({ run_timeout: cap.wallTimeMs + 1 }), `run_timeout ${cap.wallTimeMs + 1} ms is above this server's limit of run_timeout ${cap.wallTimeMs} ms`);
  refused(t, py({ run_cpu_time: cap.cpuTimeMs + 1 }), `run_cpu_time ${cap.cpuTimeMs + 1} ms is above this server's limit of run_cpu_time ${cap.cpuTimeMs} ms`);
  refused(
    t,
    py({ run_memory_limit: cap.memoryKB * 1024 + 1 }),
    `run_memory_limit ${cap.memoryKB * 1024 + 1} bytes is above this server's limit of run_memory_limit ${cap.memoryKB * 1024} bytes`,
  );
  const compileCap = config.judgeCompileLimitCaps;
  refused(t, py({ compile_timeout: compileCap.wallTimeMs * 2 }), `compile_timeout ${compileCap.wallTimeMs * 2} ms is above this server's limit of compile_timeout ${compileCap.wallTimeMs} ms`);
  // At the cap exactly is allowed.
  t.is(readJob(py({ run_memory_limit: cap.memoryKB * 1024 }), runtimes, config).submission.limits.memoryKB, cap.memoryKB);
});

test('piston-client\'s default body (args 1 2 3, -1 memory, its timeouts) is accepted', (t) => {
  const job = readJob(
    { language: 'python', version: '3.11.2', files: [{ content: 'print(1)' }], stdin: '', args: ['1', '2', '3'], compile_timeout: 10000, run_timeout: 3000, compile_memory_limit: -1, run_memory_limit: -1 },
    runtimes,
    config,
  );
  t.is(job.submission.limits.wallTimeMs, 3000);
  t.is(job.submission.compileLimits.wallTimeMs, 10000);
  t.deepEqual(job.submission.args, ['1', '2', '3']);
});

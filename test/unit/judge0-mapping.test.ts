/**
 * Judge0's shapes, pure: statuses and messages from verdicts, Ruby's Base64 layout, decimal seconds, the
 * fields filter, and the validation of a submission with Judge0's messages per field.
 */
import test from 'ava';
import { deflateRawSync } from 'node:zlib';
import { loadConfig } from '../../src/config/index.js';
import { judge0Languages } from '../../src/api/judge0/languages.js';
import { encode64, outcomeOf, parseFields, renderSubmission, seconds, DEFAULT_FIELDS, NotUtf8, type Field } from '../../src/api/judge0/render.js';
import { messageOf, statusOf, signalNumber, listedStatuses } from '../../src/api/judge0/statuses.js';
import { parseSubmission, splitArguments, type Judge0Meta, type ParseContext } from '../../src/api/judge0/submission.js';
import { CallbackTargets } from '../../src/judge/callbacks.js';
import type { JobRecord } from '../../src/judge/submission-queue.js';
import { toWire } from '../../src/judge/wire.js';
import { readZip, ZipError } from '../../src/judge/zip.js';
import { FAKE_LANGUAGES, accepted, result, run } from '../helpers/fake-judge.js';

const config = loadConfig({});
const languages = judge0Languages(FAKE_LANGUAGES);
const context = (over: Partial<ParseContext> = {}): ParseContext => ({ base64: false, config, languages, callbackTargets: new CallbackTargets([]), ...over });
const parse = (body: unknown, over: Partial<ParseContext> = {}) => parseSubmission(body, context(over));
const errorsOf = (body: unknown, over: Partial<ParseContext> = {}) => {
  const parsed = parse(body, over);
  return parsed.ok ? undefined : parsed.errors;
};

test('languages carry Judge0 ids and our names; ids without an image are not listed', (t) => {
  t.deepEqual(languages.map((l) => [l.id, l.name]), [[50, 'C (gcc 12.2.0)'], [71, 'Python (3.11.2)']]);
  t.is(languages.find((l) => l.id === 71)!.compile_cmd, null);
});

test('statuses: Judge0 ids for what Judge0 has, 15 and 16 (or Judge0 ids in judge0 mode) for MLE and OLE', (t) => {
  t.is(statusOf({ verdict: 'accepted', signal: null, exitCode: 0 }, 'extended').id, 3);
  t.is(statusOf({ verdict: 'wrong_answer', signal: null, exitCode: 0 }, 'extended').id, 4);
  t.is(statusOf({ verdict: 'time_limit_exceeded', signal: 'SIGKILL', exitCode: null }, 'extended').id, 5);
  t.is(statusOf({ verdict: 'runtime_error', signal: 'SIGSEGV', exitCode: null }, 'extended').id, 7);
  t.is(statusOf({ verdict: 'runtime_error', signal: 'SIGXFSZ', exitCode: null }, 'extended').id, 8);
  t.is(statusOf({ verdict: 'runtime_error', signal: 'SIGFPE', exitCode: null }, 'extended').id, 9);
  t.is(statusOf({ verdict: 'runtime_error', signal: 'SIGABRT', exitCode: null }, 'extended').id, 10);
  t.is(statusOf({ verdict: 'runtime_error', signal: null, exitCode: 3 }, 'extended').id, 11);
  t.is(statusOf({ verdict: 'runtime_error', signal: 'SIGKILL', exitCode: null }, 'extended').id, 12);
  t.is(statusOf({ verdict: 'internal_error', signal: null, exitCode: null }, 'extended').id, 13);
  t.deepEqual(statusOf({ verdict: 'memory_limit_exceeded', signal: 'SIGKILL', exitCode: null }, 'extended'), { id: 15, description: 'Memory Limit Exceeded' });
  t.deepEqual(statusOf({ verdict: 'output_limit_exceeded', signal: 'SIGKILL', exitCode: null }, 'extended'), { id: 16, description: 'Output Limit Exceeded' });
  t.deepEqual(statusOf({ verdict: 'memory_limit_exceeded', signal: 'SIGKILL', exitCode: null }, 'judge0'), { id: 12, description: 'Memory Limit Exceeded' });
  t.deepEqual(statusOf({ verdict: 'output_limit_exceeded', signal: 'SIGKILL', exitCode: null }, 'judge0'), { id: 8, description: 'Output Limit Exceeded' });
  t.is(listedStatuses('extended').length, 16);
  t.is(listedStatuses('judge0').length, 14);
  t.deepEqual(listedStatuses('judge0')[13], { id: 14, description: 'Exec Format Error' });
});

test('messages use isolate\'s words; exit_signal is the number', (t) => {
  t.is(messageOf(run({ verdict: 'runtime_error', signal: 'SIGSEGV', exitCode: null })), 'Caught fatal signal 11');
  t.is(messageOf(run({ verdict: 'runtime_error', exitCode: 1 })), 'Exited with error status 1');
  t.is(messageOf(run({ verdict: 'time_limit_exceeded', timeLimit: 'wall' })), 'Time limit exceeded (wall clock)');
  t.is(messageOf(run({ verdict: 'time_limit_exceeded', timeLimit: 'cpu' })), 'Time limit exceeded');
  t.is(messageOf(run({ verdict: 'accepted' })), null);
  t.is(signalNumber('SIGFPE'), 8);
  t.is(signalNumber(null), null);
});

test('Base64 is laid out as Ruby\'s encode64: 60-character lines, each ending in a newline', (t) => {
  t.is(encode64(Buffer.from('hello, Judge0\n')), 'aGVsbG8sIEp1ZGdlMAo=\n');
  const long = encode64(Buffer.alloc(100, 'a'));
  t.deepEqual(long.split('\n').map((l) => l.length), [60, 60, 16, 0]);
  t.is(Buffer.from(long, 'base64').toString(), 'a'.repeat(100));
  t.is(encode64(Buffer.alloc(0)), '');
});

test('seconds render as Rails renders decimals', (t) => {
  t.is(seconds(45), '0.045');
  t.is(seconds(1000), '1.0');
  t.is(seconds(2500), '2.5');
  t.is(seconds(null), null);
});

test('fields: default 8, * for all, unknown ones listed', (t) => {
  t.deepEqual(parseFields(undefined), { fields: [...DEFAULT_FIELDS] });
  t.deepEqual(parseFields('stdout,status_id'), { fields: ['stdout', 'status_id'] });
  t.true('fields' in parseFields('*') && (parseFields('*') as { fields: string[] }).fields.includes('source_code'));
  t.deepEqual(parseFields('stdout,bogus,nope'), { invalid: ['bogus', 'nope'] });
});

test('validation: Judge0\'s 422 messages per field', (t) => {
  t.deepEqual(errorsOf({ source_code: 'x' }), { language_id: ["can't be blank"] });
  t.deepEqual(errorsOf({ source_code: 'x', language_id: 150000 }), { language_id: ["language with id 150000 doesn't exist"] });
  t.deepEqual(errorsOf({ language_id: 71 }), { source_code: ["can't be blank"] });
  t.deepEqual(errorsOf({ language_id: 71, source_code: '   ' }), { source_code: ["can't be blank"] });
  t.deepEqual(errorsOf({ language_id: 71, source_code: 'x', wall_time_limit: 100000 }), { wall_time_limit: ['must be less than or equal to 20'] });
  t.deepEqual(errorsOf({ language_id: 71, source_code: 'x', cpu_time_limit: 'abc' }), { cpu_time_limit: ['is not a number'] });
  t.deepEqual(errorsOf({ language_id: 71, source_code: 'x', memory_limit: 100 }), { memory_limit: ['must be greater than or equal to 2048'] });
  t.deepEqual(errorsOf({ language_id: 71, source_code: 'x', number_of_runs: 0 }), { number_of_runs: ['must be greater than 0'] });
  t.deepEqual(errorsOf({ language_id: 71, source_code: 'x', number_of_runs: 21 }), { number_of_runs: ['must be less than or equal to 20'] });
  t.deepEqual(errorsOf({ language_id: 71, source_code: 'x', enable_network: true }), { enable_network: ['enabling network is not allowed (sandboxes here have no network)'] });
  t.deepEqual(errorsOf({ language_id: 71, source_code: 'x', enable_per_process_and_thread_time_limit: true }), { enable_per_process_and_thread_time_limit: ['this option cannot be enabled'] });
  t.deepEqual(errorsOf({ language_id: 71, source_code: 'x', compiler_options: '-O3' }), { compiler_options: ['setting compiler options is only allowed for compiled languages'] });
  t.deepEqual(errorsOf({ language_id: 50, source_code: 'x', compiler_options: 'x'.repeat(513) }), { compiler_options: ['is too long (maximum is 512 characters)'] });
  t.deepEqual(errorsOf({ language_id: 71, source_code: '%%%' }, { base64: true }), { source_code: ['is not valid Base64 (with base64_encoded=true every text field must be Base64 encoded)'] });
  t.deepEqual(errorsOf({ language_id: 71, source_code: 'x', callback_url: 'http://127.0.0.1:9/x' }), { callback_url: ['is not allowed: this server sends callbacks to public addresses only'] });
  t.deepEqual(errorsOf({ language_id: 71, source_code: 'x', callback_url: 'ftp://example.com/' }), { callback_url: ['must be an http or https URL'] });
  t.is(errorsOf({ language_id: 71, source_code: 'x', callback_url: 'http://127.0.0.1:9/x' }, { callbackTargets: new CallbackTargets(['127.0.0.1']) }), undefined);
  // Several at once, as Rails collects them.
  t.deepEqual(Object.keys(errorsOf({ cpu_time_limit: 99, max_processes_and_or_threads: 0 })!).sort(), ['cpu_time_limit', 'language_id', 'max_processes_and_or_threads', 'source_code']);
  t.deepEqual(errorsOf([1, 2]), { submission: ['must be a JSON object'] });
});

test('a valid submission: Rails-style values, Judge0 units into the engine\'s, defaults filled in', (t) => {
  const parsed = parse({ language_id: '50', source_code: 'int main(){}', stdin: 'in', expected_output: 'out', cpu_time_limit: '1.5', memory_limit: 65536, redirect_stderr_to_stdout: 'true', command_line_arguments: 'a "b c" d\\ e', compiler_options: '-O0', unknown_field: 1 });
  if (!parsed.ok) return t.fail(JSON.stringify(parsed.errors));
  const s = parsed.submission;
  t.is(s.lang, 'c');
  t.is(s.limits.cpuTimeMs, 1500);
  t.is(s.limits.memoryKB, 65536);
  t.is(s.limits.wallTimeMs, config.judgeLimits.wallTimeMs);
  t.deepEqual(s.args, ['a', 'b c', 'd e']);
  t.is(s.compilerOptions, '-O0');
  t.true(s.stderrToStdout);
  t.is(s.comparison, 'lines');
  t.is(s.tests.length, 1);
  t.is(s.tests[0]!.stdin.toString(), 'in');
  t.is(s.tests[0]!.expectedOutput!.toString(), 'out');
  t.is(parsed.meta.cpu_time_limit, 1.5);
  t.is(parsed.meta.language_id, 50);
});

test('base64_encoded=true: source, stdin and expected output are bytes', (t) => {
  const parsed = parse({ language_id: 71, source_code: Buffer.from('print(1)').toString('base64'), stdin: Buffer.from([0xff, 0x00]).toString('base64') }, { base64: true });
  if (!parsed.ok) return t.fail();
  t.is(parsed.submission.files[0]!.content.toString(), 'print(1)');
  t.deepEqual([...parsed.submission.tests[0]!.stdin], [0xff, 0x00]);
});

test('test_cases: one test per case; not together with stdin; bounded', (t) => {
  const parsed = parse({ language_id: 71, source_code: 'x', test_cases: [{ stdin: '1', expected_output: '1' }, { stdin: '2' }] });
  if (!parsed.ok) return t.fail();
  t.is(parsed.submission.tests.length, 2);
  t.is(parsed.submission.tests[1]!.expectedOutput, undefined);
  t.is(parsed.meta.test_cases, 2);
  t.deepEqual(errorsOf({ language_id: 71, source_code: 'x', stdin: '1', test_cases: [{ stdin: '1' }] }), { test_cases: ['cannot be given with stdin or expected_output: put them in the test cases'] });
  t.deepEqual(errorsOf({ language_id: 71, source_code: 'x', test_cases: [] }), { test_cases: ["can't be empty"] });
  t.deepEqual(errorsOf({ language_id: 71, source_code: 'x', test_cases: Array(257).fill({}) }), { test_cases: ['has too many items (at most 256)'] });
  t.deepEqual(errorsOf({ language_id: 71, source_code: 'x', test_cases: [{ input: '1' }] }), { 'test_cases[0]': ['has unknown field "input"; expected stdin, expected_output'] });
});

test('command-line arguments split as a shell would, without a shell', (t) => {
  t.deepEqual(splitArguments(`one 'two three' "four \\"five\\"" six\\ seven $HOME;rm`), ['one', 'two three', 'four "five"', 'six seven', '$HOME;rm']);
  t.is(splitArguments('"unclosed'), undefined);
  t.deepEqual(splitArguments('   '), []);
});

/** A zip of stored or deflated entries, as zip(1) writes them (enough for the reader's tests). */
function zipOf(entries: { name: string; content: Buffer; deflate?: boolean; mode?: number }[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name);
    const data = entry.deflate ? deflateRawSync(entry.content) : entry.content;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(entry.deflate ? 8 : 0, 8);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(entry.content.length, 22);
    local.writeUInt16LE(name.length, 26);
    locals.push(local, name, data);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4);
    central.writeUInt16LE(entry.deflate ? 8 : 0, 10);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(entry.content.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(((entry.mode ?? 0o100644) << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);
    offset += 30 + name.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

test('additional_files: a zip is read within bounds; links, escapes and bombs are refused', (t) => {
  const files = readZip(zipOf([{ name: 'lib/helper.py', content: Buffer.from('X = 1\n'), deflate: true }, { name: 'data.txt', content: Buffer.from('abc') }]), 1024);
  t.deepEqual(files.map((f) => [f.name, f.content.toString()]), [['lib/helper.py', 'X = 1\n'], ['data.txt', 'abc']]);
  t.throws(() => readZip(zipOf([{ name: '../evil', content: Buffer.from('x') }]), 1024), { instanceOf: ZipError, message: /plain relative path/ });
  t.throws(() => readZip(zipOf([{ name: '/etc/passwd', content: Buffer.from('x') }]), 1024), { instanceOf: ZipError });
  t.throws(() => readZip(zipOf([{ name: 'link', content: Buffer.from('/etc/passwd'), mode: 0o120777 }]), 1024), { instanceOf: ZipError, message: /links/ });
  t.throws(() => readZip(zipOf([{ name: 'big', content: Buffer.alloc(4096), deflate: true }]), 1024), { instanceOf: ZipError, message: /more than 1 KB/ });
  t.throws(() => readZip(Buffer.from('not a zip at all, not even close to one'), 1024), { instanceOf: ZipError });
  const parsed = parse({ language_id: 71, source_code: 'import helper', additional_files: zipOf([{ name: 'helper.py', content: Buffer.from('X=1') }, { name: 'main.py', content: Buffer.from('overwritten?') }]).toString('base64') });
  if (!parsed.ok) return t.fail(JSON.stringify(parsed.errors));
  t.deepEqual(parsed.submission.files.map((f) => f.name), ['', 'helper.py']);
  t.deepEqual(errorsOf({ language_id: 71, source_code: 'x', additional_files: Buffer.from('nope').toString('base64') }), { additional_files: ['is not a zip archive (no end of central directory)'] });
  // The engine's own bounds are a 422 at once, not an Internal Error later.
  const oneFile = { ...config, judgeMaxFiles: 1 };
  const tooMany = errorsOf({ language_id: 71, source_code: 'x', additional_files: zipOf([{ name: 'a.py', content: Buffer.from('1') }]).toString('base64') }, { config: oneFile });
  t.regex(tooMany!.additional_files![0]!, /at most 1/);
});

const record = (over: Partial<JobRecord<Judge0Meta>>, meta: Partial<Judge0Meta> = {}): JobRecord<Judge0Meta> => {
  const parsed = parse({ language_id: 71, source_code: 'print(1)', stdin: 'in' });
  if (!parsed.ok) throw new Error('bad fixture');
  return { token: '8531f293-1585-4d36-a34c-73726792e6c9', instance: 'x', state: 'finished', createdAt: 0, seq: 0, finishedAt: 1000, attempts: 1, submission: toWire(parsed.submission), meta: { ...parsed.meta, ...meta }, ...over };
};
const render = (r: JobRecord<Judge0Meta>, base64 = false, fields = DEFAULT_FIELDS) => renderSubmission(r, { fields, base64, statusIds: 'extended', languages });

test('render: the default answer, as Judge0\'s docs show it', (t) => {
  t.deepEqual(render(record({ result: toWire(accepted('hello, Judge0\n')) })), {
    stdout: 'hello, Judge0\n', time: '0.012', memory: 1234, stderr: null, token: '8531f293-1585-4d36-a34c-73726792e6c9', compile_output: null, message: null, status: { id: 3, description: 'Accepted' },
  });
  t.deepEqual(render(record({ state: 'queued', result: undefined })).status, { id: 1, description: 'In Queue' });
  t.deepEqual(render(record({ state: 'processing' })).status, { id: 2, description: 'Processing' });
  t.deepEqual(render(record({ result: undefined, failure: 'the sandbox failed' })), {
    stdout: null, time: null, memory: null, stderr: null, token: '8531f293-1585-4d36-a34c-73726792e6c9', compile_output: null, message: 'the sandbox failed', status: { id: 13, description: 'Internal Error' },
  });
});

test('render: base64 for text fields (message too); not UTF-8 without it is Judge0\'s error', (t) => {
  const bad = record({ result: toWire(result([run({ verdict: 'runtime_error', exitCode: 1, stdout: Buffer.from([0xfe, 0x0a]) })])) });
  const encoded = render(bad, true);
  t.is(encoded.stdout, '/go=\n');
  t.is(encoded.message, encode64(Buffer.from('Exited with error status 1')));
  t.throws(() => render(bad, false), { instanceOf: NotUtf8 });
  const all = render(bad, true, (parseFields('*') as { fields: Field[] }).fields);
  t.is(all.source_code, encode64(Buffer.from('print(1)')));
  t.is(all.stdin, encode64(Buffer.from('in')));
  t.is(all.exit_code, 1);
  t.is(all.cpu_time_limit, '5.0');
  t.deepEqual(all.language, { id: 71, name: 'Python (3.11.2)' });
  t.is(all.finished_at, new Date(1000).toISOString());
});

test('render: a compile error has compile_output and no run figures; a compile timeout says so', (t) => {
  const failedCompile = { ok: false, cpuTimeMs: 1, wallTimeMs: 1, memoryKB: 1, exitCode: 1, signal: null, stdout: Buffer.from('main.c:1: error'), stderr: Buffer.alloc(0) };
  const out = render(record({ result: toWire(result([], failedCompile)) }));
  t.deepEqual(out, { stdout: null, time: null, memory: null, stderr: null, token: out.token, compile_output: 'main.c:1: error', message: null, status: { id: 6, description: 'Compilation Error' } });
  const timedOut = render(record({ result: toWire(result([], { ...failedCompile, signal: 'SIGKILL', exitCode: null, killedFor: 'wall-time' })) }));
  t.is(timedOut.compile_output, 'Compilation time limit exceeded.');
});

test('render: with test cases the deciding test speaks, time and memory are the largest, and test_results has each', (t) => {
  const tests = [run({ verdict: 'accepted', cpuTimeMs: 50, memoryKB: 900, stdout: Buffer.from('1\n') }), run({ verdict: 'wrong_answer', cpuTimeMs: 10, memoryKB: 2000, stdout: Buffer.from('3\n') }), run({ verdict: 'accepted' })];
  const r = record({ result: toWire(result(tests)) }, { test_cases: 3 });
  const outcome = outcomeOf(r, 'extended');
  t.is(outcome.status.id, 4);
  t.is(outcome.stdout!.toString(), '3\n');
  t.is(outcome.time, '0.05');
  t.is(outcome.memory, 2000);
  const out = renderSubmission(r, { fields: ['status', 'test_results', 'compilations'], base64: false, statusIds: 'extended', languages });
  t.deepEqual((out.test_results as { status: { id: number } }[]).map((x) => x.status.id), [3, 4, 3]);
  t.is(out.compilations, 0);
});

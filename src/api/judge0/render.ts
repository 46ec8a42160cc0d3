/**
 * A stored submission as Judge0 renders it (app/serializers/submission_serializer.rb):
 * - attributes in Judge0's column order; `fields` picks some (`*` = all), 8 by default;
 * - text attributes (source_code, stdin, expected_output, stdout, stderr, compile_output, and message) are
 *   raw text, or with base64_encoded=true Ruby's Base64.encode64 of their bytes (lines of 60 characters,
 *   each ending in "\n", as Judge0 sends them); raw text that is not valid UTF-8 cannot be sent in JSON,
 *   and the whole answer is then Judge0's 400 "use base64_encoded=true" (NotUtf8);
 * - an empty output is null; time and wall_time are seconds as decimal strings ("0.045"), memory is KB.
 *
 * Beyond Judge0: `test_results` (one entry per test case, same encoding), `compilations` (how many times
 * the program was compiled: 1 whatever the number of tests) and `started_at`; a submission that gave
 * test_cases has the first two in its default fields.
 */
import { isUtf8 } from 'node:buffer';
import { decodeResult, decodeSubmission, type JobRecord } from '../../judge/submission-queue.js';
import type { JudgeResult, TestResult } from '../../judge/model.js';
import type { Judge0Language } from './languages.js';
import { COMPILATION_ERROR, IN_QUEUE, INTERNAL_ERROR, messageOf, PROCESSING, signalNumber, statusOf, type Judge0Status, type StatusIds } from './statuses.js';
import type { Judge0Meta } from './submission.js';

/** Judge0 v1.13's submission columns (db/schema.rb) plus status and language, in its order; then ours. */
export const AVAILABLE_FIELDS = [
  'source_code', 'language_id', 'stdin', 'expected_output', 'stdout', 'status_id', 'created_at', 'finished_at', 'time',
  'memory', 'stderr', 'token', 'number_of_runs', 'cpu_time_limit', 'cpu_extra_time', 'wall_time_limit', 'memory_limit',
  'stack_limit', 'max_processes_and_or_threads', 'enable_per_process_and_thread_time_limit',
  'enable_per_process_and_thread_memory_limit', 'max_file_size', 'compile_output', 'exit_code', 'exit_signal', 'message',
  'wall_time', 'compiler_options', 'command_line_arguments', 'redirect_stderr_to_stdout', 'callback_url',
  'additional_files', 'enable_network', 'status', 'language', 'started_at', 'test_results', 'compilations',
] as const;
export type Field = (typeof AVAILABLE_FIELDS)[number];

export const DEFAULT_FIELDS: readonly Field[] = ['token', 'time', 'memory', 'stdout', 'stderr', 'compile_output', 'message', 'status'];

const MAX_FIELDS_PARAM = 2000;

/** Judge0's message when a text attribute is not valid UTF-8 and base64_encoded is not true. */
export class NotUtf8 extends Error {}

/**
 * `?fields=` as Judge0 reads it: comma-separated, `*` = all, empty = the defaults; unknown names are an
 * error listing them. Returns the fields, or the invalid ones.
 */
export function parseFields(raw: string | undefined): { fields: Field[] } | { invalid: string[] } {
  const text = (raw ?? '').slice(0, MAX_FIELDS_PARAM);
  const asked = text.split(',').filter((name) => name !== '');
  const invalid = asked.filter((name) => name !== '*' && !(AVAILABLE_FIELDS as readonly string[]).includes(name));
  if (invalid.length) return { invalid: [...new Set(invalid)].slice(0, 50) };
  if (asked.includes('*')) return { fields: [...AVAILABLE_FIELDS] };
  const set = new Set(asked as Field[]);
  return { fields: set.size ? AVAILABLE_FIELDS.filter((f) => set.has(f)) : [...DEFAULT_FIELDS] };
}

/** Ruby's Base64.encode64: lines of 60 characters, each followed by a newline. */
export function encode64(bytes: Buffer): string {
  const flat = bytes.toString('base64');
  let out = '';
  for (let at = 0; at < flat.length; at += 60) out += `${flat.slice(at, at + 60)}\n`;
  return out;
}

/** Decimal seconds as Rails renders a decimal column: "0.045", "1.0". */
export function seconds(ms: number | null | undefined): string | null {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return null;
  const text = String(Math.round(ms) / 1000);
  return text.includes('.') ? text : `${text}.0`;
}

const nonEmpty = (bytes: Buffer | undefined): Buffer | null => (bytes && bytes.length > 0 ? bytes : null);

/** The figures and texts of one test's run, before encoding. */
interface TestOutcome {
  status: Judge0Status;
  stdout: Buffer | null;
  stderr: Buffer | null;
  message: string | null;
  exit_code: number | null;
  exit_signal: number | null;
  time: string | null;
  wall_time: string | null;
  memory: number | null;
}

/** The figures and texts of one finished submission, before encoding. */
interface Outcome extends TestOutcome {
  compile_output: Buffer | null;
  tests: TestOutcome[];
  compilations: number | null;
}

function testOutcome(test: TestResult, mode: StatusIds): TestOutcome {
  return {
    status: statusOf(test, mode),
    stdout: nonEmpty(test.stdout),
    stderr: nonEmpty(test.stderr),
    message: messageOf(test),
    // Judge0 reads isolate's exitcode, absent after a signal: 0.
    exit_code: test.exitCode ?? 0,
    exit_signal: signalNumber(test.signal),
    time: seconds(test.cpuTimeMs),
    wall_time: seconds(test.wallTimeMs),
    memory: Number.isFinite(test.memoryKB) ? Math.trunc(test.memoryKB) : null,
  };
}

function compileOutput(result: JudgeResult): Buffer | null {
  const compile = result.compile;
  if (!compile) return null;
  if (!compile.ok && (compile.killedFor === 'cpu-time' || compile.killedFor === 'wall-time')) return Buffer.from('Compilation time limit exceeded.');
  return nonEmpty(Buffer.concat([compile.stdout ?? Buffer.alloc(0), compile.stderr ?? Buffer.alloc(0)]));
}

const EMPTY: Omit<Outcome, 'status' | 'message' | 'compile_output' | 'compilations'> = {
  stdout: null, stderr: null, exit_code: null, exit_signal: null, time: null, wall_time: null, memory: null, tests: [],
};

export function outcomeOf(record: JobRecord<Judge0Meta>, mode: StatusIds): Outcome {
  if (record.state === 'queued') return { ...EMPTY, status: IN_QUEUE, message: null, compile_output: null, compilations: null };
  if (record.state === 'processing') return { ...EMPTY, status: PROCESSING, message: null, compile_output: null, compilations: null };
  const result = decodeResult(record);
  if (!result) return { ...EMPTY, status: INTERNAL_ERROR, message: record.failure ?? 'internal error', compile_output: null, compilations: null };
  const compile_output = compileOutput(result);
  if (result.verdict === 'compilation_error' || (result.compile && !result.compile.ok)) {
    return { ...EMPTY, status: COMPILATION_ERROR, message: null, compile_output, compilations: result.compilations };
  }
  const tests = result.tests.map((test) => testOutcome(test, mode));
  if (tests.length === 0) return { ...EMPTY, status: INTERNAL_ERROR, message: 'the judge returned no test result', compile_output, compilations: result.compilations };
  // The run that decided the verdict speaks for the submission; time and memory are the largest of all.
  const decidingAt = result.tests.findIndex((test) => test.verdict !== 'accepted');
  const deciding = tests[decidingAt < 0 ? tests.length - 1 : decidingAt]!;
  const max = (pick: (t: TestResult) => number) => Math.max(...result.tests.map(pick));
  return {
    ...deciding,
    time: seconds(max((t) => t.cpuTimeMs)),
    wall_time: seconds(max((t) => t.wallTimeMs)),
    memory: Math.trunc(max((t) => t.memoryKB)),
    compile_output,
    tests,
    compilations: result.compilations,
  };
}

export interface RenderOptions {
  fields: readonly Field[];
  base64: boolean;
  statusIds: StatusIds;
  /** For `language`: the languages by Judge0 id. */
  languages: Judge0Language[];
}

function text(bytes: Buffer | null | undefined, base64: boolean): string | null {
  if (!bytes) return null;
  if (base64) return encode64(bytes);
  if (!isUtf8(bytes)) throw new NotUtf8();
  return bytes.toString('utf8');
}

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());
const decimal = (value: number): string => seconds(value * 1000)!;

/** One submission in Judge0's shape. Throws NotUtf8 (see above). */
export function renderSubmission(record: JobRecord<Judge0Meta>, options: RenderOptions): Record<string, unknown> {
  const { base64 } = options;
  const meta = record.meta;
  const wanted = new Set(options.fields);
  const needsSubmission = wanted.has('source_code') || wanted.has('stdin') || wanted.has('expected_output');
  const submission = needsSubmission ? decodeSubmission(record) : undefined;
  const single = meta.test_cases === 0 ? submission?.tests[0] : undefined;
  const outcome = outcomeOf(record, options.statusIds);
  const language = options.languages.find((l) => l.id === meta.language_id);
  const value = (field: Field): unknown => {
    switch (field) {
      case 'source_code': return text(submission?.files[0]?.content, base64);
      case 'language_id': return meta.language_id;
      case 'stdin': return text(nonEmpty(single?.stdin), base64);
      case 'expected_output': return text(single?.expectedOutput ?? null, base64);
      case 'stdout': return text(outcome.stdout, base64);
      case 'status_id': return outcome.status.id;
      case 'created_at': return iso(record.createdAt);
      case 'finished_at': return record.state === 'finished' ? iso(record.finishedAt) : null;
      case 'time': return outcome.time;
      case 'memory': return outcome.memory;
      case 'stderr': return text(outcome.stderr, base64);
      case 'token': return record.token;
      case 'number_of_runs': return meta.number_of_runs;
      case 'cpu_time_limit': return decimal(meta.cpu_time_limit);
      case 'cpu_extra_time': return decimal(meta.cpu_extra_time);
      case 'wall_time_limit': return decimal(meta.wall_time_limit);
      case 'memory_limit': return meta.memory_limit;
      case 'stack_limit': return meta.stack_limit;
      case 'max_processes_and_or_threads': return meta.max_processes_and_or_threads;
      case 'enable_per_process_and_thread_time_limit': return meta.enable_per_process_and_thread_time_limit;
      case 'enable_per_process_and_thread_memory_limit': return meta.enable_per_process_and_thread_memory_limit;
      case 'max_file_size': return meta.max_file_size;
      case 'compile_output': return text(outcome.compile_output, base64);
      case 'exit_code': return outcome.exit_code;
      case 'exit_signal': return outcome.exit_signal;
      case 'message': return outcome.message === null ? null : base64 ? encode64(Buffer.from(outcome.message)) : outcome.message;
      case 'wall_time': return outcome.wall_time;
      case 'compiler_options': return meta.compiler_options;
      case 'command_line_arguments': return meta.command_line_arguments;
      case 'redirect_stderr_to_stdout': return meta.redirect_stderr_to_stdout;
      case 'callback_url': return meta.callback_url;
      case 'additional_files': return meta.additional_files === null ? null : encode64(Buffer.from(meta.additional_files, 'base64'));
      case 'enable_network': return meta.enable_network;
      case 'status': return { id: outcome.status.id, description: outcome.status.description };
      case 'language': return language ? { id: language.id, name: language.name } : { id: meta.language_id, name: null };
      case 'started_at': return iso(record.startedAt);
      case 'test_results': return outcome.tests.map((test) => renderTest(test, base64));
      case 'compilations': return outcome.compilations;
    }
  };
  const out: Record<string, unknown> = {};
  for (const field of AVAILABLE_FIELDS) {
    if (!wanted.has(field)) continue;
    const v = value(field);
    if (v !== undefined) out[field] = v;
  }
  return out;
}

function renderTest(test: TestOutcome, base64: boolean): Record<string, unknown> {
  return {
    stdout: text(test.stdout, base64),
    stderr: text(test.stderr, base64),
    message: test.message === null ? null : base64 ? encode64(Buffer.from(test.message)) : test.message,
    exit_code: test.exit_code,
    exit_signal: test.exit_signal,
    status: { id: test.status.id, description: test.status.description },
    time: test.time,
    wall_time: test.wall_time,
    memory: test.memory,
  };
}

/**
 * The fields to render: as asked; by default, for a submission that gave test_cases, also its
 * test_results and compilations (what such a client came for).
 */
export function fieldsFor(record: JobRecord<Judge0Meta>, fields: readonly Field[], askedExplicitly: boolean): Field[] {
  if (askedExplicitly || record.meta.test_cases === 0) return [...fields];
  return AVAILABLE_FIELDS.filter((f) => fields.includes(f) || f === 'test_results' || f === 'compilations');
}

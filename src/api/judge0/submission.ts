/**
 * A Judge0 submission request (the fields of docs/api/submissions, checked as app/models/submission.rb
 * checks them) into the engine's Submission and the fields Judge0 renders back. Every problem is
 * collected per field with Judge0's (Rails') words, so a client reads the same 422 body it read from
 * Judge0: `{"wall_time_limit": ["must be less than or equal to 20"]}`.
 *
 * Values are taken as Rails takes them: numbers may come as numeric strings ("language_id": "4"), booleans
 * as "true"/"false"/"1"/"0"; null is absent. Fields Judge0 does not know are ignored, as its `permit` does.
 *
 * Beyond Judge0: `test_cases: [{stdin, expected_output}]` runs the one compiled program once per case.
 */
import type { Config, RunLimitName } from '../../config/index.js';
import { resolveRunLimits } from '../../judge/limits.js';
import { checkSubmission } from '../../judge/submission-check.js';
import { DomainError } from '../../errors.js';
import type { RunLimits, SourceFile, Submission, TestCase } from '../../judge/model.js';
import { callbackUrlProblem, type CallbackTargets } from '../../judge/callbacks.js';
import { readZip, ZipError } from '../../judge/zip.js';
import type { Judge0Language } from './languages.js';

/** What Judge0 renders back besides the results: the request's fields with their defaults filled in. */
export interface Judge0Meta {
  language_id: number;
  compiler_options: string | null;
  command_line_arguments: string | null;
  number_of_runs: number;
  cpu_time_limit: number;
  cpu_extra_time: number;
  wall_time_limit: number;
  memory_limit: number;
  stack_limit: number;
  max_processes_and_or_threads: number;
  enable_per_process_and_thread_time_limit: boolean;
  enable_per_process_and_thread_memory_limit: boolean;
  max_file_size: number;
  redirect_stderr_to_stdout: boolean;
  enable_network: boolean;
  callback_url: string | null;
  /** The zip as the client sent it, Base64. */
  additional_files: string | null;
  /** How many test cases came in `test_cases` (0: Judge0's single stdin/expected_output). */
  test_cases: number;
}

export type RequestConfig = Pick<
  Config,
  | 'judgeLimits'
  | 'judgeLimitCaps'
  | 'judgeCompileLimits'
  | 'judgeCompileLimitCaps'
  | 'judgeMaxRunsPerTest'
  | 'judgeMaxTests'
  | 'judgeMaxFiles'
  | 'judgeMaxBytes'
  | 'judge0EnableCallbacks'
  | 'judge0EnableAdditionalFiles'
  | 'judge0MaxExtractSizeKB'
>;

export interface ParseContext {
  base64: boolean;
  config: RequestConfig;
  languages: Judge0Language[];
  callbackTargets: CallbackTargets;
}

export type Parsed = { ok: true; submission: Submission; meta: Judge0Meta } | { ok: false; errors: Record<string, string[]> };

/** Judge0's limit fields, their unit (seconds are ms here), and the RunLimits name they set. */
const LIMIT_FIELDS = [
  { field: 'cpu_time_limit', limit: 'cpuTimeMs', seconds: true, min: 0, exclusiveMin: true },
  { field: 'cpu_extra_time', limit: 'extraCpuTimeMs', seconds: true, min: 0 },
  { field: 'wall_time_limit', limit: 'wallTimeMs', seconds: true, min: 1 },
  { field: 'memory_limit', limit: 'memoryKB', seconds: false, min: 2048 },
  { field: 'stack_limit', limit: 'stackKB', seconds: false, min: 0 },
  { field: 'max_processes_and_or_threads', limit: 'maxProcesses', seconds: false, min: 0, exclusiveMin: true, integer: true },
  { field: 'max_file_size', limit: 'maxFileSizeKB', seconds: false, min: 0, integer: true },
] as const satisfies readonly { field: string; limit: RunLimitName; seconds: boolean; min: number; exclusiveMin?: boolean; integer?: boolean }[];

export const LIMIT_FIELD_OF: Partial<Record<RunLimitName, string>> = Object.fromEntries(LIMIT_FIELDS.map((f) => [f.limit, f.field]));

/** A RunLimits value in the unit of its Judge0 field (seconds or KB). */
export function judge0Value(name: RunLimitName, value: number): number {
  const spec = LIMIT_FIELDS.find((f) => f.limit === name);
  return spec?.seconds ? value / 1000 : value;
}

const MAX_TEXT_FIELD = 512;
const BASE64 = /^[A-Za-z0-9+/\s]*={0,2}\s*$/;

class Problems {
  readonly byField: Record<string, string[]> = {};
  add(field: string, message: string): void {
    (this.byField[field] ??= []).push(message);
  }
  get any(): boolean {
    return Object.keys(this.byField).length > 0;
  }
}

function isBlank(value: unknown): boolean {
  return value === undefined || value === null || (typeof value === 'string' && value.trim() === '');
}

/** A number as Rails' numericality reads it; undefined when absent, NaN when not a number. */
function numberOf(value: unknown): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(value)) return Number(value);
  return NaN;
}

function booleanOf(value: unknown, field: string, problems: Problems): boolean | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (value === true || value === false) return value;
  if (value === 1 || value === '1' || value === 'true' || value === 't') return true;
  if (value === 0 || value === '0' || value === 'false' || value === 'f') return false;
  problems.add(field, 'must be true or false');
  return undefined;
}

function stringOf(value: unknown, field: string, problems: Problems): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  problems.add(field, 'must be a string');
  return undefined;
}

/** Program text: a JSON string, or Base64 of its bytes with ?base64_encoded=true. */
function textOf(value: unknown, field: string, base64: boolean, problems: Problems): Buffer | undefined {
  const text = stringOf(value, field, problems);
  if (text === undefined) return undefined;
  if (!base64) return Buffer.from(text, 'utf8');
  if (!BASE64.test(text)) {
    problems.add(field, 'is not valid Base64 (with base64_encoded=true every text field must be Base64 encoded)');
    return undefined;
  }
  return Buffer.from(text, 'base64');
}

/**
 * Command-line arguments as a shell would split them: whitespace separates, quotes group, a backslash
 * escapes. Judge0 hands them to bash after removing `$&;<>|\``; here nothing is ever interpreted by a
 * shell, so those characters are plain text.
 */
export function splitArguments(line: string): string[] | undefined {
  const args: string[] = [];
  let current = '';
  let inArg = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quote === "'") {
      if (ch === "'") quote = undefined;
      else current += ch;
    } else if (quote === '"') {
      if (ch === '"') quote = undefined;
      else if (ch === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1]!)) current += line[++i];
      else current += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inArg = true;
    } else if (ch === '\\' && i + 1 < line.length) {
      current += line[++i];
      inArg = true;
    } else if (/\s/.test(ch)) {
      if (inArg) args.push(current);
      current = '';
      inArg = false;
    } else {
      current += ch;
      inArg = true;
    }
  }
  if (quote) return undefined;
  if (inArg) args.push(current);
  return args;
}

export function parseSubmission(body: unknown, context: ParseContext): Parsed {
  const problems = new Problems();
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return { ok: false, errors: { submission: ['must be a JSON object'] } };
  }
  const input = body as Record<string, unknown>;
  const { config, base64 } = context;

  // language_id
  let language: Judge0Language | undefined;
  const languageId = numberOf(input.language_id);
  if (isBlank(input.language_id)) problems.add('language_id', "can't be blank");
  else {
    language = Number.isInteger(languageId) ? context.languages.find((l) => l.id === languageId) : undefined;
    if (!language) problems.add('language_id', `language with id ${String(input.language_id).slice(0, 40)} doesn't exist`);
  }

  // source_code, stdin, expected_output
  const source = textOf(input.source_code, 'source_code', base64, problems);
  if (!problems.byField.source_code && (source === undefined || source.toString('utf8').trim() === '')) problems.add('source_code', "can't be blank");
  const stdin = textOf(input.stdin, 'stdin', base64, problems);
  const expected = textOf(input.expected_output, 'expected_output', base64, problems);

  // compiler_options, command_line_arguments
  const compilerOptions = stringOf(input.compiler_options, 'compiler_options', problems);
  if (compilerOptions !== undefined && compilerOptions.length > MAX_TEXT_FIELD) problems.add('compiler_options', `is too long (maximum is ${MAX_TEXT_FIELD} characters)`);
  else if (compilerOptions && compilerOptions.trim() !== '' && language && language.compile_cmd === null) {
    problems.add('compiler_options', 'setting compiler options is only allowed for compiled languages');
  }
  const commandLine = stringOf(input.command_line_arguments, 'command_line_arguments', problems);
  let args: string[] | undefined;
  if (commandLine !== undefined && commandLine.length > MAX_TEXT_FIELD) problems.add('command_line_arguments', `is too long (maximum is ${MAX_TEXT_FIELD} characters)`);
  else if (commandLine !== undefined) {
    args = splitArguments(commandLine);
    if (!args) problems.add('command_line_arguments', 'has an unclosed quote');
  }

  // number_of_runs
  const runs = numberOf(input.number_of_runs);
  if (runs !== undefined) {
    if (Number.isNaN(runs)) problems.add('number_of_runs', 'is not a number');
    else if (!Number.isInteger(runs)) problems.add('number_of_runs', 'must be an integer');
    else if (runs <= 0) problems.add('number_of_runs', 'must be greater than 0');
    else if (runs > config.judgeMaxRunsPerTest) problems.add('number_of_runs', `must be less than or equal to ${config.judgeMaxRunsPerTest}`);
  }

  // The limits: Judge0's bounds below, this server's caps above (src/judge/limits.ts applies the defaults).
  const requested: Partial<RunLimits> = {};
  for (const spec of LIMIT_FIELDS) {
    const value = numberOf(input[spec.field]);
    if (value === undefined) continue;
    const cap = judge0Value(spec.limit, config.judgeLimitCaps[spec.limit]);
    if (Number.isNaN(value)) problems.add(spec.field, 'is not a number');
    else if ('integer' in spec && spec.integer && !Number.isInteger(value)) problems.add(spec.field, 'must be an integer');
    else if ('exclusiveMin' in spec && spec.exclusiveMin && value <= spec.min) problems.add(spec.field, `must be greater than ${spec.min}`);
    else if (value < spec.min) problems.add(spec.field, `must be greater than or equal to ${spec.min}`);
    else if (value > cap) problems.add(spec.field, `must be less than or equal to ${cap}`);
    else requested[spec.limit] = Math.round(spec.seconds ? value * 1000 : value);
  }
  for (const field of ['enable_per_process_and_thread_time_limit', 'enable_per_process_and_thread_memory_limit'] as const) {
    // The engine limits the program's whole process tree (cgroup), never one process or thread.
    if (booleanOf(input[field], field, problems) === true) problems.add(field, 'this option cannot be enabled');
  }
  const stderrToStdout = booleanOf(input.redirect_stderr_to_stdout, 'redirect_stderr_to_stdout', problems) ?? false;
  if (booleanOf(input.enable_network, 'enable_network', problems) === true) {
    problems.add('enable_network', 'enabling network is not allowed (sandboxes here have no network)');
  }

  // callback_url
  const callbackUrl = stringOf(input.callback_url, 'callback_url', problems);
  if (callbackUrl !== undefined && callbackUrl.trim() !== '') {
    if (!config.judge0EnableCallbacks) problems.add('callback_url', 'setting callback is not allowed');
    else {
      const problem = callbackUrlProblem(callbackUrl, context.callbackTargets);
      if (problem) problems.add('callback_url', problem);
    }
  }

  // additional_files: always Base64 (of a zip), whatever base64_encoded says.
  const additional = stringOf(input.additional_files, 'additional_files', problems);
  let extraFiles: SourceFile[] = [];
  if (additional !== undefined && additional.trim() !== '') {
    if (!config.judge0EnableAdditionalFiles) problems.add('additional_files', 'setting additional files is not allowed');
    else if (!BASE64.test(additional)) problems.add('additional_files', 'must be the Base64 encoded content of a .zip archive');
    else {
      try {
        extraFiles = readZip(Buffer.from(additional, 'base64'), config.judge0MaxExtractSizeKB * 1024);
        // As Judge0's `unzip -n`: the submission's own source file is never replaced by the archive.
        if (language) extraFiles = extraFiles.filter((file) => file.name !== language!.source_file);
      } catch (error) {
        if (!(error instanceof ZipError)) throw error;
        problems.add('additional_files', error.message);
      }
    }
  }

  // test_cases (beyond Judge0)
  let tests: TestCase[] = [];
  const testCases = input.test_cases;
  if (testCases !== undefined && testCases !== null) {
    if (!Array.isArray(testCases)) problems.add('test_cases', 'must be an array of {stdin, expected_output}');
    else if (testCases.length === 0) problems.add('test_cases', "can't be empty");
    else if (testCases.length > config.judgeMaxTests) problems.add('test_cases', `has too many items (at most ${config.judgeMaxTests})`);
    else if (input.stdin !== undefined && input.stdin !== null || input.expected_output !== undefined && input.expected_output !== null) {
      problems.add('test_cases', 'cannot be given with stdin or expected_output: put them in the test cases');
    } else {
      testCases.forEach((item, i) => {
        const where = `test_cases[${i}]`;
        if (item === null || typeof item !== 'object' || Array.isArray(item)) {
          problems.add(where, 'must be an object {stdin, expected_output}');
          return;
        }
        const fields = item as Record<string, unknown>;
        const unknown = Object.keys(fields).filter((k) => k !== 'stdin' && k !== 'expected_output');
        if (unknown.length) problems.add(where, `has unknown field ${unknown.map((k) => `"${k.slice(0, 40)}"`).join(', ')}; expected stdin, expected_output`);
        const caseStdin = textOf(fields.stdin, `${where}.stdin`, base64, problems);
        const caseExpected = textOf(fields.expected_output, `${where}.expected_output`, base64, problems);
        tests.push({ stdin: caseStdin ?? Buffer.alloc(0), ...(caseExpected !== undefined ? { expectedOutput: caseExpected } : {}) });
      });
    }
  }
  if (tests.length === 0) tests = [{ stdin: stdin ?? Buffer.alloc(0), ...(expected !== undefined ? { expectedOutput: expected } : {}) }];

  if (problems.any || !language || !source) return { ok: false, errors: problems.byField };

  const limits = resolveRunLimits(config, 'run', requested);
  const submission: Submission = {
    lang: language.lang.name,
    files: [{ name: '', content: source }, ...extraFiles],
    ...(compilerOptions && compilerOptions.trim() !== '' ? { compilerOptions: compilerOptions.trim() } : {}),
    ...(args && args.length ? { args } : {}),
    limits,
    compileLimits: resolveRunLimits(config, 'compile'),
    tests,
    comparison: 'lines',
    stderrToStdout,
    runsPerTest: runs ?? 1,
  };
  // The engine's own bounds (files, names, bytes), checked now so that a client reads a 422 instead of
  // finding an Internal Error later.
  try {
    checkSubmission(submission, config);
  } catch (error) {
    if (!(error instanceof DomainError)) throw error;
    return { ok: false, errors: { [extraFiles.length ? 'additional_files' : 'source_code']: [error.message] } };
  }
  const meta: Judge0Meta = {
    language_id: language.id,
    compiler_options: compilerOptions ?? null,
    command_line_arguments: commandLine ?? null,
    number_of_runs: runs ?? 1,
    cpu_time_limit: judge0Value('cpuTimeMs', limits.cpuTimeMs),
    cpu_extra_time: judge0Value('extraCpuTimeMs', limits.extraCpuTimeMs),
    wall_time_limit: judge0Value('wallTimeMs', limits.wallTimeMs),
    memory_limit: limits.memoryKB,
    stack_limit: limits.stackKB,
    max_processes_and_or_threads: limits.maxProcesses,
    enable_per_process_and_thread_time_limit: false,
    enable_per_process_and_thread_memory_limit: false,
    max_file_size: limits.maxFileSizeKB,
    redirect_stderr_to_stdout: stderrToStdout,
    enable_network: false,
    callback_url: callbackUrl && callbackUrl.trim() !== '' ? callbackUrl : null,
    additional_files: additional && additional.trim() !== '' ? additional.replace(/\s+/g, '') : null,
    test_cases: Array.isArray(testCases) ? tests.length : 0,
  };
  return { ok: true, submission, meta };
}

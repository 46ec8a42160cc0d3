/**
 * Piston's job request (the body of POST /api/v2/execute and of the /connect `init` message), checked in
 * Piston's order and refused with Piston's messages (api/src/api/v2.js get_job), then turned into the
 * engine's submission: files decoded, the main file first, the stdin newline Piston adds, and the limits
 * in Piston's units (ms, bytes) filled in from the server's defaults and held to its caps.
 *
 * Where Piston answers a bad value with a 500 or an empty `{}` (a non-string stdin, a file path escaping
 * the job directory), this answers a 400 that says what to fix.
 */
import path from 'node:path';
import type { Config, RunLimitName } from '../../config/index.js';
import { invalidInput } from '../../errors.js';
import { resolveRunLimits, type LimitKind } from '../../judge/limits.js';
import type { RunLimits, SourceFile, Submission } from '../../judge/model.js';
import { matchRuntime, type PistonRuntime } from './runtimes.js';

export type LimitConfig = Pick<Config, 'judgeLimits' | 'judgeLimitCaps' | 'judgeCompileLimits' | 'judgeCompileLimitCaps'>;

/** A request that passed every check: what the engine runs, and the runtime it matched. */
export interface PistonJob {
  runtime: PistonRuntime;
  submission: Omit<Submission, 'tests' | 'comparison' | 'checker'>;
  /** What the program reads, with the trailing newline Piston adds (unused by /connect). */
  stdin: Buffer;
}

type Encoding = 'utf8' | 'base64' | 'hex';
const ENCODINGS: readonly string[] = ['utf8', 'base64', 'hex'];

/** The limits a Piston request may set, with the engine's name of each and Piston's unit. */
const LIMIT_FIELDS = [
  { constraint: 'timeout', limit: 'wallTimeMs', unit: 'ms' },
  { constraint: 'cpu_time', limit: 'cpuTimeMs', unit: 'ms' },
  { constraint: 'memory_limit', limit: 'memoryKB', unit: 'bytes' },
] as const;

const fieldOf = (kind: LimitKind, constraint: string) => `${kind}_${constraint}`;

/** The engine's value of a Piston limit: bytes are whole KB, rounded up so a limit is never lowered. */
const toEngine = (unit: 'ms' | 'bytes', value: number) => (unit === 'bytes' ? Math.ceil(value / 1024) : Math.ceil(value));
const toPiston = (unit: 'ms' | 'bytes', value: number) => (unit === 'bytes' ? value * 1024 : value);

/** Names and version ranges are short; a long range would cost semver seconds of CPU to read. */
const MAX_NAME_LENGTH = 256;

function checkedString(body: Record<string, unknown>, name: string): string {
  const value = body[name];
  if (!value || typeof value !== 'string') throw invalidInput(`${name} is required as a string`);
  if (value.length > MAX_NAME_LENGTH) throw invalidInput(`${name} must be at most ${MAX_NAME_LENGTH} characters`);
  return value;
}

function decode(content: string, encoding: Encoding, where: string): Buffer {
  if (encoding === 'base64') {
    const compact = content.replace(/\s+/g, '');
    // Buffer.from skips what is not base64: a mangled upload would run as a silently different file.
    if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(compact) || compact.length % 4 === 1) throw invalidInput(`${where}.content is not valid base64`);
    return Buffer.from(compact, 'base64');
  }
  if (encoding === 'hex') {
    if (!/^(?:[0-9a-fA-F]{2})*$/.test(content)) throw invalidInput(`${where}.content is not valid hex (pairs of hex digits)`);
    return Buffer.from(content, 'hex');
  }
  return Buffer.from(content, 'utf8');
}

/** A file name as Piston places it: joined under the job directory, refused when it leaves it. */
function fileName(raw: unknown, index: number, main: boolean): string {
  if (raw === undefined || raw === null || raw === '') return main ? '' : `file${index}.code`;
  if (typeof raw !== 'string') throw invalidInput(`files[${index}].name must be a string`);
  if (raw.includes('\0')) throw invalidInput(`files[${index}].name must not contain a NUL character`);
  const relative = path.posix.relative('/submission', path.posix.join('/submission', raw));
  if (relative.startsWith('..')) throw invalidInput(`File path "${raw.slice(0, 200)}" tries to escape parent directory: ${relative.slice(0, 200)}`);
  if (relative === '') throw invalidInput(`files[${index}].name must name a file, got "${raw.slice(0, 200)}"`);
  return relative;
}

function readFiles(raw: unknown[]): { files: SourceFile[]; anyUtf8: boolean } {
  const entries = raw.map((file, index) => {
    const entry = (file !== null && typeof file === 'object' ? file : {}) as Record<string, unknown>;
    if (typeof entry.content !== 'string') throw invalidInput(`files[${index}].content is required as a string`);
    // Piston counts a file as source when it names no encoding or utf8, and decodes any other name as utf8.
    const declared = entry.encoding;
    const utf8 = !declared || declared === 'utf8';
    const encoding = (typeof declared === 'string' && ENCODINGS.includes(declared) ? declared : 'utf8') as Encoding;
    return { entry, index, utf8, encoding };
  });
  // The first source file is the one Piston runs; it goes first, the others keep their order.
  const mainIndex = entries.findIndex((file) => file.encoding === 'utf8');
  const ordered = mainIndex <= 0 ? entries : [entries[mainIndex]!, ...entries.filter((_, i) => i !== mainIndex)];
  const files = ordered.map(({ entry, index, encoding }) => ({
    name: fileName(entry.name, index, index === mainIndex),
    content: decode(entry.content as string, encoding, `files[${index}]`),
  }));
  return { files, anyUtf8: entries.some((file) => file.utf8) };
}

function readLimits(body: Record<string, unknown>, kind: LimitKind, config: LimitConfig): RunLimits {
  // Piston runs with isolate's --extra-time=0: a run is killed at its CPU limit.
  const requested: Partial<RunLimits> = { extraCpuTimeMs: 0 };
  const asSent = new Map<RunLimitName, number>();
  const caps = kind === 'run' ? config.judgeLimitCaps : config.judgeCompileLimitCaps;
  for (const { constraint, limit, unit } of LIMIT_FIELDS) {
    const field = fieldOf(kind, constraint);
    const value = body[field];
    // Piston: 0, null and an absent field all mean the default.
    if (!value) continue;
    if (typeof value !== 'number') throw invalidInput(`If specified, ${field} must be a number`);
    if (value < 0) {
      // -1 is Piston's "no limit" for memory: here, the most this server allows.
      if (unit === 'bytes') {
        requested[limit] = caps[limit];
        continue;
      }
      throw invalidInput(`${field} must be non-negative`);
    }
    requested[limit] = toEngine(unit, value);
    asSent.set(limit, value);
  }
  return resolveRunLimits(config, kind, requested, (name, value) => {
    const known = LIMIT_FIELDS.find((field) => field.limit === name);
    if (!known) return `${kind} ${name} ${value}`;
    const shown = asSent.get(name) !== undefined && toEngine(known.unit, asSent.get(name)!) === value ? asSent.get(name)! : toPiston(known.unit, value);
    return `${fieldOf(kind, known.constraint)} ${shown} ${known.unit}`;
  });
}

/** A command line has room for this many; the sandbox refuses a run with more. */
const MAX_ARGS = 1024;

function readArgs(raw: unknown): string[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw) || raw.some((arg) => typeof arg !== 'string' || arg.includes('\0'))) throw invalidInput('args must be an array of strings (without NUL)');
  if (raw.length > MAX_ARGS) throw invalidInput(`args has ${raw.length} items; at most ${MAX_ARGS}`);
  return raw as string[];
}

function readStdin(raw: unknown): Buffer {
  if (raw === undefined || raw === null) return Buffer.from('\n');
  if (typeof raw !== 'string') throw invalidInput('stdin must be a string');
  // Piston ends stdin with a newline when it has none, so a last line read with input() is complete.
  return Buffer.from(raw.endsWith('\n') ? raw : `${raw}\n`, 'utf8');
}

/** Checks a Piston job request and builds the submission; throws invalid_input with Piston's messages. */
export function readJob(input: unknown, runtimes: PistonRuntime[], config: LimitConfig): PistonJob {
  const body = (input !== null && typeof input === 'object' && !Array.isArray(input) ? input : {}) as Record<string, unknown>;
  const language = checkedString(body, 'language');
  const version = checkedString(body, 'version');
  if (!Array.isArray(body.files)) throw invalidInput('files is required as an array');
  const { files, anyUtf8 } = readFiles(body.files);
  const runtime = matchRuntime(runtimes, language, version);
  if (!runtime) throw invalidInput(`${language.slice(0, 100)}-${version.slice(0, 100)} runtime is unknown`);
  if (!anyUtf8) throw invalidInput('files must include at least one utf8 encoded file');
  const compileLimits = readLimits(body, 'compile', config);
  const limits = readLimits(body, 'run', config);
  const args = readArgs(body.args);
  const stdin = readStdin(body.stdin);
  return { runtime, stdin, submission: { lang: runtime.lang.name, files, args, limits, compileLimits } };
}

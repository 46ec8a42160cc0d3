/**
 * Piston's runtimes: the engine's languages under the names Piston's clients know (`python`, `c++`,
 * `javascript`, ...), each with a semver version, and the lookup Piston does for a request's `language`
 * and `version` (api/src/runtime.js: a name or alias, a semver range, the latest match wins).
 */
import semver from 'semver';
import type { JudgeLanguage } from '../../judge/model.js';

/** One entry of GET /api/v2/runtimes, with the engine's language it stands for. */
export interface PistonRuntime {
  language: string;
  version: string;
  aliases: string[];
  /** Piston names the runtime only when a language has more than one (javascript on node, say). */
  runtime?: string;
  /** The engine's language (a kernel name): what a submission names. */
  lang: JudgeLanguage;
}

/**
 * Piston's own names and aliases of the languages it shares with this service (its packages/<lang>/
 * metadata.json), keyed by the kernel name. Clients such as piston-client pick a version by the listed
 * `language` exactly, so it must be Piston's name, not the kernel's.
 */
const PISTON_NAMES: Record<string, { language: string; aliases: string[]; runtime?: string }> = {
  python3: { language: 'python', aliases: ['py', 'py3', 'python3'] },
  python: { language: 'python', aliases: ['py', 'py3', 'python3'] },
  c: { language: 'c', aliases: ['gcc'] },
  cpp: { language: 'c++', aliases: ['cpp', 'g++'] },
  java: { language: 'java', aliases: [] },
  javascript: { language: 'javascript', aliases: ['node-javascript', 'node-js', 'js'], runtime: 'node' },
  typescript: { language: 'typescript', aliases: ['ts', 'node-ts', 'tsc'] },
  go: { language: 'go', aliases: ['go', 'golang'] },
  rust: { language: 'rust', aliases: ['rs'] },
  bash: { language: 'bash', aliases: ['sh'] },
  ruby: { language: 'ruby', aliases: ['ruby3', 'rb'] },
  php: { language: 'php', aliases: [] },
  perl: { language: 'perl', aliases: ['pl'] },
  lua: { language: 'lua', aliases: [] },
  r: { language: 'rscript', aliases: ['r'] },
};

/** "gcc 12.2.0" → "12.2.0", "3.11" → "3.11.0": Piston's versions are semver, the images' are free text. */
export function semverOf(version: string): string {
  return semver.coerce(version)?.version ?? '0.0.0';
}

export function pistonRuntimeOf(lang: JudgeLanguage): PistonRuntime {
  const known = PISTON_NAMES[lang.name];
  const language = known?.language ?? lang.name;
  const aliases = [...new Set([...(known?.aliases ?? []), lang.name, ...lang.aliases])].filter((alias) => alias !== language);
  const runtime: PistonRuntime = { language, version: semverOf(lang.version), aliases, lang };
  if (known?.runtime) runtime.runtime = known.runtime;
  return runtime;
}

/** The body of GET /api/v2/runtimes: Piston's fields only. */
export function runtimesBody(runtimes: PistonRuntime[]): Array<Omit<PistonRuntime, 'lang'>> {
  return runtimes.map(({ language, version, aliases, runtime }) => (runtime === undefined ? { language, version, aliases } : { language, version, aliases, runtime }));
}

/**
 * The latest runtime whose name or alias is `language` and whose version satisfies the range `version`
 * ("3.x", "*", "12.2.0"); undefined when none does, as Piston answers "<language>-<version> runtime is
 * unknown". A range semver cannot read matches nothing, as in Piston.
 */
export function matchRuntime(runtimes: PistonRuntime[], language: string, version: string): PistonRuntime | undefined {
  let range: semver.Range;
  try {
    range = new semver.Range(version);
  } catch {
    return undefined;
  }
  return runtimes
    .filter((rt) => (rt.language === language || rt.aliases.includes(language)) && range.test(rt.version))
    .sort((a, b) => semver.rcompare(a.version, b.version))[0];
}

/**
 * The judged languages, from the kernel images: each image says how batch mode compiles and runs
 * `main<ext>` (its build/exec labels), and where a judged run needs something else (a source file named
 * after its class, compiler options before the file names, a runtime's memory cap) it says that in its
 * org.polykernel.judge.* labels. Its version is a file the image writes when it is built
 * (/usr/share/polykernel/version: "<tool> <version>", e.g. "gcc 12.2.0"), read once per build of the image.
 *
 * Commands are shell lines (the image's), run as argv: a line with no shell syntax is split into words,
 * any other is run by `/bin/sh -c` with the client's words (compiler options, arguments) as positional
 * parameters — appended as `"$@"`, or where the line puts `"$@"` — so nothing a client sends is ever part of
 * a shell line.
 */
import { LABELS } from '../runtime/runtime.js';
import type { KernelSpecEntry, KernelSpecRegistry } from '../kernels/kernel-specs.js';
import type { JudgeLanguage } from './model.js';

export const VERSION_FILE = '/usr/share/polykernel/version';

/** Environment of every judged compile and run: what an image's judge lines may read. */
export const ENV_SOURCE = 'POLYKERNEL_SOURCE';
export const ENV_MEMORY_KB = 'POLYKERNEL_MEMORY_KB';

export interface JudgedLanguage extends JudgeLanguage {
  image: string;
  /**
   * True when the image's judge lines read the main file's name from $POLYKERNEL_SOURCE (java: the file
   * must be named after its public class), so a submission's own name for it is kept; otherwise the main
   * file is always written as `sourceFile`, which the image's commands name.
   */
  keepsSourceName: boolean;
}

/** Words a line may consist of to be run without a shell: no quoting, expansion, globbing or operators. */
const PLAIN_LINE = /^[A-Za-z0-9_./:+=,@%-]+( [A-Za-z0-9_./:+=,@%-]+)*$/;

/** The argv that runs an image's command line with the client's words after it (or where it says "$@"). */
export function commandArgv(line: string, words: readonly string[]): string[] {
  const trimmed = line.trim();
  if (PLAIN_LINE.test(trimmed)) return [...trimmed.split(' '), ...words];
  const script = trimmed.includes('"$@"') ? trimmed : `${trimmed} "$@"`;
  // $0 names the shell in its own messages ("sh: 1: ./main: not found").
  return ['/bin/sh', '-c', script, 'sh', ...words];
}

/**
 * Judge0's compiler_options is one string: it is cut into words at white space (Judge0 hands it to bash
 * unquoted, after removing `$&;<>|` and backquotes; here no shell ever sees it, so nothing is removed).
 */
export function splitWords(text: string | undefined): string[] {
  return (text ?? '').split(/\s+/).filter(Boolean);
}

/** "C (gcc, sandboxed)" + "gcc 12.2.0" -> "C (gcc 12.2.0)". */
function displayNameOf(entry: KernelSpecEntry, versionLine: string): string {
  const base = entry.spec.display_name.split(' (')[0] || entry.name;
  return versionLine ? `${base} (${versionLine})` : base;
}

export function judgedLanguage(entry: KernelSpecEntry, versionLine: string): JudgedLanguage | undefined {
  const labels = entry.labels;
  if (labels[LABELS.judgeEnabled] === 'false') return undefined;
  const runCommand = labels[LABELS.judgeExec] || entry.exec;
  if (!runCommand) return undefined;
  const extension = labels[LABELS.fileExtension] ?? '';
  const compileCommand = labels[LABELS.judgeBuild] || entry.build || undefined;
  const words = versionLine.trim().split(/\s+/);
  return {
    name: entry.name,
    displayName: displayNameOf(entry, versionLine.trim()),
    version: words[words.length - 1] || 'unknown',
    aliases: entry.aliases,
    sourceFile: labels[LABELS.judgeSource] || `main${extension}`,
    ...(compileCommand ? { compileCommand } : {}),
    runCommand,
    image: entry.image,
    keepsSourceName: Boolean(labels[LABELS.judgeSource]),
  };
}

/** Reads the judged languages off the kernel images, their versions once per build of each image. */
export class JudgeLanguages {
  constructor(private readonly specs: KernelSpecRegistry) {}

  async list(): Promise<JudgedLanguage[]> {
    const entries = await this.specs.list();
    const languages = await Promise.all(entries.map((entry) => this.fromEntry(entry)));
    return languages.filter((language): language is JudgedLanguage => language !== undefined);
  }

  async resolve(nameOrAlias: string): Promise<JudgedLanguage | undefined> {
    const entry = await this.specs.resolve(nameOrAlias);
    return entry ? this.fromEntry(entry) : undefined;
  }

  private async fromEntry(entry: KernelSpecEntry): Promise<JudgedLanguage | undefined> {
    let versionLine = '';
    try {
      versionLine = (await this.specs.readImageFile(entry, VERSION_FILE))?.toString('utf8').split('\n')[0] ?? '';
    } catch {
      // An image the engine cannot read now is still listed; its version is read again next time.
    }
    return judgedLanguage(entry, versionLine);
  }
}

/**
 * Judge0's language ids (db/languages/active.rb) for the languages this service has, so that a client's
 * `language_id` means what it meant on Judge0. Names, source files and commands are ours: the engine's
 * `languages()` (what the images carry), e.g. "C (gcc 12.2.0)" where Judge0 says "C (GCC 9.2.0)".
 */
import type { JudgeEngine, JudgeLanguage } from '../../judge/model.js';

/** Judge0 id -> our kernel name (or an alias of it). */
export const JUDGE0_LANGUAGE_IDS: readonly (readonly [number, string])[] = [
  [46, 'bash'], // Bash (5.0.0)
  [50, 'c'], // C (GCC 9.2.0)
  [54, 'cpp'], // C++ (GCC 9.2.0)
  [60, 'go'], // Go (1.13.5)
  [62, 'java'], // Java (OpenJDK 13.0.1)
  [63, 'javascript'], // JavaScript (Node.js 12.14.0)
  [64, 'lua'], // Lua (5.3.5)
  [68, 'php'], // PHP (7.4.1)
  [71, 'python3'], // Python (3.8.1)
  [72, 'ruby'], // Ruby (2.7.0)
  [73, 'rust'], // Rust (1.40.0)
  [74, 'typescript'], // TypeScript (3.7.4)
  [80, 'r'], // R (4.0.0)
  [85, 'perl'], // Perl (5.28.1)
];

export interface Judge0Language {
  id: number;
  name: string;
  is_archived: boolean;
  source_file: string;
  compile_cmd: string | null;
  run_cmd: string;
  /** Our language, for the engine. */
  lang: JudgeLanguage;
}

function matches(lang: JudgeLanguage, name: string): boolean {
  return lang.name === name || lang.aliases.includes(name);
}

/** The Judge0 languages the engine has now, sorted by name as Judge0 lists them. */
export function judge0Languages(engineLanguages: JudgeLanguage[]): Judge0Language[] {
  const out: Judge0Language[] = [];
  for (const [id, name] of JUDGE0_LANGUAGE_IDS) {
    const lang = engineLanguages.find((l) => matches(l, name));
    if (!lang) continue;
    out.push({
      id,
      name: lang.displayName,
      is_archived: false,
      source_file: lang.sourceFile,
      compile_cmd: lang.compileCommand ?? null,
      run_cmd: lang.runCommand,
      lang,
    });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** engine.languages(), asked at most every `ttlMs` (images change rarely; every request asks). */
export class LanguageCatalog {
  private cached?: { at: number; languages: Promise<Judge0Language[]> };

  constructor(private readonly engine: Pick<JudgeEngine, 'languages'>, private readonly ttlMs = 10_000, private readonly clock: () => number = Date.now) {}

  list(): Promise<Judge0Language[]> {
    const now = this.clock();
    if (!this.cached || now - this.cached.at > this.ttlMs) {
      const languages = this.engine.languages().then(judge0Languages);
      // A failed look-up is not kept: the next request asks again.
      languages.catch(() => {
        if (this.cached?.languages === languages) this.cached = undefined;
      });
      this.cached = { at: now, languages };
    }
    return this.cached.languages;
  }

  async byId(id: number): Promise<Judge0Language | undefined> {
    return (await this.list()).find((language) => language.id === id);
  }
}

/**
 * What a language needs at start: its executor (by cell model) and its version for kernel_info.
 */
import { capture } from './child.js';
import type { Executor, OutputSink } from './executor.js';
import { JsExecutor } from './executors/js.js';
import { ProgramExecutor } from './executors/program.js';
import { ShellExecutor } from './executors/shell.js';
import { typescriptVersion } from './js/typescript.js';
import type { LanguageSpec } from './languages.js';

/** Defined by the bundler (scripts/build-images.mjs). */
declare const PK_TYPESCRIPT_VERSION: string | undefined;

export function makeExecutor(language: LanguageSpec, output: OutputSink, workDir: string): Executor {
  const options = { workDir, output };
  switch (language.cell.kind) {
    case 'vm':
      return new JsExecutor(options, language.cell.dialect);
    case 'shell':
      return new ShellExecutor(options);
    case 'program':
      return new ProgramExecutor(language, options);
  }
}

/** The language's version: the first dotted number its version command prints. */
export async function probeVersion(language: LanguageSpec): Promise<string> {
  if (language.version === 'node') return process.versions.node;
  if (language.version === 'typescript') {
    // Known at bundle time; loading the compiler just to ask would slow every start.
    return typeof PK_TYPESCRIPT_VERSION === 'string' ? PK_TYPESCRIPT_VERSION : typescriptVersion();
  }
  const timeout = AbortSignal.timeout(10_000);
  const result = await capture(language.version.command, { cwd: process.cwd() }, timeout, 4096);
  return /\d+(?:\.\d+)+/.exec(result.text)?.[0] ?? '';
}

/**
 * The languages the in-container runner serves: one entry per language, pure data. The entry says what
 * kernel_info reports (language_info) and how a cell runs (its cell model). The image of each language
 * (images/<name>/Dockerfile) carries the same facts as labels; test/unit/runner-languages.test.ts keeps
 * the two in step.
 *
 * Cell models:
 * - `vm`: a persistent Node.js process holds one JavaScript realm; every cell runs in it, so globals and
 *   top-level declarations persist (TypeScript cells are transpiled first).
 * - `shell`: one long-lived bash reads the cells; variables, functions and the working directory persist.
 * - `program`: every cell is a complete program, written to a scratch directory, optionally checked
 *   (interpreters: syntax only) or compiled, then run as its own process. Nothing persists between cells.
 *
 * In `program` commands, `{dir}` is the scratch directory relative to the work directory (every command
 * runs with the work directory as its cwd, so a program sees the user's files) and `{file}` / `{stem}` the
 * source file name with and without its extension.
 */
import type { JsonObject } from '../protocol/messages.js';

export interface VersionProbe {
  /** Command printing the version; the first dotted number in its output (stdout + stderr) is taken. */
  command: string[];
}

export interface ProgramModel {
  kind: 'program';
  /** The source file name for a cell (Java names it after the cell's public class). */
  file: (code: string) => string;
  /** Syntax check of an interpreted language; a failure is a `SyntaxError` with its diagnostics. */
  check?: string[];
  /** Compilation; a failure is a `CompileError` with the compiler's diagnostics. */
  build?: string[];
  run: string[];
  /** Wraps `run` in `stdbuf -i0 -oL` so that a C stdio program's output streams line by line. */
  stdioLineBuffered?: boolean;
  /** What a cell must look like (shown in the kernel banner). */
  cellDoc: string;
}

export interface VmModel {
  kind: 'vm';
  dialect: 'javascript' | 'typescript';
  cellDoc: string;
}

export interface ShellModel {
  kind: 'shell';
  cellDoc: string;
}

export type CellModel = ProgramModel | VmModel | ShellModel;

export interface LanguageSpec {
  /** Kernel name (kernelspec name, image folder). */
  name: string;
  displayName: string;
  /** language_info.name */
  language: string;
  fileExtension: string;
  mimetype: string;
  codemirrorMode: string | JsonObject;
  pygmentsLexer: string;
  version: VersionProbe | 'node' | 'typescript';
  /** Default shell commands to build and run `main.<ext>` in a work directory (batch mode, image labels). */
  batch: { build: string; exec: string };
  cell: CellModel;
}

const SCRATCH = '.pk-cell';
/** Helper files shipped with the runner (images/runner/lib). */
const RUNNER_LIB = '/opt/polykernel/lib';

/** The scratch directory, relative to the work directory, where a `program` cell is written and built. */
export const SCRATCH_DIR = SCRATCH;

const fixedFile = (name: string) => () => name;

/** Java: the file is named after the public top-level class (javac insists), Main.java otherwise. */
export function javaFileName(code: string): string {
  const withoutComments = code.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/[^\n]*/g, '');
  const match = /(?:^|[\s;}])public\s+(?:(?:final|abstract|strictfp)\s+)*(?:class|record|enum|interface)\s+([A-Za-z_$][\w$]*)/.exec(
    withoutComments,
  );
  return `${match?.[1] ?? 'Main'}.java`;
}

const JVM_FLAGS = ['-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-Xshare:auto'];

export const LANGUAGES: readonly LanguageSpec[] = [
  {
    name: 'javascript',
    displayName: 'JavaScript (Node.js, sandboxed)',
    language: 'javascript',
    fileExtension: '.js',
    mimetype: 'application/javascript',
    codemirrorMode: 'javascript',
    pygmentsLexer: 'javascript',
    version: 'node',
    batch: { build: '', exec: 'node main.js' },
    cell: {
      kind: 'vm',
      dialect: 'javascript',
      cellDoc: 'statements run in one persistent realm; `input(prompt)` reads a line; top-level await works',
    },
  },
  {
    name: 'typescript',
    displayName: 'TypeScript (Node.js, sandboxed)',
    language: 'typescript',
    fileExtension: '.ts',
    mimetype: 'text/typescript',
    codemirrorMode: 'text/typescript',
    pygmentsLexer: 'typescript',
    version: 'typescript',
    batch: { build: 'node /opt/polykernel/ts-build.mjs main.ts', exec: 'node main.js' },
    cell: {
      kind: 'vm',
      dialect: 'typescript',
      cellDoc: 'transpiled (no type check) and run in one persistent realm; `input(prompt)` reads a line',
    },
  },
  {
    name: 'bash',
    displayName: 'Bash (sandboxed)',
    language: 'bash',
    fileExtension: '.sh',
    mimetype: 'text/x-sh',
    codemirrorMode: 'shell',
    pygmentsLexer: 'bash',
    version: { command: ['bash', '-c', 'echo "$BASH_VERSION"'] },
    batch: { build: '', exec: 'bash main.sh' },
    cell: {
      kind: 'shell',
      cellDoc: 'one persistent bash: variables, functions and the working directory persist',
    },
  },
  {
    name: 'c',
    displayName: 'C (gcc, sandboxed)',
    language: 'c',
    fileExtension: '.c',
    mimetype: 'text/x-csrc',
    codemirrorMode: 'text/x-csrc',
    pygmentsLexer: 'c',
    version: { command: ['gcc', '-dumpfullversion'] },
    batch: { build: 'gcc -O2 -o main main.c -lm', exec: './main' },
    cell: {
      kind: 'program',
      file: fixedFile('main.c'),
      build: ['gcc', '-O2', '-o', `{dir}/main`, `{dir}/main.c`, '-lm'],
      run: [`{dir}/main`],
      stdioLineBuffered: true,
      cellDoc: 'a complete C program with main()',
    },
  },
  {
    name: 'cpp',
    displayName: 'C++ (g++, sandboxed)',
    language: 'c++',
    fileExtension: '.cpp',
    mimetype: 'text/x-c++src',
    codemirrorMode: 'text/x-c++src',
    pygmentsLexer: 'cpp',
    version: { command: ['g++', '-dumpfullversion'] },
    batch: { build: 'g++ -O2 -std=gnu++17 -o main main.cpp', exec: './main' },
    cell: {
      kind: 'program',
      file: fixedFile('main.cpp'),
      build: ['g++', '-O2', '-std=gnu++17', '-o', `{dir}/main`, `{dir}/main.cpp`],
      run: [`{dir}/main`],
      stdioLineBuffered: true,
      cellDoc: 'a complete C++17 program with main()',
    },
  },
  {
    name: 'java',
    displayName: 'Java (OpenJDK, sandboxed)',
    language: 'java',
    fileExtension: '.java',
    mimetype: 'text/x-java',
    codemirrorMode: 'text/x-java',
    pygmentsLexer: 'java',
    version: { command: ['java', '-Xshare:auto', '-version'] },
    batch: {
      build: 'cp main.java Main.java && javac -J-XX:+UseSerialGC -J-XX:TieredStopAtLevel=1 Main.java',
      exec: 'java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 Main',
    },
    cell: {
      kind: 'program',
      file: javaFileName,
      build: ['javac', ...JVM_FLAGS.map((flag) => `-J${flag}`), '-d', `{dir}`, `{dir}/{file}`],
      run: ['java', ...JVM_FLAGS, '-cp', `{dir}`, '{stem}'],
      cellDoc: 'a complete compilation unit; its public class (or class Main) has the main method',
    },
  },
  {
    name: 'go',
    displayName: 'Go (sandboxed)',
    language: 'go',
    fileExtension: '.go',
    mimetype: 'text/x-go',
    codemirrorMode: 'go',
    pygmentsLexer: 'go',
    version: { command: ['go', 'version'] },
    batch: { build: 'go build -o main main.go', exec: './main' },
    cell: {
      kind: 'program',
      file: fixedFile('main.go'),
      build: ['go', 'build', '-o', `{dir}/main`, `{dir}/main.go`],
      run: [`{dir}/main`],
      cellDoc: 'a complete program: package main with func main()',
    },
  },
  {
    name: 'rust',
    displayName: 'Rust (rustc, sandboxed)',
    language: 'rust',
    fileExtension: '.rs',
    mimetype: 'text/rust',
    codemirrorMode: 'rust',
    pygmentsLexer: 'rust',
    version: { command: ['rustc', '--version'] },
    batch: { build: 'rustc --edition 2021 -O -o main main.rs', exec: './main' },
    cell: {
      kind: 'program',
      file: fixedFile('main.rs'),
      // Unoptimised: compile time dominates a notebook cell.
      build: ['rustc', '--edition', '2021', '-o', `{dir}/main`, `{dir}/main.rs`],
      run: [`{dir}/main`],
      cellDoc: 'a complete program with fn main()',
    },
  },
  {
    name: 'ruby',
    displayName: 'Ruby (sandboxed)',
    language: 'ruby',
    fileExtension: '.rb',
    mimetype: 'application/x-ruby',
    codemirrorMode: 'ruby',
    pygmentsLexer: 'ruby',
    version: { command: ['ruby', '-e', 'print RUBY_VERSION'] },
    batch: { build: '', exec: 'ruby main.rb' },
    cell: {
      kind: 'program',
      file: fixedFile('main.rb'),
      check: ['ruby', '-c', `{dir}/main.rb`],
      // Ruby buffers a pipe; pk_sync sets $stdout.sync so output streams as it is written.
      run: ['ruby', `-r${RUNNER_LIB}/pk_sync`, `{dir}/main.rb`],
      cellDoc: 'a script; nothing persists between cells',
    },
  },
  {
    name: 'php',
    displayName: 'PHP (sandboxed)',
    language: 'php',
    fileExtension: '.php',
    mimetype: 'application/x-php',
    codemirrorMode: 'php',
    pygmentsLexer: 'php',
    version: { command: ['php', '-r', 'echo PHP_VERSION;'] },
    batch: { build: '', exec: 'php main.php' },
    cell: {
      kind: 'program',
      file: fixedFile('main.php'),
      check: ['php', '-d', 'display_errors=stderr', '-l', `{dir}/main.php`],
      run: ['php', '-d', 'display_errors=stderr', '-d', 'log_errors=0', `{dir}/main.php`],
      cellDoc: 'a script; `<?php` is added when the cell has no opening tag; nothing persists between cells',
    },
  },
  {
    name: 'perl',
    displayName: 'Perl (sandboxed)',
    language: 'perl',
    fileExtension: '.pl',
    mimetype: 'text/x-perl',
    codemirrorMode: 'perl',
    pygmentsLexer: 'perl',
    version: { command: ['perl', '-e', 'print substr($^V, 1)'] },
    batch: { build: '', exec: 'perl main.pl' },
    cell: {
      kind: 'program',
      file: fixedFile('main.pl'),
      check: ['perl', '-c', `{dir}/main.pl`],
      // PerlIO buffers a pipe; without autoflush output (and a prompt before a read) would come late.
      run: ['perl', `-I${RUNNER_LIB}`, '-MPkAutoflush', `{dir}/main.pl`],
      cellDoc: 'a script; nothing persists between cells',
    },
  },
  {
    name: 'lua',
    displayName: 'Lua (sandboxed)',
    language: 'lua',
    fileExtension: '.lua',
    mimetype: 'text/x-lua',
    codemirrorMode: 'lua',
    pygmentsLexer: 'lua',
    version: { command: ['lua5.4', '-v'] },
    batch: { build: '', exec: 'lua5.4 main.lua' },
    cell: {
      kind: 'program',
      file: fixedFile('main.lua'),
      check: ['luac5.4', '-p', `{dir}/main.lua`],
      run: ['lua5.4', `{dir}/main.lua`],
      stdioLineBuffered: true,
      cellDoc: 'a script; nothing persists between cells',
    },
  },
];

export function findLanguage(name: string): LanguageSpec | undefined {
  return LANGUAGES.find((language) => language.name === name);
}

/** Substitutes `{dir}`, `{file}` and `{stem}` in a program command. */
export function expandCommand(command: readonly string[], file: string, dir = SCRATCH): string[] {
  const stem = file.replace(/\.[^.]+$/, '');
  return command.map((arg) => arg.replaceAll('{dir}', dir).replaceAll('{file}', file).replaceAll('{stem}', stem));
}

/**
 * PHP prints a cell without an opening tag verbatim; a notebook cell is code, so add the tag (on the
 * cell's first line, so that line numbers in messages stay the user's).
 */
export function sourceText(language: LanguageSpec, code: string): string {
  if (language.name === 'php' && !/<\?(php|=)/.test(code)) return `<?php ${code}`;
  return code;
}

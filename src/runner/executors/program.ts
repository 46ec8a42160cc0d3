/**
 * The `program` cell model: each cell is a complete program, written to a scratch directory under the
 * work directory, checked or compiled there, then run as its own process group with the work directory
 * as its cwd. The scratch directory is removed after every cell; nothing persists between cells.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { capture, ended, exited, forward, signalGroup, spawnGroup, StdinPipe } from '../child.js';
import {
  describeExit,
  errorOutcome,
  interruptedOutcome,
  type Cell,
  type CellOutcome,
  type Executor,
  type ExecutorOptions,
  type IsCompleteStatus,
} from '../executor.js';
import { expandCommand, SCRATCH_DIR, sourceText, type LanguageSpec, type ProgramModel } from '../languages.js';
import { serveInput, stdinIdentity } from '../stdin-watch.js';

/** After SIGINT, how long a program may take to stop before its group is killed. */
const INTERRUPT_GRACE_MS = 500;

export class ProgramExecutor implements Executor {
  private readonly model: ProgramModel;

  constructor(private readonly language: LanguageSpec, private readonly options: ExecutorOptions) {
    if (language.cell.kind !== 'program') throw new Error(`${language.name} is not a program language`);
    this.model = language.cell;
  }

  async start(): Promise<void> {}

  async shutdown(): Promise<void> {}

  async isComplete(): Promise<IsCompleteStatus> {
    // A cell is a whole program; only the compiler can tell, and it would tell the client too late to help.
    return 'unknown';
  }

  async run(cell: Cell): Promise<CellOutcome> {
    const { workDir } = this.options;
    const scratch = path.join(workDir, SCRATCH_DIR);
    const file = this.model.file(cell.code);
    await rm(scratch, { recursive: true, force: true });
    await mkdir(scratch, { recursive: true });
    try {
      await writeFile(path.join(scratch, file), sourceText(this.language, cell.code));
      for (const [step, ename] of [[this.model.check, 'SyntaxError'], [this.model.build, 'CompileError']] as const) {
        if (!step) continue;
        if (cell.signal.aborted) return interruptedOutcome();
        const result = await capture(expandCommand(step, file), { cwd: workDir }, cell.signal);
        if (cell.signal.aborted) return interruptedOutcome();
        if (result.spawnError) return errorOutcome('KernelError', `cannot run ${step[0]}: ${result.spawnError.message}`);
        const diagnostics = result.text.trimEnd();
        if (result.code !== 0) return diagnosticsOutcome(ename, diagnostics, result.code);
        // Warnings of a successful compilation are worth seeing; a syntax check's "OK" is not.
        if (ename === 'CompileError' && diagnostics) this.options.output.write('stderr', `${diagnostics}\n`);
      }
      const argv = expandCommand(this.model.run, file);
      return await this.execute(this.model.stdioLineBuffered ? ['stdbuf', '-i0', '-oL', ...argv] : argv, cell);
    } finally {
      await rm(scratch, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  private async execute(argv: string[], cell: Cell): Promise<CellOutcome> {
    const { output, workDir } = this.options;
    if (cell.signal.aborted) return interruptedOutcome();
    const stdin = cell.allowStdin ? StdinPipe.open() : undefined;
    const child = spawnGroup(argv, { cwd: workDir, stdin: stdin?.readFd ?? 'ignore' });
    stdin?.releaseReadEnd();
    let spawnError: Error | undefined;
    child.on('error', (error) => (spawnError = error));
    forward(child.stdout!, 'stdout', output);
    forward(child.stderr!, 'stderr', output);
    let interrupted = false;
    let killTimer: NodeJS.Timeout | undefined;
    const onInterrupt = () => {
      interrupted = true;
      signalGroup(child.pid, 'SIGINT');
      killTimer = setTimeout(() => signalGroup(child.pid, 'SIGKILL'), INTERRUPT_GRACE_MS);
    };
    cell.signal.addEventListener('abort', onInterrupt, { once: true });
    const done = new AbortController();
    const exit = exited(child).finally(() => done.abort());
    if (stdin && child.pid) {
      const { pid } = child;
      void stdinIdentity(pid).then((identity) => {
        if (identity) void serveInput(pid, identity, stdin, cell, AbortSignal.any([done.signal, cell.signal]));
      });
    }
    try {
      const { code, signal } = await exit;
      await Promise.all([ended(child.stdout, 200), ended(child.stderr, 200)]);
      if (spawnError) return errorOutcome('KernelError', `cannot run ${argv[0]}: ${spawnError.message}`);
      if (interrupted) return interruptedOutcome();
      if (code === 0) return { status: 'ok' };
      return errorOutcome('RuntimeError', describeExit(code, signal));
    } finally {
      clearTimeout(killTimer);
      cell.signal.removeEventListener('abort', onInterrupt);
      // Whatever the program left running in the background ends with its cell.
      signalGroup(child.pid, 'SIGKILL');
      stdin?.close();
    }
  }
}

/** A failed check or compilation: its diagnostics are the traceback, the first error line the summary. */
export function diagnosticsOutcome(ename: string, diagnostics: string, code: number | null): CellOutcome {
  const lines = diagnostics ? diagnostics.split('\n') : [];
  const summary = lines.find((line) => /error/i.test(line)) ?? lines[0] ?? `exit status ${code}`;
  return errorOutcome(ename, summary.trim(), lines.length ? lines : undefined);
}

/**
 * The `shell` cell model: one long-lived bash runs every cell (variables, functions, the working directory
 * persist). The driver below reads cells from fd 3, so a cell's own `read` reads the real stdin (fd 0),
 * and it ends every cell with a marker carrying the exit status on the original stdout and stderr, even
 * when the cell redirected them.
 *
 * Interrupt, without losing the shell: SIGINT to the group kills the running command; the INT trap then
 * installs a DEBUG trap that, with extdebug, makes every next command "return" until the driver's loop is
 * reached again (a bare `while :; do :; done` or nested functions included). Known limits: a cell that calls
 * `exit` or fails under `set -e` ends the shell (a new one starts, state reset); a cell that traps INT itself
 * is killed after the grace period.
 */
import { capture } from '../child.js';
import { errorOutcome, type Cell, type CellOutcome, type ExecutorOptions, type IsCompleteStatus } from '../executor.js';
import { diagnosticsOutcome } from './program.js';
import { PersistentExecutor } from './persistent.js';

// A plain template: \${ and \\ are bash's ${ and \.
export const BASH_DRIVER = `
set -o functrace
shopt -s extdebug
exec {__pk_out}>&1 {__pk_err}>&2 {__pk_cells}<&3 3<&-
__pk_token=$PK_TOKEN
unset PK_TOKEN
__pk_unwind() {
  if [[ -n \${FUNCNAME[1]-} && \${FUNCNAME[1]-} != main ]]; then return 2; fi
  trap - DEBUG
  return 0
}
__pk_run() { eval "$1"; }
while :; do
  IFS= read -r -d '' -u "$__pk_cells" __pk_stdin || exit 0
  IFS= read -r -d '' -u "$__pk_cells" __pk_code || exit 0
  __pk_int=
  trap '__pk_int=1; trap __pk_unwind DEBUG' INT
  if [[ $__pk_stdin == 1 ]]; then __pk_run "$__pk_code"; else __pk_run "$__pk_code" </dev/null; fi
  __pk_status=$?
  trap - DEBUG
  [[ -n $__pk_int ]] && __pk_status=130
  printf '\\0PK%s:\\0' "$__pk_token" >&"$__pk_err"
  printf '\\0PK%s:%s\\0' "$__pk_token" "$__pk_status" >&"$__pk_out"
done
`;

const BASH = ['bash', '--noprofile', '--norc'];

export class ShellExecutor extends PersistentExecutor {
  constructor(options: ExecutorOptions) {
    super(options, 'bash shell');
  }

  protected command(): string[] {
    return [...BASH, '-c', BASH_DRIVER];
  }

  protected encode(cell: Cell): string {
    return `${cell.allowStdin ? 1 : 0}\0${cell.code.replaceAll('\0', '')}\0`;
  }

  protected outcomeOf(payload: string): CellOutcome {
    const status = Number(payload);
    if (status === 0) return { status: 'ok' };
    return errorOutcome('RuntimeError', `the cell's last command exited with status ${payload}`);
  }

  /** bash -n: a cell that does not parse is a SyntaxError and never reaches the shell. */
  protected override async precheck(cell: Cell): Promise<CellOutcome | undefined> {
    const result = await this.syntaxCheck(cell.code, cell.signal);
    if (result.code === 0) return undefined;
    return diagnosticsOutcome('SyntaxError', result.text.trimEnd(), result.code);
  }

  async isComplete(code: string): Promise<IsCompleteStatus> {
    const result = await this.syntaxCheck(code, new AbortController().signal);
    if (result.code === 0) return 'complete';
    return /unexpected end of file|here-document .* delimited by end-of-file/.test(result.text) ? 'incomplete' : 'invalid';
  }

  private syntaxCheck(code: string, signal: AbortSignal) {
    // extglob on: a pattern the persistent shell accepts after `shopt -s extglob` parses here too.
    return capture([...BASH, '-O', 'extglob', '-n', '-c', code.replaceAll('\0', '')], { cwd: this.options.workDir }, signal);
  }
}

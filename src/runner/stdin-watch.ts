/**
 * Knowing when a program waits for a line of input, so that the runner can send `input_request`.
 *
 * Whether a program will read its stdin cannot be known in advance, and "quiet for a while" cannot tell a
 * program reading stdin from one that sleeps. The kernel can: /proc/<pid>/task/<tid>/syscall names the
 * system call a blocked thread sleeps in, with its arguments. So while a cell runs, the runner samples every
 * thread of the cell's process and its descendants; a thread blocked in read(2)/readv(2) on fd 0, where
 * fd 0 is the stdin socket the runner holds, is waiting for input. It must be seen on two samples in a row:
 * a thread that passes through read() while data is available never sleeps in it.
 *
 * Reading another process's `syscall` file needs ptrace access, which a process has to its own
 * descendants under the same uid (no capability needed; it works with --cap-drop ALL and
 * no-new-privileges). Not detected: programs that wait with poll/select/epoll or read stdin non-blocking
 * (they are rare for line input; such a program simply runs until interrupted or timed out).
 */
import { access, readdir, readFile, readlink } from 'node:fs/promises';

/** read, readv and pread64 syscall numbers per architecture. */
const READ_SYSCALLS: Record<string, readonly number[]> = {
  x64: [0, 19, 17],
  arm64: [63, 65, 67],
};

export interface SyscallState {
  nr: number;
  args: bigint[];
}

/** Parses /proc/<pid>/task/<tid>/syscall: "running", or "<nr> <arg0> … <sp> <pc>" in hex. */
export function parseSyscall(text: string): SyscallState | 'running' | undefined {
  const trimmed = text.trim();
  if (trimmed === 'running') return 'running';
  const fields = trimmed.split(/\s+/);
  const nr = Number(fields[0]);
  if (!Number.isInteger(nr) || nr < 0) return undefined;
  try {
    return { nr, args: fields.slice(1).map((field) => BigInt(field)) };
  } catch {
    return undefined;
  }
}

export function isStdinRead(state: SyscallState | 'running' | undefined, arch: string = process.arch): boolean {
  if (!state || state === 'running') return false;
  return (READ_SYSCALLS[arch] ?? []).includes(state.nr) && state.args[0] === 0n;
}

/** The process group of a /proc/<pid>/stat line (fields after the command name, which may hold spaces). */
export function parseProcessGroup(stat: string): number | undefined {
  const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const pgrp = Number(after[2]);
  return Number.isInteger(pgrp) ? pgrp : undefined;
}

/**
 * The processes of a cell: the root and its descendants, read from /proc/<pid>/task/<tid>/children
 * (cheap: no scan of every process on the machine); a scan for the process group where that file is
 * missing (kernels without CONFIG_PROC_CHILDREN).
 */
async function processesOf(root: number): Promise<number[]> {
  if (!(await access(`/proc/${root}/task/${root}/children`).then(() => true, () => false))) return processesInGroup(root);
  const found: number[] = [];
  const queue = [root];
  for (let pid = queue.shift(); pid !== undefined; pid = queue.shift()) {
    found.push(pid);
    for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
      const children = await readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '');
      for (const child of children.split(' ')) if (child.trim()) queue.push(Number(child));
    }
  }
  return found;
}

async function processesInGroup(pgid: number): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (parseProcessGroup(await readFile(`/proc/${entry}/stat`, 'utf8')) === pgid) pids.push(Number(entry));
    } catch {
      // Exited while we looked.
    }
  }
  return pids;
}

async function blockedOnStdin(pid: number, stdinLink: string): Promise<boolean> {
  try {
    if ((await readlink(`/proc/${pid}/fd/0`)) !== stdinLink) return false;
    for (const tid of await readdir(`/proc/${pid}/task`)) {
      const text = await readFile(`/proc/${pid}/task/${tid}/syscall`, 'utf8').catch(() => '');
      if (isStdinRead(parseSyscall(text))) return true;
    }
  } catch {
    // Exited, or not ours to inspect.
  }
  return false;
}

/** What fd 0 of a process is ("socket:[123]", a FIFO path): the identity of the stdin the runner holds. */
export async function stdinIdentity(pid: number): Promise<string | undefined> {
  return readlink(`/proc/${pid}/fd/0`).catch(() => undefined);
}

/** True when the process or one of its descendants is blocked reading the given stdin right now. */
export async function groupWaitsForInput(root: number, stdinLink: string): Promise<boolean> {
  for (const pid of await processesOf(root)) {
    if (await blockedOnStdin(pid, stdinLink)) return true;
  }
  return false;
}

/**
 * Resolves true once the group is seen waiting for input on two consecutive samples, false when the
 * signal aborts first.
 */
export function waitForStdinRead(root: number, stdinLink: string, signal: AbortSignal, intervalMs = 40): Promise<boolean> {
  return new Promise((resolve) => {
    let seen = 0;
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    if (signal.aborted) return resolve(false);
    signal.addEventListener('abort', onAbort, { once: true });
    const sample = async () => {
      const waiting = await groupWaitsForInput(root, stdinLink);
      if (signal.aborted) return;
      seen = waiting ? seen + 1 : 0;
      if (seen >= 2) {
        signal.removeEventListener('abort', onAbort);
        resolve(true);
        return;
      }
      timer = setTimeout(() => void sample(), intervalMs);
    };
    timer = setTimeout(() => void sample(), intervalMs);
  });
}

/** True when this one process is blocked reading the given stdin (a shell's `read` builtin, say). */
export async function processWaitsForInput(pid: number, stdinLink: string): Promise<boolean> {
  return blockedOnStdin(pid, stdinLink);
}

export interface LineAsker {
  /** Asks the client for a line; rejects when it cannot (interrupted, stdin not allowed). */
  input(): Promise<string>;
}

/**
 * While `stop` is not aborted: each time the process (or a descendant) blocks reading its stdin, asks for
 * a line and writes it to that stdin.
 */
export async function serveInput(
  root: number,
  stdinLink: string,
  stdin: { write(text: string): unknown },
  asker: LineAsker,
  stop: AbortSignal,
): Promise<void> {
  while (!stop.aborted) {
    if (!(await waitForStdinRead(root, stdinLink, stop))) return;
    let line: string;
    try {
      line = await asker.input();
    } catch {
      return;
    }
    if (stop.aborted) return;
    stdin.write(`${line}\n`);
  }
}

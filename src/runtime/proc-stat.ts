/**
 * CPU time and resident memory of host processes, from /proc/<pid>/stat.
 *
 * Each file is opened, read and closed in one readFile: nothing is kept open between samples. (pidusage,
 * used here before, keeps an fd per PID in a module-wide history that its clear() drops without closing,
 * and leaks the fd it opened when a process exits between its open and its read: a kernel of many
 * short-lived processes made the service's fd table grow with every sample.)
 */
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';

export interface ProcessFigures {
  /** User and system CPU time of the processes read, ms. */
  cpuMs: number;
  /** Sum of their resident set sizes, bytes. */
  memoryBytes: number;
  /** How many of the PIDs were read; a process that exited before its read is not counted. */
  read: number;
}

interface Units {
  ticksPerSecond: number;
  pageBytes: number;
}

let units: Units | undefined;

const READS_AT_ONCE = 4;

/** USER_HZ and the page size, once per process (100 and 4096 where getconf is missing). */
function hostUnits(): Units {
  if (!units) {
    const conf = (name: string, fallback: number) => {
      try {
        const value = Number(execFileSync('getconf', [name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
        return Number.isFinite(value) && value > 0 ? value : fallback;
      } catch {
        return fallback;
      }
    };
    units = { ticksPerSecond: conf('CLK_TCK', 100), pageBytes: conf('PAGESIZE', 4096) };
  }
  return units;
}

/**
 * The fields of one stat line we use. The command name (field 2) is in parentheses and may hold spaces
 * and parentheses itself, so fields are counted from the last ')'.
 */
export function parseStat(line: string): { ticks: number; rssPages: number } | undefined {
  const end = line.lastIndexOf(')');
  if (end < 0) return undefined;
  // After "pid (comm) ": state is field 3, utime 14, stime 15, rss 24.
  const fields = line.slice(end + 2).split(' ');
  const utime = Number(fields[14 - 3]);
  const stime = Number(fields[15 - 3]);
  const rss = Number(fields[24 - 3]);
  if (![utime, stime, rss].every(Number.isFinite)) return undefined;
  return { ticks: utime + stime, rssPages: Math.max(0, rss) };
}

/** The summed figures of `pids`; one that is gone or unreadable is left out, never an error. */
export async function processFigures(pids: readonly number[]): Promise<ProcessFigures> {
  const { ticksPerSecond, pageBytes } = hostUnits();
  let ticks = 0;
  let pages = 0;
  let read = 0;
  let next = 0;
  // A few reads at a time, not one per PID at once: each read in flight holds an fd, and a kernel may have
  // hundreds of processes.
  const reader = async () => {
    while (next < pids.length) {
      const pid = pids[next++]!;
      if (!Number.isInteger(pid) || pid <= 0) continue;
      const line = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
      const stat = line === undefined ? undefined : parseStat(line);
      if (!stat) continue;
      ticks += stat.ticks;
      pages += stat.rssPages;
      read++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(READS_AT_ONCE, pids.length) }, reader));
  return { cpuMs: (ticks * 1000) / ticksPerSecond, memoryBytes: pages * pageBytes, read };
}

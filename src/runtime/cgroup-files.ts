/**
 * A container's cgroup files on the host: cgroup v1 (cgroupfs driver) or v2 (systemd or cgroupfs driver).
 *
 * Read synchronously on purpose: they are kernel pseudo-files answered from memory in microseconds, while
 * an asynchronous read is four thread-pool hand-offs (open, fstat, read, close) that cost milliseconds on
 * a loaded machine, and the OOM count is read at the end of every query, on the execute hot path.
 */
import { readFileSync } from 'node:fs';

type Layout = (containerId: string) => string;

const PROCS: Layout[] = [
  (id) => `/sys/fs/cgroup/pids/docker/${id}/cgroup.procs`,
  (id) => `/sys/fs/cgroup/memory/docker/${id}/cgroup.procs`,
  (id) => `/sys/fs/cgroup/system.slice/docker-${id}.scope/cgroup.procs`,
  (id) => `/sys/fs/cgroup/docker/${id}/cgroup.procs`,
];

// cgroup v1 memory.oom_control and v2 memory.events both have an "oom_kill <n>" line.
const OOM: Layout[] = [
  (id) => `/sys/fs/cgroup/memory/docker/${id}/memory.oom_control`,
  (id) => `/sys/fs/cgroup/system.slice/docker-${id}.scope/memory.events`,
  (id) => `/sys/fs/cgroup/docker/${id}/memory.events`,
];

/** Reads the first layout that exists, trying the one that worked last time first (one host, one layout). */
function readFirst(layouts: Layout[], containerId: string): string | undefined {
  for (let i = 0; i < layouts.length; i++) {
    try {
      const text = readFileSync(layouts[i]!(containerId), 'utf8');
      if (i > 0) layouts.unshift(...layouts.splice(i, 1));
      return text;
    } catch {
      // Not this cgroup layout (or the container is gone): try the next.
    }
  }
  return undefined;
}

/** Host PIDs in the container's cgroup, or undefined when no layout knows the container. */
export function cgroupProcessIds(containerId: string): number[] | undefined {
  return readFirst(PROCS, containerId)?.split('\n').filter(Boolean).map(Number);
}

/** Processes of the container the kernel's OOM killer killed so far, or undefined when unknown. */
export function cgroupOomKills(containerId: string): number | undefined {
  const match = /^oom_kill (\d+)$/m.exec(readFirst(OOM, containerId) ?? '');
  return match ? Number(match[1]) : undefined;
}

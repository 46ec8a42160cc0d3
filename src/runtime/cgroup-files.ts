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

// cgroup v1 cpuacct.usage (nanoseconds); v2 cpu.stat has a "usage_usec <n>" line.
const CPU_V1: Layout[] = [(id) => `/sys/fs/cgroup/cpuacct/docker/${id}/cpuacct.usage`];
const CPU_V2: Layout[] = [
  (id) => `/sys/fs/cgroup/system.slice/docker-${id}.scope/cpu.stat`,
  (id) => `/sys/fs/cgroup/docker/${id}/cpu.stat`,
];

/** The first of the layouts that exists (one failed open per other layout: microseconds). */
function readFirst(layouts: Layout[], containerId: string): string | undefined {
  for (const layout of layouts) {
    try {
      return readFileSync(layout(containerId), 'utf8');
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

/** CPU time the container's processes have used so far, in ms, or undefined when unknown. */
export function cgroupCpuMs(containerId: string): number | undefined {
  const v1 = readFirst(CPU_V1, containerId);
  if (v1 !== undefined) return Number(v1) / 1e6;
  const match = /^usage_usec (\d+)$/m.exec(readFirst(CPU_V2, containerId) ?? '');
  return match ? Number(match[1]) / 1000 : undefined;
}

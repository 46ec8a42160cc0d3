/**
 * CPU time used by kernel containers, read from their cgroups (src/runtime/cgroup-files.ts): how much of
 * the machine the kernels themselves take per execute, which bounds executions per second on it.
 */
import { execFileSync } from 'node:child_process';
import { cgroupCpuMs } from '../src/runtime/cgroup-files.js';

function containerOf(kernelId: string): string {
  const id = execFileSync('/usr/bin/docker', ['ps', '-q', '--no-trunc', '--filter', `label=org.polykernel.kernel-id=${kernelId}`], { encoding: 'utf8' }).trim();
  if (!id) throw new Error(`no running container for kernel ${kernelId}`);
  return id;
}

/** A reader of the CPU time (ms) the given kernels' containers have used so far, together. */
export function kernelsCpuMs(kernelIds: string[]): () => number {
  const containers = kernelIds.map(containerOf);
  return () =>
    containers.reduce((sum, id) => {
      const ms = cgroupCpuMs(id);
      if (ms === undefined) throw new Error(`cannot read the CPU usage of container ${id}`);
      return sum + ms;
    }, 0);
}

/**
 * CPU time used by kernel containers, read from their cgroups (v1 cpuacct or v2 cpu.stat): how much of
 * the machine the kernels themselves take per execute, which bounds executions per second on it.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const DOCKER = '/usr/bin/docker';

function containerOf(kernelId: string): string {
  const id = execFileSync(DOCKER, ['ps', '-q', '--no-trunc', '--filter', `label=org.polykernel.kernel-id=${kernelId}`], { encoding: 'utf8' }).trim();
  if (!id) throw new Error(`no running container for kernel ${kernelId}`);
  return id;
}

function cpuMsOfContainer(containerId: string): number {
  const v1 = `/sys/fs/cgroup/cpuacct/docker/${containerId}/cpuacct.usage`;
  try {
    return Number(readFileSync(v1, 'utf8')) / 1e6;
  } catch {
    for (const dir of [`/sys/fs/cgroup/system.slice/docker-${containerId}.scope`, `/sys/fs/cgroup/docker/${containerId}`]) {
      try {
        const match = /^usage_usec (\d+)$/m.exec(readFileSync(`${dir}/cpu.stat`, 'utf8'));
        if (match) return Number(match[1]) / 1000;
      } catch {
        // Not this layout.
      }
    }
  }
  throw new Error(`cannot read the CPU usage of container ${containerId}`);
}

/** A reader of the CPU time (ms) the given kernels' containers have used so far, together. */
export function kernelsCpuMs(kernelIds: string[]): () => number {
  const containers = kernelIds.map(containerOf);
  return () => containers.reduce((sum, id) => sum + cpuMsOfContainer(id), 0);
}

/**
 * Helpers of the sandbox and limit tests (issue #6): the kernel images on the engine, a kernel container's
 * cgroups and host processes.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { DOCKER } from '../helpers/docker.js';

/** Kernel names of the language images on the engine (the service offers exactly these). */
export function kernelImages(prefix = 'polykernel/'): { image: string; lang: string }[] {
  const tags = execFileSync(DOCKER, ['images', '--filter', 'label=org.polykernel.kernelspec', '--format', '{{.Repository}}:{{.Tag}}'], {
    encoding: 'utf8',
  })
    .split('\n')
    .filter((tag) => tag.startsWith(prefix) && tag.endsWith(':latest'));
  return tags
    .map((image) => ({
      image,
      lang: execFileSync(DOCKER, ['image', 'inspect', '-f', '{{index .Config.Labels "org.polykernel.lang"}}', image], { encoding: 'utf8' }).trim(),
    }))
    .filter(({ lang }) => lang)
    .sort((a, b) => (a.lang === 'python3' ? -1 : b.lang === 'python3' ? 1 : a.lang.localeCompare(b.lang)));
}

/** Languages to attack: every image, or POLYKERNEL_TEST_LANGS=python3,bash to narrow a local run. */
export function languagesUnderTest(): string[] {
  const all = kernelImages().map(({ lang }) => lang);
  const only = process.env.POLYKERNEL_TEST_LANGS?.split(',').map((s) => s.trim()).filter(Boolean);
  return only ? all.filter((lang) => only.includes(lang)) : all;
}

/** Whether the engine has an OCI runtime of that name registered. */
export function runtimeRegistered(runtime: string): boolean {
  const runtimes = JSON.parse(execFileSync(DOCKER, ['info', '--format', '{{json .Runtimes}}'], { encoding: 'utf8' })) as Record<string, unknown>;
  return runtime in runtimes;
}

/** The host's address on Docker's default bridge (docker0). */
export function hostGateway(): string {
  const docker0 = os.networkInterfaces().docker0?.find((address) => address.family === 'IPv4');
  return docker0?.address ?? '172.17.0.1';
}

/** The cgroup directories (v1 cgroupfs or v2) that hold a container's processes. */
export function cgroupDirs(containerId: string): string[] {
  return [
    `/sys/fs/cgroup/pids/docker/${containerId}`,
    `/sys/fs/cgroup/memory/docker/${containerId}`,
    `/sys/fs/cgroup/system.slice/docker-${containerId}.scope`,
    `/sys/fs/cgroup/docker/${containerId}`,
  ].filter((dir) => existsSync(dir));
}

/** Host PIDs of a container's processes, each with its start time (so that a reused PID is told apart). */
export function hostProcesses(containerId: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const dir of cgroupDirs(containerId)) {
    for (const pid of readFileSync(`${dir}/cgroup.procs`, 'utf8').split('\n').filter(Boolean).map(Number)) {
      const start = processStart(pid);
      if (start) out.set(pid, start);
    }
  }
  return out;
}

/** Field 22 of /proc/<pid>/stat: the start time, or undefined when the process is gone. */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** The Docker engine as the tests look at it from outside the service: the `docker` CLI, as an operator would. */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const DOCKER = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';

/** Runs `docker <args>` and returns its trimmed stdout; a failing command throws. */
export const docker = (...args: string[]) => execFileSync(DOCKER, args, { encoding: 'utf8' }).trim();

/** Ids of every container of a service instance, running or not (kernels and warm-pool ones alike). */
export const containersOfInstance = (instance: string): string[] =>
  docker('ps', '-aq', '--filter', `label=org.polykernel.instance=${instance}`).split('\n').filter(Boolean);

/** The ids, one a line, of the containers of a kernel, running or not: '' once there are none. */
export const containersOfKernel = (kernelId: string): string => docker('ps', '-aq', '--filter', `label=org.polykernel.kernel-id=${kernelId}`);

/**
 * Whether a notebook kernel's container got the notebook's directory as its work directory, and not what
 * a link swapped in for it pointed to.
 *
 * The engine bind-mounts the directory by path when it creates the container, after the submission
 * checked that path. Code of any notebook running in a directory above it (its kernel writes there) can
 * swap the directory with a link to any host directory in between: the engine follows it, and the new
 * kernel would read (and, where the kernel's user may, write) a host directory outside the notebook root. No
 * check of the path before the mount can close that window, so the mount itself is checked before any
 * cell runs: the service puts a file with a random secret in the directory, walking to it without
 * following links (readable by root only, so no kernel can copy it elsewhere), and reads it back from
 * inside the container (a `cat` exec as the container's root, which has no capabilities). Another
 * directory behind the mount has no such file. This works under runc and gVisor alike (device and inode
 * numbers, under gVisor, are the sandbox's own).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { KernelHandle } from '../kernels/kernel-handle.js';
import { CONTAINER_WORK_DIR } from '../runtime/runtime.js';
import { createExclusive, unlinkIn } from './no-follow.js';
import type { NotebookRoot } from './paths.js';

const CHECK_TIMEOUT_S = 20;

/** Undefined when the container's work directory is `realDir`; else why not (one line, for the execution's status). */
export async function workDirMismatch(
  root: NotebookRoot,
  realDir: string,
  kernel: Pick<KernelHandle, 'exec'>,
): Promise<string | undefined> {
  let dir;
  try {
    dir = await root.openRealDir(realDir);
  } catch {
    return "the notebook's directory was replaced (by a link?) before its kernel started; nothing ran";
  }
  const name = `.polykernel-workdir-${randomUUID()}`;
  const secret = randomBytes(24).toString('hex');
  try {
    const file = await createExclusive(dir, name, 0o400);
    if (!file) return "could not check the kernel's work directory (a file of the check's name exists); nothing ran";
    try {
      await file.writeFile(secret);
    } finally {
      await file.close();
    }
    let seen = '';
    const { exitCode } = await kernel.exec(
      { cmd: ['timeout', '-s', 'KILL', String(CHECK_TIMEOUT_S), 'cat', `${CONTAINER_WORK_DIR}/${name}`], as: 'root', workingDir: '/' },
      (stream, chunk) => {
        if (stream === 'stdout' && seen.length < 4 * secret.length) seen += chunk.toString('utf8');
      },
    );
    if (exitCode === 0 && seen === secret) return undefined;
    return "the kernel's work directory is not the notebook's directory (a link was swapped in before the kernel started); nothing ran";
  } finally {
    await unlinkIn(dir, name).catch(() => undefined);
    await dir.close();
  }
}

/**
 * A kernel's socket directory: a host directory bind-mounted at /conn, holding the connection file and
 * the kernel's ZMQ IPC sockets. The service runs as root and the kernel runs strangers' code, so every
 * operation here follows two rules:
 *
 * 1. The kernel can write the directory only while its container runs nothing but the image's launcher:
 *    from `createConnectionDir` (before the container starts) to `sealConnectionDir` (once the kernel
 *    answers, before any client can reach it). A restart stops the container first (every process of the
 *    old kernel dead), throws the directory away and makes a new one: a directory that client code ever
 *    ran beside is never handed back to the kernel.
 * 2. Every root operation is safe against a writer racing it anyway (a launcher is code too). A directory
 *    is taken first, through a descriptor opened with O_NOFOLLOW: owned by root and not writable by the
 *    kernel, its entries can no longer be created, renamed or swapped (renameat2 RENAME_EXCHANGE needs write
 *    permission on the directory too). Only then are its entries read, and an entry is never followed:
 *    files are changed through their own O_NOFOLLOW descriptor, links and anything unexpected are unlinked.
 *
 * Sealed, the directory holds the connection file (root's, read-only) and the sockets: connecting needs no
 * write permission on the directory, so the service keeps reaching the kernel, and nothing the kernel runs
 * can put a byte on the host's disk here (the directory has no size cap).
 */
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { CONNECTION_FILE_NAME } from '../protocol/connection-file.js';
import { KERNEL_GID, KERNEL_UID } from '../runtime/runtime.js';

/** What a kernel binds: k-1 … k-5 (protocol/connection-file). */
const SOCKET_NAME = /^k-\d+$/;

const codeOf = (error: unknown) => (error as NodeJS.ErrnoException)?.code;

/**
 * Where an instance keeps its kernels' directories: a folder of its own under the state directory, so
 * that the reaper at start only ever removes that instance's leftovers.
 */
export function instanceConnectionDirs(stateDir: string, instance: string): string {
  return path.join(stateDir, instance);
}

/** The socket directory of one kernel (or pooled kernel) of an instance. */
export function connectionDirOf(stateDir: string, instance: string, kernelId: string): string {
  return path.join(instanceConnectionDirs(stateDir, instance), kernelId);
}

/** A directory's own descriptor; fails (ELOOP, ENOTDIR) when the name is a symlink or not a directory. */
function openDirectory(dir: string): Promise<FileHandle> {
  return open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
}

/** Makes a directory root's and closed to the kernel: from here on its entries cannot change under us. */
async function takeDirectory(dir: string, group: number, mode: number): Promise<void> {
  const handle = await openDirectory(dir);
  try {
    await handle.chown(0, group);
    await handle.chmod(mode);
  } finally {
    await handle.close();
  }
}

/**
 * Creates the directory for one start of a kernel: the connection file, then both handed to the kernel's
 * uid. The directory must not exist yet (a leftover is an error, never reused).
 */
export async function createConnectionDir(dir: string, connectionJson: string): Promise<void> {
  await mkdir(dir, { mode: 0o700 });
  const file = await open(
    path.join(dir, CONNECTION_FILE_NAME),
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o400,
  );
  try {
    await file.writeFile(connectionJson);
    await file.chown(KERNEL_UID, KERNEL_GID);
  } finally {
    await file.close();
  }
  // Last: until now only root could write here.
  const handle = await openDirectory(dir);
  try {
    await handle.chown(KERNEL_UID, KERNEL_GID);
  } finally {
    await handle.close();
  }
}

/**
 * Takes the directory away from a kernel that has bound its sockets: root's, readable and enterable by
 * the kernel's group. Keeps the sockets and the connection file (made root's and read-only); removes
 * anything else the kernel left there.
 */
export async function sealConnectionDir(dir: string): Promise<void> {
  await takeDirectory(dir, KERNEL_GID, 0o750);
  for (const name of await readdir(dir)) {
    const entry = path.join(dir, name);
    const stat = await lstat(entry);
    if (stat.isSocket() && SOCKET_NAME.test(name)) continue;
    if (name === CONNECTION_FILE_NAME && stat.isFile() && (await takeFile(entry))) continue;
    await removeEntry(entry, stat.isDirectory());
  }
}

/** The connection file made root's and read-only, through its own descriptor; false when it must go. */
async function takeFile(file: string): Promise<boolean> {
  let handle: FileHandle;
  try {
    // O_NONBLOCK: a FIFO planted under this name must not block the open.
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return false;
  }
  try {
    const stat = await handle.stat();
    // A second name for it could live where a kernel can write: changing it would change that one too.
    if (!stat.isFile() || stat.nlink !== 1) return false;
    await handle.chown(0, KERNEL_GID);
    await handle.chmod(0o440);
    return true;
  } finally {
    await handle.close();
  }
}

async function removeEntry(entry: string, isDirectory: boolean): Promise<void> {
  if (isDirectory) await removeTree(entry);
  else await unlink(entry);
}

/**
 * Removes a tree that a kernel may have written, top-down: each directory is taken (root's, 0700) before
 * its entries are read, so no entry can be swapped for a link while the removal walks it. `unlink` and
 * `rmdir` never follow a link in their last component, and every earlier component is a directory taken
 * this way.
 */
async function removeTree(dir: string): Promise<void> {
  try {
    await takeDirectory(dir, 0, 0o700);
  } catch (error) {
    // A link (ELOOP) or any other non-directory under this name: the name goes, what it points to stays.
    if (codeOf(error) === 'ELOOP' || codeOf(error) === 'ENOTDIR') return unlink(dir);
    throw error;
  }
  for (const name of await readdir(dir)) {
    const entry = path.join(dir, name);
    await removeEntry(entry, (await lstat(entry)).isDirectory());
  }
  await rmdir(dir);
}

/** Removes a kernel's socket directory; nothing to do when it is already gone. */
export async function removeConnectionDir(dir: string): Promise<void> {
  try {
    await removeTree(dir);
  } catch (error) {
    if (codeOf(error) !== 'ENOENT') throw error;
  }
}

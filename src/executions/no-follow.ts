/**
 * File operations below a trusted directory that never follow a symbolic link, for directories a kernel
 * can write while the service (root) works in them: a notebook's directory is its kernel's work
 * directory, bind-mounted read-write, and code running there can replace any entry by a link to a host
 * path at any moment, even between a check and the operation it guards (renameat2 RENAME_EXCHANGE swaps
 * two entries atomically). A path checked by realpath and then used by name is exactly that race.
 *
 * So paths are walked one component at a time from a directory descriptor, as openat(2) with O_NOFOLLOW
 * does. Node has no openat, but Linux resolves `/proc/self/fd/<fd>/<name>` as `<name>` looked up in the
 * directory the descriptor holds (the magic link jumps to that very directory, whatever its path is now),
 * and O_NOFOLLOW / mkdir / rename / unlink then apply to `<name>` itself, never following it.
 */
import { constants } from 'node:fs';
import { mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises';

const codeOf = (error: unknown) => (error as NodeJS.ErrnoException)?.code;

/** A name inside the directory held by `dir`, for a call that must act on that entry itself. */
function entryOf(dir: FileHandle, name: string): string {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new Error(`not a single path component: ${JSON.stringify(name)}`);
  }
  return `/proc/self/fd/${dir.fd}/${name}`;
}

/** Thrown when a component is a link, or not a directory where one is needed. */
export class LinkInPathError extends Error {
  constructor(readonly component: string) {
    super(`"${component}" is a symbolic link or not a directory`);
  }
}

const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/** Opens the directory `name` inside `dir`, refusing a link; creates it (mode 0755) first when `create`. */
async function openSubdir(dir: FileHandle, name: string, create: boolean): Promise<FileHandle> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await open(entryOf(dir, name), DIR_FLAGS);
    } catch (error) {
      const code = codeOf(error);
      if (code === 'ELOOP' || code === 'ENOTDIR') throw new LinkInPathError(name);
      if (code !== 'ENOENT' || !create || attempt > 0) throw error;
    }
    try {
      // mkdir never follows a link at its last component (it fails with EEXIST).
      await mkdir(entryOf(dir, name), 0o755);
    } catch (error) {
      if (codeOf(error) !== 'EEXIST') throw error;
    }
  }
}

/**
 * Opens the directory `segments` below `base` (an absolute path the kernel cannot change, e.g. the real
 * path of the notebook root), component by component without following links; with `create`, missing
 * directories are made on the way (mkdir -p). The caller closes the handle.
 */
export async function openDirBelow(base: string, segments: readonly string[], create = false): Promise<FileHandle> {
  let dir = await open(base, DIR_FLAGS);
  try {
    for (const segment of segments) {
      const next = await openSubdir(dir, segment, create);
      await dir.close();
      dir = next;
    }
    return dir;
  } catch (error) {
    await dir.close().catch(() => undefined);
    throw error;
  }
}

/**
 * Opens a regular file `name` in `dir` for reading without following a link and without blocking (a
 * FIFO swapped in would hold a thread of the pool until a writer comes); undefined when it is not a
 * regular file.
 */
export async function openRegularFile(dir: FileHandle, name: string): Promise<FileHandle | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(entryOf(dir, name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    if (codeOf(error) === 'ELOOP') return undefined;
    throw error;
  }
  if (!(await handle.stat()).isFile()) {
    await handle.close();
    return undefined;
  }
  return handle;
}

/** Creates `name` in `dir` exclusively (never through a link); undefined when the name is taken. */
export async function createExclusive(dir: FileHandle, name: string, mode = 0o644): Promise<FileHandle | undefined> {
  try {
    return await open(entryOf(dir, name), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  } catch (error) {
    if (codeOf(error) === 'EEXIST') return undefined;
    throw error;
  }
}

/** rename(2) of two entries of `dir`: replaces a link at `to` itself, never what it points to. */
export async function renameIn(dir: FileHandle, from: string, to: string): Promise<void> {
  await rename(entryOf(dir, from), entryOf(dir, to));
}

/** unlink(2) of an entry of `dir`; an entry already gone is fine. */
export async function unlinkIn(dir: FileHandle, name: string): Promise<void> {
  await unlink(entryOf(dir, name)).catch((error) => {
    if (codeOf(error) !== 'ENOENT') throw error;
  });
}

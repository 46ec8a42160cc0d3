/**
 * A kernel's socket directory (bind-mounted at /conn) is a directory of the host's disk, with no size cap.
 * The kernel must write there while it starts (its ZMQ IPC sockets, and ipykernel rewrites the connection
 * file), but once it is ready, nothing it runs may: a program could otherwise fill the host's disk, or
 * leave files outside its capped work directory and /tmp (issue #6, "writing outside the work directory").
 *
 * So once the kernel answers, the directory and everything in it but the sockets becomes root's, readable
 * by the kernel's group: sockets keep working (connecting needs no write permission on the directory), and
 * nothing new can be created. Before a restart (the kernel binds its sockets again) it is handed back.
 * This needs the service to run as root, as writing the connection file for uid 1000 already does.
 */
import { chmod, chown, lchown, lstat, readdir } from 'node:fs/promises';
import path from 'node:path';

const KERNEL_UID = 1000;

/** Takes the directory away from the kernel: from now on it can read it and connect, not write. */
export async function lockConnectionDir(dir: string): Promise<void> {
  // The directory first: from then on the kernel can neither create nor replace an entry.
  await chown(dir, 0, KERNEL_UID);
  await chmod(dir, 0o750);
  await lockEntries(dir);
}

async function lockEntries(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    const entry = path.join(dir, name);
    const stat = await lstat(entry);
    if (stat.isSocket()) continue;
    await lchown(entry, 0, KERNEL_UID);
    if (stat.isSymbolicLink()) continue;
    if (stat.isDirectory()) {
      await chmod(entry, 0o750);
      await lockEntries(entry);
    } else {
      await chmod(entry, 0o440);
    }
  }
}

/** Hands the directory back as `writeConnectionDir` made it, so that a restarting kernel can bind again. */
export async function unlockConnectionDir(dir: string, connectionFile: string): Promise<void> {
  await chown(connectionFile, KERNEL_UID, KERNEL_UID);
  await chmod(connectionFile, 0o400);
  await chown(dir, KERNEL_UID, KERNEL_UID);
  await chmod(dir, 0o700);
}

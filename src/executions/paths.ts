/**
 * The notebook root (KG_NOTEBOOK_ROOT): every notebook and output path is relative to it and must stay
 * inside it. A path is checked twice: lexically (no absolute paths, no `..` out of the root), then on
 * disk, by realpath against the root's realpath (no symlink out). That check is advice only: a kernel
 * can write into its notebook's directory (and the notebook directories of other executions in it), and
 * swap any entry for a link between the check and the use. So reads and writes never use the checked path
 * by name: they walk it from the root's real path one component at a time without following links
 * (no-follow.ts), creating missing directories on the way, and a link found there is a 400.
 *
 * Output files are written by the service, never by the kernel. Without overwrite a file is created
 * exclusively (O_EXCL) under the next free name; with overwrite it is written to a temporary file and
 * renamed over the target (a link at the target is replaced, never followed). A notebook is opened
 * non-blocking and must be a regular file: a FIFO swapped in would block a thread until a writer came.
 */
import type { FileHandle } from 'node:fs/promises';
import { lstat, readlink, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { DomainError, invalidInput, notFound } from '../errors.js';
import { KERNEL_UID } from '../runtime/runtime.js';
import { createExclusive, LinkInPathError, openDirBelow, openRegularFile, renameIn, unlinkIn } from './no-follow.js';

const MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024;

export interface ResolvedNotebook {
  /** Normalised path relative to the root, with forward slashes. */
  rel: string;
  /** The file's real path on disk. */
  real: string;
  /** Real path of the directory holding the file: the kernel's work directory. */
  dir: string;
}

const codeOf = (error: unknown) => (error as NodeJS.ErrnoException)?.code;

/** Whether `child` is `parent` or below it (both absolute, normalised). */
function isInside(parent: string, child: string): boolean {
  const relative = path.relative(parent, child);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

/**
 * The lexical part of the check: a relative path that stays inside the root, normalised. `field` names
 * the request field in messages.
 */
export function normaliseRelative(input: string, field: string): string {
  if (input.includes('\0')) throw invalidInput(`${field} contains a NUL character`);
  if (input.trim() === '') throw invalidInput(`${field} is empty`);
  if (path.posix.isAbsolute(input) || path.win32.isAbsolute(input)) {
    throw invalidInput(`${field} must be relative to the notebook root, got an absolute path`);
  }
  const normal = path.posix.normalize(input.replace(/\\/g, '/'));
  if (normal === '..' || normal.startsWith('../')) throw invalidInput(`${field} points outside the notebook root`);
  if (normal === '.' || normal.endsWith('/')) throw invalidInput(`${field} names a directory, not a notebook file`);
  return normal;
}

/** `<dir>/<stem>-Executed<n>.ipynb` for a notebook `<dir>/<stem>.ipynb` (any other extension is kept in the stem). */
export function defaultOutputName(notebookRel: string, n: number): string {
  const dir = path.posix.dirname(notebookRel);
  const base = path.posix.basename(notebookRel);
  const stem = base.toLowerCase().endsWith('.ipynb') ? base.slice(0, -'.ipynb'.length) : base;
  return path.posix.join(dir, `${stem}-Executed${n}.ipynb`);
}

/** For an explicit output path that exists (and no overwrite): `<dir>/<stem>-<n>.ipynb`, n from 2. */
export function numberedOutputName(outputRel: string, n: number): string {
  return outputRel.replace(/(\.ipynb)?$/i, (ext) => `-${n}${ext || '.ipynb'}`);
}

export class NotebookRoot {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  private async realRoot(): Promise<string> {
    try {
      return await realpath(this.root);
    } catch {
      throw notFound(`the notebook root ${this.root} does not exist`);
    }
  }

  /** realpath of the deepest existing ancestor of `abs` (inclusive), checked against the root. */
  private async checkExistingPart(realRoot: string, abs: string, field: string): Promise<string> {
    return (await this.existingAncestor(realRoot, abs, field)).real;
  }

  /** The deepest existing ancestor of `abs` (inclusive) and its realpath, checked against the root. */
  private async existingAncestor(realRoot: string, abs: string, field: string): Promise<{ probe: string; real: string }> {
    for (let probe = abs; ; probe = path.dirname(probe)) {
      try {
        const real = await realpath(probe);
        if (!isInside(realRoot, real)) throw invalidInput(`${field} points outside the notebook root (through a symbolic link)`);
        return { probe, real };
      } catch (error) {
        if (error instanceof DomainError) throw error;
        if (codeOf(error) !== 'ENOENT' && codeOf(error) !== 'ENOTDIR') throw error;
        if (probe === path.dirname(probe)) throw error;
      }
    }
  }

  /** Resolves a notebook path: 400 when it escapes the root, 404 when the file is not there. */
  async resolveNotebook(input: string): Promise<ResolvedNotebook> {
    const rel = normaliseRelative(input, 'notebook');
    const realRoot = await this.realRoot();
    const abs = path.join(this.root, rel);
    let real: string;
    try {
      real = await realpath(abs);
    } catch (error) {
      if (codeOf(error) !== 'ENOENT' && codeOf(error) !== 'ENOTDIR') throw error;
      await this.checkExistingPart(realRoot, path.dirname(abs), 'notebook');
      throw notFound(`notebook ${rel} not found`);
    }
    if (!isInside(realRoot, real)) throw invalidInput('notebook points outside the notebook root (through a symbolic link)');
    // The file (or a directory above it) may be swapped away by a kernel writing there since realpath.
    const info = await stat(real).catch((error) => {
      if (codeOf(error) === 'ENOENT' || codeOf(error) === 'ENOTDIR') throw notFound(`notebook ${rel} not found`);
      if (codeOf(error) === 'ELOOP') throw invalidInput(`notebook ${rel} goes through a loop of symbolic links`);
      throw error;
    });
    if (!info.isFile()) throw invalidInput(`notebook ${rel} is not a file`);
    const dir = path.dirname(real);
    // The directory is bind-mounted by the Docker engine as "<host>:<container>": these would break the spec.
    if (/[:,]/.test(dir)) throw invalidInput(`the directory of notebook ${rel} contains ":" or ",", which cannot be mounted into a kernel`);
    await this.checkKernelCanEnter(dir, rel);
    return { rel, real, dir };
  }

  /**
   * The kernel (uid KERNEL_UID, no capabilities) starts in the notebook's directory: it must be able to
   * enter and list it, else the container cannot even start. Mode bits only (ACLs are not read).
   */
  private async checkKernelCanEnter(dir: string, rel: string): Promise<void> {
    const { mode, uid } = await stat(dir).catch((error) => {
      if (codeOf(error) === 'ENOENT' || codeOf(error) === 'ENOTDIR') throw notFound(`notebook ${rel} not found`);
      throw error;
    });
    const rx = (shift: number) => ((mode >> shift) & 0o5) === 0o5;
    if (rx(0) || (uid === KERNEL_UID && rx(6))) return;
    throw invalidInput(
      `the directory of notebook ${rel} is not readable by the kernel's user (uid ${KERNEL_UID}); ` +
        'make it readable and searchable for others (chmod o+rx) or owned by that uid',
    );
  }

  /**
   * Opens the directory `segments` below the real root without following links (see no-follow.ts); a link
   * or non-directory on the way is a 400 for `field`.
   */
  private async openBelowRoot(realRoot: string, segments: string[], create: boolean, field: string): Promise<FileHandle> {
    try {
      return await openDirBelow(realRoot, segments, create);
    } catch (error) {
      if (error instanceof LinkInPathError) throw invalidInput(`${field} points outside the notebook root (through a symbolic link, or a file where a directory belongs)`);
      if (codeOf(error) === 'ENOENT') throw notFound(`${field}: a directory of it is gone`);
      throw error;
    }
  }

  /** Opens a directory by its real path (below the root), walking it from the root without following links. */
  async openRealDir(real: string): Promise<FileHandle> {
    const realRoot = await this.realRoot();
    if (!isInside(realRoot, real)) throw invalidInput('the directory is outside the notebook root');
    return this.openBelowRoot(realRoot, path.relative(realRoot, real).split(path.sep).filter(Boolean), false, 'the notebook directory');
  }

  /** Reads a resolved notebook, walking its real path from the root without following links. */
  async readNotebook(notebook: ResolvedNotebook): Promise<string> {
    const realRoot = await this.realRoot();
    const relative = path.relative(realRoot, notebook.real);
    if (!isInside(realRoot, notebook.real) || relative === '') throw invalidInput('notebook points outside the notebook root (through a symbolic link)');
    const segments = relative.split(path.sep);
    const name = segments.pop()!;
    const dir = await this.openBelowRoot(realRoot, segments, false, 'notebook');
    let handle: FileHandle | undefined;
    try {
      handle = await openRegularFile(dir, name).catch((error) => {
        if (codeOf(error) === 'ENOENT') throw notFound(`notebook ${notebook.rel} not found`);
        throw error;
      });
    } finally {
      await dir.close();
    }
    if (!handle) throw invalidInput(`notebook ${notebook.rel} is not a regular file (it was replaced by a link, a FIFO or a directory)`);
    try {
      await this.checkDescriptor(handle.fd, realRoot, 'notebook');
      const { size } = await handle.stat();
      if (size > MAX_NOTEBOOK_BYTES) throw invalidInput(`notebook ${notebook.rel} is larger than ${MAX_NOTEBOOK_BYTES} bytes`);
      return await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  }

  private async checkDescriptor(fd: number, realRoot: string, field: string): Promise<void> {
    const target = await readlink(`/proc/self/fd/${fd}`);
    if (!isInside(realRoot, target)) throw invalidInput(`${field} points outside the notebook root (through a symbolic link)`);
  }

  /** Checks an output path at submission: relative, inside the root, an .ipynb file. */
  async checkOutputPath(input: string): Promise<string> {
    const rel = normaliseRelative(input, 'output_path');
    if (!rel.toLowerCase().endsWith('.ipynb')) throw invalidInput('output_path must end with .ipynb');
    const realRoot = await this.realRoot();
    const abs = path.join(this.root, rel);
    const existing = await this.checkExistingPart(realRoot, abs, 'output_path');
    if (existing === path.resolve(abs)) {
      const info = await lstat(abs);
      if (info.isDirectory()) throw invalidInput(`output_path ${rel} is a directory`);
    }
    return rel;
  }

  /**
   * Writes an output notebook and returns the path it was written to (relative to the root).
   * `explicit` is the requested output path; without it the next free `<name>-Executed<N>.ipynb`.
   */
  async writeOutput(content: string, options: { notebookRel: string; explicit?: string; overwrite: boolean }): Promise<string> {
    const realRoot = await this.realRoot();
    const first = options.explicit ?? defaultOutputName(options.notebookRel, 1);
    const parent = path.dirname(path.join(this.root, first));
    // Where the existing part of the path really is (links inside the root are fine), then the walk: from
    // the real root to it and on through the missing directories, made on the way, none followed if a link.
    const { probe, real } = await this.existingAncestor(realRoot, parent, 'output_path');
    const segments = [...path.relative(realRoot, real).split(path.sep), ...path.relative(probe, parent).split(path.sep)].filter(Boolean);
    const dir = await this.openBelowRoot(realRoot, segments, true, 'output_path');
    try {
      if (options.explicit !== undefined && options.overwrite) {
        return await this.replace(realRoot, dir, options.explicit, content);
      }
      for (let n = 1; n < 100_000; n++) {
        const rel =
          options.explicit === undefined
            ? defaultOutputName(options.notebookRel, n)
            : n === 1
              ? options.explicit
              : numberedOutputName(options.explicit, n);
        const handle = await createExclusive(dir, path.posix.basename(rel));
        if (!handle) continue;
        try {
          await this.checkDescriptor(handle.fd, realRoot, 'output_path');
          await handle.writeFile(content, 'utf8');
        } finally {
          await handle.close();
        }
        return rel;
      }
      throw invalidInput(`no free output file name next to ${first}`);
    } finally {
      await dir.close();
    }
  }

  private async replace(realRoot: string, dir: FileHandle, rel: string, content: string): Promise<string> {
    const name = path.posix.basename(rel);
    const temp = `.${name}.${process.pid}.${Date.now()}.tmp`;
    const handle = await createExclusive(dir, temp);
    if (!handle) throw invalidInput(`output_path ${rel}: a temporary file of that name exists; try again`);
    try {
      await this.checkDescriptor(handle.fd, realRoot, 'output_path');
      await handle.writeFile(content, 'utf8');
    } catch (error) {
      await handle.close();
      await unlinkIn(dir, temp);
      throw error;
    }
    await handle.close();
    await renameIn(dir, temp, name);
    return rel;
  }
}

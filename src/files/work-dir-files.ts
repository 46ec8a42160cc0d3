/**
 * Files of a kernel's work directory (v1 upload, list, download), moved through the image's file helper
 * (images/base/files/files.c, whose header documents the protocol) run with `exec` as the kernel's user in
 * its container. The service never touches the work directory itself: it is a tmpfs inside the container,
 * written at any moment by the kernel's code (a stranger's), and the helper is what walks every path there
 * without following links. Everything the helper prints is read as untrusted (the kernel's code is the
 * same user): every line and count is bounded and checked before it is believed.
 *
 * Streams both ways with backpressure: an upload's parts go to the helper's stdin as they arrive, a
 * download's bytes to the client as the helper reads them, so memory per transfer is a few chunks.
 * An upload is all or nothing: the helper links its files into place only once the service says "commit",
 * after every part was received within the caps; a refusal before that leaves the work directory as it was.
 */
import { PassThrough, type Readable } from 'node:stream';
import { DomainError, forbidden, invalidInput, kernelFailed, notFound, notImplemented } from '../errors.js';
import type { KernelHandle } from '../kernels/kernel-handle.js';
import { CONTAINER_WORK_DIR } from '../runtime/runtime.js';
import { fileNameProblem, TAR_END, tarFileHeader, tarPadding } from '../runs/batch-files.js';

/** What a transfer needs of a kernel: a command beside it, and its idle clock. */
export type FilesKernel = Pick<KernelHandle, 'exec'> & { kernel: Pick<KernelHandle['kernel'], 'lastActivity'> };

/** A transfer is a client's request even though it sends the kernel nothing: the idle culler must see it. */
function touch(kernel: FilesKernel): void {
  kernel.kernel.lastActivity = Date.now();
}

/** Where images/base installs the helper. */
export const FILES_HELPER = '/opt/polykernel/files';

export interface FilesLimits {
  uploadMaxFileBytes: number;
  uploadMaxFiles: number;
  downloadMaxBytes: number;
  downloadMaxFiles: number;
  listMaxEntries: number;
  filesTimeoutMs: number;
}

export type EntryType = 'file' | 'dir' | 'symlink' | 'other';

export interface DirEntry {
  name: string;
  type: EntryType;
  size: number;
  /** As `ls -l` and Python's stat.filemode show it, e.g. "-rw-r--r--" (Backend.AI's list_files). */
  mode: string;
  /** Seconds since the epoch, with fractions. */
  mtime: number;
}

export interface Listing {
  path: string;
  files: DirEntry[];
  /** More entries were there than POLYKERNEL_LIST_MAX_ENTRIES. */
  truncated: boolean;
}

export interface DownloadedFile {
  name: string;
  size: number;
  mode: number;
  mtime: number;
}

export interface Download {
  files: DownloadedFile[];
  /** One file: its bytes; several: a tar archive of them. */
  kind: 'file' | 'tar';
  /** Exact length of `body`. */
  length: number;
  /** Fails (is destroyed with an error) when the transfer breaks off: the answer is then cut short. */
  body: Readable;
}

export interface UploadPart {
  name: string;
  data: AsyncIterable<Buffer>;
}

export interface UploadResult {
  files: { name: string; size: number }[];
}

/** Why the helper refused, as it says it (files.c), to the client's error. */
function refusal(kind: string, name: string | undefined, limits: FilesLimits, what: 'read' | 'write' | 'list'): Error {
  const it = name === undefined ? 'the request' : `"${name.slice(0, 200)}"`;
  switch (kind) {
    case 'missing':
      return notFound(`${it} does not exist in the work directory`);
    case 'notdir':
      return notFound(`a part of the path ${it} is not a directory`);
    case 'symlink':
      return invalidInput(`${it} is or passes through a symbolic link; links in the work directory are never followed`);
    case 'isdir':
      return invalidInput(what === 'write' ? `${it} is a directory: it cannot be replaced by a file` : `${it} is a directory: name its files (several file= parameters download them as one tar archive)`);
    case 'notfile':
      return invalidInput(`${it} is not a regular file (a FIFO, socket or device): only regular files are ${what === 'write' ? 'replaced' : 'read'}`);
    case 'toobig':
      return new DomainError('payload_too_large', `the files asked for are larger than ${limits.downloadMaxBytes} bytes together (POLYKERNEL_DOWNLOAD_MAX_BYTES)`);
    case 'denied':
      return forbidden(`${it} cannot be ${what === 'list' ? 'listed' : what === 'read' ? 'read' : 'written'} by the kernel's user (its permissions deny it)`);
    case 'nospace':
      return new DomainError('payload_too_large', "the kernel's work directory is full (POLYKERNEL_WORKDIR_MB); nothing of the upload was written");
    case 'name':
      return invalidInput(`${it} is not a valid path in the work directory`);
    case 'outside':
      return invalidInput(`${it} leads outside the work directory`);
    case 'exists':
      return new DomainError('conflict', `${it} exists and cannot be replaced`);
    default:
      return new Error(`file helper failed (${kind.slice(0, 40)})`);
  }
}

const MODE_TYPE: Record<EntryType, string> = { file: '-', dir: 'd', symlink: 'l', other: '?' };

/** "drwxr-xr-x" from a type and permission bits (setuid/setgid/sticky shown as ls does). */
export function fileModeString(type: EntryType, mode: number): string {
  const bits = ['r', 'w', 'x', 'r', 'w', 'x', 'r', 'w', 'x'].map((c, i) => (mode & (0o400 >> i) ? c : '-'));
  const special = (index: number, flag: number, set: string) => {
    if (mode & flag) bits[index] = bits[index] === 'x' ? set : set.toUpperCase();
  };
  special(2, 0o4000, 's');
  special(5, 0o2000, 's');
  special(8, 0o1000, 't');
  return MODE_TYPE[type] + bits.join('');
}

const ENTRY_TYPES: Record<string, EntryType> = { f: 'file', d: 'dir', l: 'symlink', o: 'other' };
const ENTRY = /^e ([fdlo]) ([0-7]{1,6}) (\d{1,20}) (-?\d{1,20}) (\d{1,9}) ([^/]{1,255})$/s;

/** The helper's list output ("e …\0" records, "t\0", ".\0"), checked record by record. */
export function parseListing(output: Buffer, maxEntries: number): { files: DirEntry[]; truncated: boolean } {
  const records = output.toString('utf8').split('\0');
  if (records.pop() !== '' || records.pop() !== '.') throw new Error('file helper listing is cut short');
  let truncated = false;
  if (records[records.length - 1] === 't') {
    truncated = true;
    records.pop();
  }
  if (records.length > maxEntries) throw new Error('file helper listed more entries than asked');
  const files = records.map((record) => {
    const match = ENTRY.exec(record);
    if (!match) throw new Error('file helper printed a malformed entry');
    const type = ENTRY_TYPES[match[1]!]!;
    return {
      name: match[6]!,
      type,
      size: Number(match[3]),
      mode: fileModeString(type, parseInt(match[2]!, 8)),
      mtime: Number(match[4]) + Number(match[5]) / 1e9,
    };
  });
  files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { files, truncated };
}

/** `timeout` takes seconds; it kills the helper whatever it waits for (a client that stopped reading). */
function helperCommand(ms: number, args: string[]): string[] {
  return ['timeout', '-s', 'KILL', (Math.max(1, Math.ceil(ms)) / 1000).toFixed(3), FILES_HELPER, args[0]!, CONTAINER_WORK_DIR, ...args.slice(1)];
}

/**
 * The service's own deadline on a transfer: `timeout` in the container is not enough, since the kernel's
 * code (the same user) can SIGSTOP both it and the helper, and then nothing in the container ever ends the
 * exec; the request and its connection to the engine would be held for good, even after the client left.
 * A little later than the helper's timeout (which starts only once the exec runs), so that one speaks first.
 */
export const FILES_DEADLINE_GRACE_MS = 3000;

/** Aborts `controller` with a clear error past the deadline; returns what clears the timer once the transfer ended. */
function transferDeadline(limits: FilesLimits, controller: AbortController): () => void {
  const timer = setTimeout(
    () =>
      controller.abort(
        kernelFailed(
          `the file transfer in the kernel's container did not end within POLYKERNEL_FILES_TIMEOUT_MS (${limits.filesTimeoutMs} ms): it was given up (the kernel's own processes may have stopped the file helper, or the engine is overloaded)`,
        ),
      ),
    limits.filesTimeoutMs + FILES_DEADLINE_GRACE_MS,
  );
  timer.unref();
  return () => clearTimeout(timer);
}

/** timeout's exit code when the command could not be found: an image built before the helper existed. */
const NOT_FOUND_EXIT = 127;
const REFUSED_EXIT = 2;
const ERROR_LINE = /^error ([a-z]{1,16}) (-?\d{1,5})$/;

function noHelper(): Error {
  return notImplemented(`this kernel's image has no file helper (${FILES_HELPER}): rebuild the images (npm run images) to use the files routes`);
}

/** A path a client gives: refused unless it names something inside the work directory. */
export function checkPath(name: unknown, field: string): string {
  if (typeof name !== 'string') throw invalidInput(`${field} must be a string`);
  const problem = fileNameProblem(name);
  if (problem) throw invalidInput(`${field} "${name.slice(0, 80)}" ${problem}`);
  return name;
}

/** Collects up to `cap` bytes of a stream (the rest is dropped): the helper's error lines and listings. */
class Bounded {
  private chunks: Buffer[] = [];
  size = 0;
  overflowed = false;
  constructor(private readonly cap: number) {}
  push(chunk: Buffer): void {
    if (this.size + chunk.length > this.cap) {
      this.overflowed = true;
      return;
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
  text(): string {
    return this.bytes().toString('utf8');
  }
}

export class WorkDirFiles {
  constructor(private readonly limits: FilesLimits) {}

  /** The helper's refusal line, when its output is one. */
  private refused(output: string, exitCode: number, names: (string | undefined)[], what: 'read' | 'write' | 'list'): Error {
    if (exitCode === NOT_FOUND_EXIT) return noHelper();
    const match = ERROR_LINE.exec(output.trim());
    if (exitCode === REFUSED_EXIT && match) {
      const index = Number(match[2]);
      return refusal(match[1]!, index >= 0 ? names[index] : undefined, this.limits, what);
    }
    // Killed or crashed: by its timeout, the kernel's memory cap or the kernel's own processes (the same
    // user may signal it), not a fault of the service.
    return kernelFailed(
      `the file helper in the kernel's container ended with ${exitCode}${exitCode === 137 ? ' (killed: past POLYKERNEL_FILES_TIMEOUT_MS, out of memory, or by the kernel\'s own processes)' : ''}`,
    );
  }

  async list(kernel: FilesKernel, path: string): Promise<Listing> {
    const dir = path === '' || path === '.' ? '' : checkPath(path, 'path');
    touch(kernel);
    const max = this.limits.listMaxEntries;
    // Each record: a type, mode, size, mtime and a name of at most 255 bytes.
    const out = new Bounded((max + 2) * 320);
    const abort = new AbortController();
    const clearDeadline = transferDeadline(this.limits, abort);
    const { exitCode } = await kernel
      .exec({ cmd: helperCommand(this.limits.filesTimeoutMs, ['list', String(max), dir]), signal: abort.signal }, (stream, chunk) => {
        if (stream === 'stdout') out.push(chunk);
      })
      .finally(clearDeadline);
    if (exitCode !== 0) throw this.refused(out.text(), exitCode, [dir || '.'], 'list');
    if (out.overflowed) throw new Error('file helper listing is longer than its entries allow');
    return { path: dir || '.', ...parseListing(out.bytes(), max) };
  }

  /**
   * Starts a download: resolves once every file is open and checked (a refusal rejects with its 4xx, before
   * anything is sent), with the body streaming the files as the client reads it.
   */
  async download(kernel: FilesKernel, names: string[]): Promise<Download> {
    if (names.length === 0) throw invalidInput('name at least one file: ?file=<path> (repeat it for several)');
    if (names.length > this.limits.downloadMaxFiles) throw invalidInput(`${names.length} files asked for; at most ${this.limits.downloadMaxFiles} in one download (POLYKERNEL_DOWNLOAD_MAX_FILES)`);
    names.forEach((name, i) => checkPath(name, `file[${i}]`));
    if (new Set(names).size !== names.length) throw invalidInput('a file is named twice');
    const kind = names.length === 1 ? 'file' : 'tar';
    const abort = new AbortController();
    const body = new PassThrough({ highWaterMark: 64 * 1024 });
    // A client gone (or an answer refused) stops the helper's transfer at once.
    body.once('close', () => abort.abort(new Error('download closed')));

    const headCap = 64 + names.length * 96;
    let head: Buffer = Buffer.alloc(0);
    const stderr = new Bounded(2000);
    let files: DownloadedFile[] | undefined;
    let current = 0;
    let left = 0;
    let expected = 0;
    let sent = 0;
    let resolveReady!: () => void;
    const ready = new Promise<void>((resolve) => (resolveReady = resolve));

    const send = (data: Buffer): void | Promise<void> => {
      if (body.destroyed) return;
      if (body.write(data)) return;
      return new Promise<void>((resolve) => {
        const done = () => {
          body.off('drain', done).off('close', done);
          resolve();
        };
        body.on('drain', done).on('close', done);
      });
    };
    /** The next file's tar header, when the files of a tar archive go on to the next. */
    const startFile = (): void => {
      while (files && current < files.length && left === 0) {
        const file = files[current]!;
        if (kind === 'tar') body.write(tarFileHeader(file.name, file.size, file.mtime, file.mode));
        left = file.size;
        if (left > 0) break;
        current++;
      }
    };
    /** The helper broke its protocol (its output is the kernel user's to tamper with): the transfer is cut. */
    let broken: Error | undefined;
    const breakOff = (why: string): void => {
      broken = new Error(why);
      abort.abort(broken);
    };
    const onData = (chunk: Buffer): void | Promise<void> => {
      if (broken) return;
      sent += chunk.length;
      if (sent > expected) return breakOff('file helper sent more than the files hold');
      let offset = 0;
      let pending: void | Promise<void> = undefined;
      while (offset < chunk.length) {
        const take = Math.min(left, chunk.length - offset);
        pending = send(chunk.subarray(offset, offset + take));
        offset += take;
        left -= take;
        if (left === 0) {
          const file = files![current]!;
          if (kind === 'tar') body.write(tarPadding(file.size));
          current++;
          startFile();
        }
      }
      return pending;
    };

    const transfer = kernel.exec(
      { cmd: helperCommand(this.limits.filesTimeoutMs, ['get', String(this.limits.downloadMaxBytes), ...names]), signal: abort.signal },
      (stream, chunk) => {
        if (stream === 'stderr') return stderr.push(chunk);
        if (files || broken) return onData(chunk);
        // The header is a few short lines; the data that follows it may come in the same chunk.
        const text = Buffer.concat([head, chunk]);
        const end = text.indexOf('data\n');
        if (end < 0) {
          if (text.length > headCap) return breakOff('file helper header is longer than its files allow');
          head = text;
          return;
        }
        if (end > headCap) return breakOff('file helper header is longer than its files allow');
        try {
          files = parseGetHeader(text.subarray(0, end).toString('utf8'), names, this.limits.downloadMaxBytes);
        } catch (error) {
          return breakOff((error as Error).message);
        }
        expected = files.reduce((sum, file) => sum + file.size, 0);
        resolveReady();
        startFile();
        const rest = text.subarray(end + 5);
        if (rest.length > 0) return onData(rest);
      },
    );
    touch(kernel);
    const clearDeadline = transferDeadline(this.limits, abort);
    void transfer.finally(clearDeadline).catch(() => undefined);
    const finished = transfer.then(({ exitCode }) => {
      touch(kernel);
      if (broken) throw broken;
      if (!files) throw this.refused(head.toString('utf8'), exitCode, names, 'read');
      if (exitCode !== 0 || sent !== expected) throw new Error(`file helper ended with ${exitCode} after ${sent} of ${expected} bytes: ${stderr.text().slice(0, 200)}`);
      if (kind === 'tar') body.write(TAR_END);
      body.end();
    });
    finished.catch((error: Error) => {
      // Before the body is handed out, nobody listens for its errors: the refusal is the caller's answer.
      if (!body.destroyed) body.destroy(files ? error : undefined);
    });
    await Promise.race([ready, finished]);
    if (!files) {
      // finished rejected with the refusal (or resolved without a header, which it cannot).
      await finished;
      throw new Error('file helper ended without a header');
    }
    const length = kind === 'file' ? expected : tarLength(files);
    return { files, kind, length, body };
  }

  /**
   * Writes the parts into the work directory, all or none: each part is checked (name, size, count) as it
   * comes, and the helper commits them only after the last was received within the caps.
   */
  async upload(kernel: FilesKernel, parts: AsyncIterable<UploadPart>): Promise<UploadResult> {
    touch(kernel);
    const abort = new AbortController();
    const stdin = new PassThrough({ highWaterMark: 64 * 1024 });
    const out = new Bounded(256);
    let helperEnded = false;
    const clearDeadline = transferDeadline(this.limits, abort);
    const transfer = kernel
      .exec({ cmd: helperCommand(this.limits.filesTimeoutMs, ['put', String(this.limits.uploadMaxFiles)]), stdin, signal: abort.signal }, (stream, chunk) => {
        if (stream === 'stdout') out.push(chunk);
      })
      .finally(() => {
        helperEnded = true;
        clearDeadline();
      });
    // Refused before the transfer ends: the helper's own refusal (a full disk) is the better answer.
    transfer.catch(() => undefined);
    const write = async (data: Buffer | string) => {
      if (helperEnded) throw new HelperEnded();
      if (!stdin.write(data)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            stdin.off('drain', done).off('close', done);
            clearInterval(poll);
            resolve();
          };
          // The helper may end (a refusal) while its stdin is full: nothing would drain it then.
          const poll = setInterval(() => helperEnded && done(), 50);
          stdin.on('drain', done).on('close', done);
        });
      }
    };
    const names: string[] = [];
    const written: { name: string; size: number }[] = [];
    try {
      for await (const part of parts) {
        if (names.length >= this.limits.uploadMaxFiles) throw invalidInput(`more than ${this.limits.uploadMaxFiles} files in one upload (POLYKERNEL_UPLOAD_MAX_FILES); nothing was written`);
        const name = checkUploadName(part.name, names);
        names.push(name);
        await write(`f ${name}\n`);
        let size = 0;
        for await (const chunk of part.data) {
          size += chunk.length;
          if (size > this.limits.uploadMaxFileBytes) {
            throw new DomainError('payload_too_large', `file "${name.slice(0, 200)}" is larger than ${this.limits.uploadMaxFileBytes} bytes (POLYKERNEL_UPLOAD_MAX_FILE_BYTES); nothing was written`);
          }
          for (let offset = 0; offset < chunk.length; offset += 1 << 20) {
            const piece = chunk.subarray(offset, offset + (1 << 20));
            await write(`${piece.length}\n`);
            await write(piece);
          }
        }
        await write('0\n');
        written.push({ name, size });
      }
      if (names.length === 0) throw invalidInput('the upload has no file part (curl -F "file=@local.txt;filename=name.txt")');
      await write('commit\n');
      stdin.end();
    } catch (error) {
      // Nothing was committed: cutting the helper's stdin before "commit" makes it discard every staged file.
      abort.abort(error);
      stdin.destroy();
      if (error instanceof HelperEnded) {
        // The helper's refusal, or why it could not run (a container no longer running is a 409).
        const result = await transfer.catch((failure: Error) => failure);
        if (result instanceof Error) throw result;
        throw this.refused(out.text(), result.exitCode, names, 'write');
      }
      throw error;
    }
    const { exitCode } = await transfer;
    touch(kernel);
    if (exitCode !== 0 || out.text() !== 'ok\n') throw this.refused(out.text(), exitCode, names, 'write');
    return { files: written };
  }
}

class HelperEnded extends Error {}

/** An upload's name: a valid path, not twice, and no file where another needs a directory. */
function checkUploadName(name: string, earlier: readonly string[]): string {
  checkPath(name, 'filename');
  for (const other of earlier) {
    if (other === name) throw invalidInput(`filename "${name.slice(0, 80)}" appears twice in the upload`);
    const [short, long] = other.length < name.length ? [other, name] : [name, other];
    if (long.startsWith(`${short}/`)) throw invalidInput(`the upload has both a file "${short.slice(0, 80)}" and a file under it, "${long.slice(0, 80)}"`);
  }
  return name;
}

const GET_LINE = /^f (\d{1,4}) (\d{1,20}) ([0-7]{1,6}) (-?\d{1,20})$/;

/** The helper's "f <index> <size> <mode> <mtime>" lines, one per file asked for, in order. */
export function parseGetHeader(text: string, names: readonly string[], maxTotal: number): DownloadedFile[] {
  const lines = text.split('\n');
  if (lines.pop() !== '' || lines.length !== names.length) throw new Error('file helper header does not list every file');
  let total = 0;
  return lines.map((line, i) => {
    const match = GET_LINE.exec(line);
    if (!match || Number(match[1]) !== i) throw new Error('file helper printed a malformed header line');
    const size = Number(match[2]);
    total += size;
    if (!Number.isSafeInteger(size) || total > maxTotal) throw new Error('file helper announced more bytes than the cap');
    return { name: names[i]!, size, mode: parseInt(match[3]!, 8), mtime: Math.max(0, Number(match[4])) };
  });
}

/** Length of the tar archive of `files` (headers, data, padding, end). */
function tarLength(files: readonly DownloadedFile[]): number {
  let length = TAR_END.length;
  for (const file of files) length += tarFileHeader(file.name, file.size, file.mtime, file.mode).length + file.size + tarPadding(file.size).length;
  return length;
}

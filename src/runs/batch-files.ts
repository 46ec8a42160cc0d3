/**
 * The files of a batch run: their names checked at the edge (relative, normalised, inside the work
 * directory); src/runs/batch.ts writes them through the image's file helper, as a v1 upload. And the
 * POSIX ustar format (https://pubs.opengroup.org/onlinepubs/9699919799/utilities/pax.html), with a pax
 * `path` record for names longer than the 100 bytes of the header's name field, in which a v1 download
 * of several files is answered.
 */
import { invalidInput } from '../errors.js';
import { KERNEL_GID, KERNEL_UID } from '../runtime/runtime.js';

export interface BatchFile {
  name: string;
  content: string;
}

export const MAX_BATCH_FILES = 100;
export const MAX_FILE_NAME_BYTES = 1024;
/** NAME_MAX of Linux file systems (tmpfs included). */
const MAX_SEGMENT_BYTES = 255;

/** Why `name` cannot name a file in the work directory, or undefined when it can. */
export function fileNameProblem(name: string): string | undefined {
  if (name === '') return 'is empty';
  if (Buffer.byteLength(name) > MAX_FILE_NAME_BYTES) return `is longer than ${MAX_FILE_NAME_BYTES} bytes`;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(name)) return 'contains a control character (NUL, newline, …)';
  if (name.startsWith('/')) return 'is absolute; names are relative to the work directory';
  for (const segment of name.split('/')) {
    if (segment === '..') return 'has a ".." segment: it would leave the work directory';
    if (segment === '' || segment === '.') return 'is not normalised (empty or "." segment, or a trailing "/")';
    if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) return `has a segment longer than ${MAX_SEGMENT_BYTES} bytes`;
  }
  return undefined;
}

/**
 * Checks the files of a batch request: each name (see fileNameProblem), no name twice, no file where
 * another needs a directory ("a" and "a/b"), at most MAX_BATCH_FILES files and `maxTotalBytes` of content.
 */
export function checkBatchFiles(files: readonly BatchFile[], maxTotalBytes: number): BatchFile[] {
  if (files.length > MAX_BATCH_FILES) throw invalidInput(`options.files has ${files.length} files; at most ${MAX_BATCH_FILES}`);
  const names = new Set<string>();
  let total = 0;
  files.forEach((file, i) => {
    const problem = fileNameProblem(file.name);
    if (problem) throw invalidInput(`options.files[${i}].name "${file.name.slice(0, 80)}" ${problem}`);
    if (names.has(file.name)) throw invalidInput(`options.files[${i}].name "${file.name.slice(0, 80)}" appears twice`);
    names.add(file.name);
    total += Buffer.byteLength(file.content);
  });
  for (const name of names) {
    const segments = name.split('/');
    for (let depth = 1; depth < segments.length; depth++) {
      const dir = segments.slice(0, depth).join('/');
      if (names.has(dir)) throw invalidInput(`options.files has both a file "${dir.slice(0, 80)}" and a file under it, "${name.slice(0, 80)}"`);
    }
  }
  if (total > maxTotalBytes) throw invalidInput(`options.files hold ${total} bytes; at most ${maxTotalBytes}`);
  return files.map(({ name, content }) => ({ name, content }));
}

const BLOCK = 512;

function octal(value: number, width: number): string {
  // width - 1 digits and a NUL, as ustar's numeric fields are.
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function header(name: string, size: number, type: '0' | 'x', mtime: number, mode = 0o644): Buffer {
  const block = Buffer.alloc(BLOCK);
  const nameBytes = Buffer.from(name);
  if (nameBytes.length > 100) throw new Error(`tar header name longer than 100 bytes: ${name.slice(0, 40)}…`);
  nameBytes.copy(block, 0);
  block.write(octal(mode & 0o7777, 8), 100, 'ascii');
  block.write(octal(KERNEL_UID, 8), 108, 'ascii');
  block.write(octal(KERNEL_GID, 8), 116, 'ascii');
  block.write(octal(size, 12), 124, 'ascii');
  block.write(octal(mtime, 12), 136, 'ascii');
  block.write(' '.repeat(8), 148, 'ascii');
  block.write(type, 156, 'ascii');
  block.write('ustar\x0000', 257, 'ascii');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return block;
}

/** One pax record, "<length> <key>=<value>\n", where length counts the whole record, its own digits too. */
function paxRecord(key: string, value: string): Buffer {
  const body = Buffer.byteLength(` ${key}=${value}\n`);
  let length = body + 1;
  while (String(length).length + body !== length) length = String(length).length + body;
  return Buffer.from(`${length} ${key}=${value}\n`);
}

function padded(data: Buffer): Buffer[] {
  const rest = data.length % BLOCK;
  return rest === 0 ? [data] : [data, Buffer.alloc(BLOCK - rest)];
}

/**
 * The header blocks of one regular file of a tar archive (a pax `path` record first when the name is longer
 * than the header's 100 bytes); its `size` bytes and `tarPadding(size)` follow.
 */
export function tarFileHeader(name: string, size: number, mtime: number, mode = 0o644): Buffer {
  const parts: Buffer[] = [];
  if (Buffer.byteLength(name) > 100) {
    const pax = paxRecord('path', name);
    parts.push(header('PaxHeader', pax.length, 'x', mtime), ...padded(pax));
    // The pax record names the file; the header's own name is only for readers without pax support.
    name = 'long-name';
  }
  parts.push(header(name, size, '0', mtime, mode));
  return Buffer.concat(parts);
}

/** The zeros that fill a file's data up to a whole block. */
export function tarPadding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

/** The end of an archive: two zero blocks. */
export const TAR_END = Buffer.alloc(2 * BLOCK);

/** A tar archive of regular files (mode 0644): the format of a multi-file download, whole (its unit test reads it with GNU tar). */
export function tarArchive(files: readonly BatchFile[], mtime = Math.floor(Date.now() / 1000)): Buffer {
  const parts: Buffer[] = [];
  for (const file of files) {
    const content = Buffer.from(file.content);
    parts.push(tarFileHeader(file.name, content.length, mtime), ...padded(content));
  }
  parts.push(TAR_END);
  return Buffer.concat(parts);
}

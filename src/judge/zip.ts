/**
 * Reads the files of a .zip (Judge0's additional_files) in the service, within bounds, instead of running
 * unzip in the sandbox: entries are read from the central directory, stored or deflated, and only regular
 * files with plain relative names are kept. Refused with a message: encrypted entries, ZIP64, links,
 * names with `..` or an absolute path, more than MAX_ENTRIES entries, or more than `maxBytes` unpacked in
 * all (inflate stops at the bound: a zip bomb costs no more than the bound).
 */
import { inflateRawSync } from 'node:zlib';
import type { SourceFile } from './model.js';

export const MAX_ENTRIES = 1000;
const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

export class ZipError extends Error {}

/** A name the sandbox can take as it is: relative, no `..`, no empty or odd parts. */
export function safeRelativeName(name: string): boolean {
  if (name.length === 0 || name.length > 255 || name.startsWith('/') || name.includes('\\') || name.includes('\0')) return false;
  return name.split('/').every((part) => part !== '' && part !== '.' && part !== '..' && !/[\x00-\x1f]/.test(part));
}

export function readZip(zip: Buffer, maxBytes: number): SourceFile[] {
  let eocd = -1;
  for (let at = zip.length - 22; at >= Math.max(0, zip.length - 22 - 0xffff); at--) {
    if (zip.readUInt32LE(at) === EOCD) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) throw new ZipError('is not a zip archive (no end of central directory)');
  const count = zip.readUInt16LE(eocd + 10);
  const cdOffset = zip.readUInt32LE(eocd + 16);
  if (count === 0xffff || cdOffset === 0xffffffff) throw new ZipError('is a ZIP64 archive, which is not supported');
  if (count > MAX_ENTRIES) throw new ZipError(`has ${count} entries (at most ${MAX_ENTRIES})`);
  const files: SourceFile[] = [];
  let total = 0;
  let at = cdOffset;
  for (let i = 0; i < count; i++) {
    if (at + 46 > zip.length || zip.readUInt32LE(at) !== CENTRAL) throw new ZipError('has a damaged central directory');
    const madeBy = zip.readUInt16LE(at + 4) >> 8;
    const flags = zip.readUInt16LE(at + 8);
    const method = zip.readUInt16LE(at + 10);
    const compressedSize = zip.readUInt32LE(at + 20);
    const size = zip.readUInt32LE(at + 24);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    const mode = zip.readUInt32LE(at + 38) >>> 16;
    const localOffset = zip.readUInt32LE(at + 42);
    const name = zip.subarray(at + 46, at + 46 + nameLength).toString('utf8');
    at += 46 + nameLength + extraLength + commentLength;
    // 3 = made on Unix: the high bits of the external attributes are st_mode.
    const unixType = madeBy === 3 && mode !== 0 ? mode & S_IFMT : undefined;
    if (name.endsWith('/') || unixType === S_IFDIR) continue;
    if (unixType !== undefined && unixType !== S_IFREG) throw new ZipError(`entry "${name.slice(0, 80)}" is not a regular file (links are not allowed)`);
    if (!safeRelativeName(name)) throw new ZipError(`entry "${name.slice(0, 80)}" has a name that is not a plain relative path`);
    if (flags & 1) throw new ZipError(`entry "${name.slice(0, 80)}" is encrypted`);
    if (size === 0xffffffff || compressedSize === 0xffffffff) throw new ZipError('is a ZIP64 archive, which is not supported');
    total += size;
    if (total > maxBytes) throw new ZipError(`unpacks to more than ${Math.floor(maxBytes / 1024)} KB`);
    if (localOffset + 30 > zip.length || zip.readUInt32LE(localOffset) !== LOCAL) throw new ZipError(`entry "${name.slice(0, 80)}" is damaged`);
    const dataStart = localOffset + 30 + zip.readUInt16LE(localOffset + 26) + zip.readUInt16LE(localOffset + 28);
    const data = zip.subarray(dataStart, dataStart + compressedSize);
    if (data.length !== compressedSize) throw new ZipError(`entry "${name.slice(0, 80)}" is cut short`);
    let content: Buffer;
    if (method === 0) content = Buffer.from(data);
    else if (method === 8) {
      try {
        content = inflateRawSync(data, { maxOutputLength: Math.max(1, size) });
      } catch {
        throw new ZipError(`entry "${name.slice(0, 80)}" does not inflate to its stated size`);
      }
    } else throw new ZipError(`entry "${name.slice(0, 80)}" uses compression method ${method} (only stored and deflated are supported)`);
    if (content.length !== size) throw new ZipError(`entry "${name.slice(0, 80)}" does not inflate to its stated size`);
    files.push({ name, content });
  }
  return files;
}

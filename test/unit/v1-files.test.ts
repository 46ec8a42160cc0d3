/**
 * The pure parts of the v1 files routes: the multipart reader (every split of a body into chunks, bounded
 * headers, malformed bodies refused), the docker exec demultiplexer (frames split anywhere, backpressure),
 * and the checks of what the file helper prints (its output is the kernel user's to tamper with).
 */
import test from 'ava';
import { PassThrough } from 'node:stream';
import { DomainError } from '../../src/errors.js';
import { MAX_PART_HEADER_BYTES, MultipartReader, multipartBoundary } from '../../src/api/multipart.js';
import { demuxExecOutput } from '../../src/runtime/exec-demux.js';
import { fileModeString, parseGetHeader, parseListing } from '../../src/files/work-dir-files.js';

const B = 'XyZ-boundary';

function body(parts: { disposition: string; data: string | Buffer }[], preamble = ''): Buffer {
  return Buffer.concat([
    Buffer.from(preamble),
    ...parts.flatMap((p) => [Buffer.from(`--${B}\r\nContent-Disposition: ${p.disposition}\r\n\r\n`), Buffer.from(p.data), Buffer.from('\r\n')]),
    Buffer.from(`--${B}--\r\n`),
  ]);
}

async function* chunks(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

async function readAll(source: AsyncIterable<Buffer>): Promise<{ filename?: string; field?: string; data: string }[]> {
  const reader = new MultipartReader(source, B);
  const out = [];
  for (;;) {
    const part = await reader.next();
    if (!part) return out;
    const data: Buffer[] = [];
    for await (const chunk of reader.body()) data.push(chunk);
    out.push({ filename: part.filename, field: part.field, data: Buffer.concat(data).toString('latin1') });
  }
}

test('multipart: parts come out whole however the body is split into chunks', async (t) => {
  const tricky = `a\r\n--${B.slice(0, 5)}\r\n-\r\n--${B}x`.replace(`--${B}x`, `--${B.slice(0, -1)}`);
  const data = body(
    [
      { disposition: 'form-data; name="file"; filename="dir/a.txt"', data: 'hello' },
      { disposition: 'form-data; name="file"; filename="b \\"q\\".bin"', data: tricky },
      { disposition: `form-data; name="file"; filename*=UTF-8''${encodeURIComponent('é/ü.txt')}`, data: '' },
    ],
    'preamble to ignore\r\n',
  );
  const expected = [
    { filename: 'dir/a.txt', field: 'file', data: 'hello' },
    { filename: 'b "q".bin', field: 'file', data: tricky },
    { filename: 'é/ü.txt', field: 'file', data: '' },
  ];
  for (const size of [1, 2, 3, 7, 13, 64, data.length]) t.deepEqual(await readAll(chunks(data, size)), expected, `chunks of ${size}`);
});

test('multipart: a body cut short, an endless header, a part without Content-Disposition are 400s', async (t) => {
  const full = body([{ disposition: 'form-data; name="f"; filename="a"', data: 'x'.repeat(100) }]);
  for (const cut of [10, 60, full.length - 10]) {
    const error = await t.throwsAsync(readAll(chunks(full.subarray(0, cut), 16)));
    t.true(error instanceof DomainError && error.code === 'invalid_input', `cut at ${cut}`);
  }
  const endless = Buffer.concat([Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="f"; filename="`), Buffer.alloc(MAX_PART_HEADER_BYTES + 10, 0x61)]);
  await t.throwsAsync(readAll(chunks(endless, 1000)), { message: /headers are longer/ });
  await t.throwsAsync(readAll(chunks(Buffer.from(`--${B}\r\nContent-Type: text/plain\r\n\r\nx\r\n--${B}--`), 8)), { message: /Content-Disposition/ });
  await t.throwsAsync(readAll(chunks(Buffer.alloc(MAX_PART_HEADER_BYTES + 100, 0x62), 64)), { message: /does not start with its boundary/ });
});

test('multipart: the Content-Type must be multipart/form-data with a boundary', (t) => {
  t.is(multipartBoundary(`multipart/form-data; boundary=${B}`), B);
  t.is(multipartBoundary('Multipart/Form-Data; charset=utf-8; boundary="quoted boundary"'), 'quoted boundary');
  t.is(t.throws(() => multipartBoundary('application/json'))!.message.includes('multipart/form-data'), true);
  t.is((t.throws(() => multipartBoundary('application/json')) as DomainError).code, 'unsupported_media_type');
  t.is((t.throws(() => multipartBoundary('multipart/form-data')) as DomainError).code, 'invalid_input');
  t.is((t.throws(() => multipartBoundary(`multipart/form-data; boundary=${'b'.repeat(71)}`)) as DomainError).code, 'invalid_input');
});

function frame(type: number, payload: string): Buffer {
  const header = Buffer.alloc(8);
  header[0] = type;
  header.writeUInt32BE(Buffer.byteLength(payload), 4);
  return Buffer.concat([header, Buffer.from(payload)]);
}

test('exec demux: frames split anywhere come out per stream, in order; a slow consumer is awaited', async (t) => {
  const wire = Buffer.concat([frame(1, 'out one '), frame(2, 'err'), frame(1, ''), frame(1, 'out two'), frame(0, 'stdin echo')]);
  for (const size of [1, 3, 8, 9, wire.length]) {
    const source = new PassThrough();
    const got = { stdout: '', stderr: '' };
    let inFlight = 0;
    const done = demuxExecOutput(source, async (stream, chunk) => {
      inFlight++;
      t.is(inFlight, 1, 'one chunk at a time');
      await new Promise((resolve) => setTimeout(resolve, 1));
      got[stream] += chunk.toString();
      inFlight--;
    });
    for (let i = 0; i < wire.length; i += size) source.write(wire.subarray(i, i + size));
    source.end();
    await done;
    t.deepEqual(got, { stdout: 'out one out two', stderr: 'err' }, `chunks of ${size}`);
  }
});

test('helper listing: records are parsed and checked; a cut or forged listing is refused', (t) => {
  const out = Buffer.from('e f 644 12 1700000000 500000000 b.txt\0e d 755 60 1700000001 0 a dir\0e l 777 4 1 0 link\0t\0.\0');
  const listing = parseListing(out, 3);
  t.true(listing.truncated);
  t.deepEqual(listing.files, [
    { name: 'a dir', type: 'dir', size: 60, mode: 'drwxr-xr-x', mtime: 1700000001 },
    { name: 'b.txt', type: 'file', size: 12, mode: '-rw-r--r--', mtime: 1700000000.5 },
    { name: 'link', type: 'symlink', size: 4, mode: 'lrwxrwxrwx', mtime: 1 },
  ]);
  t.throws(() => parseListing(Buffer.from('e f 644 12 1 0 b.txt\0'), 3), { message: /cut short/ });
  t.throws(() => parseListing(out, 2), { message: /more entries/ });
  t.throws(() => parseListing(Buffer.from('e f 644 12 1 0 a/b\0.\0'), 3), { message: /malformed/ });
  t.throws(() => parseListing(Buffer.from('e x 644 12 1 0 a\0.\0'), 3), { message: /malformed/ });
  t.is(fileModeString('file', 0o4755), '-rwsr-xr-x');
  t.is(fileModeString('dir', 0o1777), 'drwxrwxrwt');
  t.is(fileModeString('other', 0o2640), '?rw-r-S---');
});

test('helper get header: one line per file asked, in order, within the cap', (t) => {
  t.deepEqual(parseGetHeader('f 0 5 644 1700000000\nf 1 0 600 1\n', ['a', 'b'], 10), [
    { name: 'a', size: 5, mode: 0o644, mtime: 1700000000 },
    { name: 'b', size: 0, mode: 0o600, mtime: 1 },
  ]);
  t.throws(() => parseGetHeader('f 0 5 644 1\n', ['a', 'b'], 10), { message: /every file/ });
  t.throws(() => parseGetHeader('f 1 5 644 1\nf 0 5 644 1\n', ['a', 'b'], 10), { message: /malformed/ });
  t.throws(() => parseGetHeader('f 0 11 644 1\n', ['a'], 10), { message: /more bytes than the cap/ });
  t.throws(() => parseGetHeader('f 0 5 644 1', ['a'], 10), { message: /every file/ });
});

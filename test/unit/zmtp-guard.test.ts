/**
 * The ZMTP 3 reader of the kernel relay (zmtp-guard.ts): messages within the bounds pass whatever the
 * chunking; a message past the frame or byte bound is refused at the header of the frame that passes it,
 * before that frame's body, so it is never forwarded whole.
 */
import test from 'ava';
import { ZmtpInspector } from '../../src/transport/zmtp-guard.js';

const greeting = () => {
  const g = Buffer.alloc(64);
  g[0] = 0xff;
  g[9] = 0x7f;
  g[10] = 3;
  g[11] = 1;
  g.write('NULL', 12);
  return g;
};

const frame = (body: Buffer, more: boolean, command = false) => {
  const long = body.length > 255;
  const flags = (more ? 1 : 0) | (long ? 2 : 0) | (command ? 4 : 0);
  const header = long ? Buffer.alloc(9) : Buffer.alloc(2);
  header[0] = flags;
  if (long) header.writeBigUInt64BE(BigInt(body.length), 1);
  else header[1] = body.length;
  return Buffer.concat([header, body]);
};

const message = (sizes: number[]) => Buffer.concat(sizes.map((size, i) => frame(Buffer.alloc(size, 120), i < sizes.length - 1)));

/** Feeds `data` in chunks of `chunk` bytes; the offset at which it was refused, or -1. */
const feed = (inspector: ZmtpInspector, data: Buffer, chunk: number) => {
  for (let at = 0; at < data.length; at += chunk) if (!inspector.accept(data.subarray(at, at + chunk))) return at;
  return -1;
};

test('messages within the bounds pass, one byte at a time or all at once', (t) => {
  const stream = Buffer.concat([greeting(), frame(Buffer.from('READY'), false, true), message([10, 300, 2, 0]), message([1000, 1000])]);
  for (const chunk of [1, 7, 64, stream.length]) {
    const inspector = new ZmtpInspector({ maxFrames: 4, maxBytes: 2000 });
    t.is(feed(inspector, stream, chunk), -1, `chunks of ${chunk}`);
  }
});

test('a message of too many frames is refused at the frame past the bound', (t) => {
  const inspector = new ZmtpInspector({ maxFrames: 6, maxBytes: 1 << 30 });
  t.is(feed(inspector, Buffer.concat([greeting(), message(Array(7).fill(1))]), 1), 64 + 6 * 3 + 1);
  t.regex(inspector.violation!, /more than 6 frames/);
});

test('a message of too many bytes is refused before the body of the frame that passes the bound', (t) => {
  const inspector = new ZmtpInspector({ maxFrames: 64, maxBytes: 1000 });
  const data = Buffer.concat([greeting(), message([600, 600])]);
  const refusedAt = feed(inspector, data, 1);
  t.is(refusedAt, 64 + 9 + 600 + 8, 'at the last byte of the second frame header');
  t.regex(inspector.violation!, /more than 1000 bytes/);
  t.false(inspector.accept(Buffer.alloc(1)), 'stays refused');
});

test('counts reset at the end of each message; a huge command or an old protocol is refused', (t) => {
  const ok = new ZmtpInspector({ maxFrames: 2, maxBytes: 100 });
  t.is(feed(ok, Buffer.concat([greeting(), ...Array(50).fill(message([60, 40]))]), 13), -1);
  const command = new ZmtpInspector({ maxFrames: 2, maxBytes: 100 });
  t.false(command.accept(Buffer.concat([greeting(), frame(Buffer.alloc(70_000), false, true)])));
  const old = greeting();
  old[10] = 2;
  t.false(new ZmtpInspector({ maxFrames: 2, maxBytes: 100 }).accept(old));
});

test('the relay connects to the kernel socket itself, never through a link put in its place', async (t) => {
  const { mkdtemp, rm, symlink } = await import('node:fs/promises');
  const net = await import('node:net');
  const os = await import('node:os');
  const path = await import('node:path');
  const { connectKernel } = await import('../../src/transport/zmtp-guard.js');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pk-guard-'));
  const target = path.join(dir, 'host.sock');
  const server = net.createServer((socket) => socket.end('hello'));
  await new Promise<void>((resolve) => server.listen(target, resolve));
  await symlink(target, path.join(dir, 'k-1'));
  const outcome = (endpoint: string) =>
    new Promise<string>((resolve) => {
      const socket = connectKernel(endpoint);
      socket.on('data', (data) => resolve(`data ${data}`));
      socket.on('error', (error) => resolve(`error ${error.message}`));
    });
  t.is(await outcome(`ipc://${target}`), 'data hello');
  t.regex(await outcome(`ipc://${path.join(dir, 'k-1')}`), /^error .*not a socket/);
  t.regex(await outcome(`ipc://${path.join(dir, 'k-2')}`), /^error .*ENOENT/);
  server.close();
  await rm(dir, { recursive: true, force: true });
});

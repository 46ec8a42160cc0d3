/**
 * The judge supervisor's wire format (src/judge/supervisor-protocol.ts): frames the service sends are laid
 * out as the supervisor reads them, frames it answers decode into what they say, and a malformed, unknown or
 * oversized frame is an error at once (nothing of an oversized frame is buffered).
 */
import test from 'ava';
import {
  encode,
  FrameDecoder,
  MAX_FRAME_BYTES,
  ProtocolError,
  RUN_LIMIT_ORDER,
  signalName,
  signalNumber,
} from '../../src/judge/supervisor-protocol.js';
import { fileNameProblem } from '../../src/judge/docker-sandboxes.js';
import type { RunLimits } from '../../src/judge/model.js';

const limits: RunLimits = {
  cpuTimeMs: 1000,
  extraCpuTimeMs: 200,
  wallTimeMs: 3000,
  memoryKB: 65536,
  stackKB: 8192,
  maxProcesses: 10,
  maxOutputBytes: 4096,
  maxFileSizeKB: 512,
};

function frameOf(type: string, payload: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(payload.length + 1, 0);
  header.write(type, 4, 'latin1');
  return Buffer.concat([header, payload]);
}

function result(fields: { cpu: number; wall: number; kb: number; exit: number; signo: number; killed: number; flags: number }): Buffer {
  const b = Buffer.alloc(22);
  b.writeUInt32BE(fields.cpu, 0);
  b.writeUInt32BE(fields.wall, 4);
  b.writeUInt32BE(fields.kb, 8);
  b.writeInt32BE(fields.exit, 12);
  b.writeUInt32BE(fields.signo, 16);
  b[20] = fields.killed;
  b[21] = fields.flags;
  return frameOf('T', b);
}

test('a run frame carries the user, flags, limits in order, argv and env as the supervisor reads them', (t) => {
  const frame = encode.run({ as: 'program', argv: ['./main', 'a b'], env: { X: '1' }, limits, stderrToStdout: true, nprocRlimit: true });
  t.is(frame.readUInt32BE(0), frame.length - 4);
  t.is(String.fromCharCode(frame[4]!), 'R');
  const p = frame.subarray(5);
  t.is(p[0], 1);
  t.is(p[1], 3);
  RUN_LIMIT_ORDER.forEach((name, i) => t.is(p.readUInt32BE(2 + 4 * i), limits[name]));
  t.is(p.readUInt16BE(34), 2);
  t.is(p.readUInt16BE(36), 1);
  const strings: string[] = [];
  for (let at = 38; at < p.length; ) {
    const length = p.readUInt32BE(at);
    strings.push(p.subarray(at + 4, at + 4 + length).toString());
    at += 4 + length;
  }
  t.deepEqual(strings, ['./main', 'a b', 'X=1']);
  t.is(encode.run({ as: 'builder', argv: ['true'], limits })[5], 0);
});

test('file, stdin and signal frames', (t) => {
  t.deepEqual(encode.fileOpen('src/a.c'), frameOf('F', Buffer.concat([Buffer.from([0]), Buffer.from('src/a.c')])));
  t.deepEqual(encode.fileData(Buffer.from('xy')), frameOf('D', Buffer.from('xy')));
  t.deepEqual(encode.fileClose(), frameOf('E', Buffer.alloc(0)));
  t.deepEqual(encode.stdin(Buffer.from('1 2\n')), frameOf('I', Buffer.from('1 2\n')));
  t.deepEqual(encode.stdinClose(), frameOf('C', Buffer.alloc(0)));
  t.deepEqual(encode.signal(15), frameOf('G', Buffer.from([15])));
  t.throws(() => encode.fileData(Buffer.alloc(MAX_FRAME_BYTES)), { instanceOf: ProtocolError });
});

test('the decoder reassembles frames split anywhere and decodes each kind', (t) => {
  const stream = Buffer.concat([
    frameOf('H', Buffer.from([0, 0, 0, 1])),
    frameOf('K', Buffer.alloc(0)),
    frameOf('X', Buffer.from('file a: exists')),
    frameOf('O', Buffer.concat([Buffer.from([1]), Buffer.from('out')])),
    frameOf('O', Buffer.concat([Buffer.from([2]), Buffer.from('err')])),
    frameOf('A', Buffer.from([0, 1, 0, 0])),
    result({ cpu: 12, wall: 30, kb: 1500, exit: -1, signo: 11, killed: 0, flags: 0 }),
    result({ cpu: 1200, wall: 1300, kb: 900, exit: -1, signo: 9, killed: 1, flags: 2 }),
    result({ cpu: 1, wall: 2, kb: 3, exit: 7, signo: 0, killed: 4, flags: 1 }),
  ]);
  for (const step of [1, 3, 7, stream.length]) {
    const decoder = new FrameDecoder();
    const frames = [];
    for (let at = 0; at < stream.length; at += step) frames.push(...decoder.push(stream.subarray(at, at + step)));
    t.is(decoder.pendingBytes, 0);
    t.deepEqual(frames.slice(0, 6), [
      { type: 'hello', version: 1 },
      { type: 'ok' },
      { type: 'error', message: 'file a: exists' },
      { type: 'output', stream: 'stdout', data: Buffer.from('out') },
      { type: 'output', stream: 'stderr', data: Buffer.from('err') },
      { type: 'stdin-ack', bytes: 65536 },
    ]);
    t.deepEqual(frames[6], {
      type: 'result',
      result: { cpuTimeMs: 12, wallTimeMs: 30, memoryKB: 1500, exitCode: null, signal: 'SIGSEGV', execFailed: false, unusable: false },
    });
    t.deepEqual(frames[7], {
      type: 'result',
      result: { cpuTimeMs: 1200, wallTimeMs: 1300, memoryKB: 900, exitCode: null, signal: 'SIGKILL', killedFor: 'cpu-time', execFailed: false, unusable: true },
    });
    t.deepEqual(frames[8], {
      type: 'result',
      result: { cpuTimeMs: 1, wallTimeMs: 2, memoryKB: 3, exitCode: 7, signal: null, killedFor: 'output', execFailed: true, unusable: false },
    });
  }
});

test('an oversized or zero frame length is refused before its bytes are buffered', (t) => {
  const huge = Buffer.alloc(4);
  huge.writeUInt32BE(MAX_FRAME_BYTES + 1, 0);
  t.throws(() => new FrameDecoder().push(huge), { instanceOf: ProtocolError, message: /out of bounds/ });
  t.throws(() => new FrameDecoder().push(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x4f])), { instanceOf: ProtocolError });
  t.throws(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 0])), { instanceOf: ProtocolError });
  // The largest allowed frame is fine.
  const decoder = new FrameDecoder();
  const big = frameOf('O', Buffer.concat([Buffer.from([1]), Buffer.alloc(MAX_FRAME_BYTES - 2)]));
  t.is(decoder.push(big).length, 1);
});

test('malformed frames: unknown type, wrong payload size, unknown stream or reason', (t) => {
  t.throws(() => new FrameDecoder().push(frameOf('Z', Buffer.alloc(0))), { instanceOf: ProtocolError, message: /unknown frame type/ });
  t.throws(() => new FrameDecoder().push(frameOf('H', Buffer.alloc(3))), { instanceOf: ProtocolError });
  t.throws(() => new FrameDecoder().push(frameOf('K', Buffer.alloc(1))), { instanceOf: ProtocolError });
  t.throws(() => new FrameDecoder().push(frameOf('T', Buffer.alloc(21))), { instanceOf: ProtocolError });
  t.throws(() => new FrameDecoder().push(frameOf('O', Buffer.alloc(0))), { instanceOf: ProtocolError });
  t.throws(() => new FrameDecoder().push(frameOf('O', Buffer.from([3, 65]))), { instanceOf: ProtocolError });
  t.throws(() => new FrameDecoder().push(result({ cpu: 0, wall: 0, kb: 0, exit: 0, signo: 0, killed: 9, flags: 0 })), { instanceOf: ProtocolError });
});

test('signal names and numbers', (t) => {
  t.is(signalName(11), 'SIGSEGV');
  t.is(signalName(25), 'SIGXFSZ');
  t.is(signalName(40), 'SIG40');
  t.is(signalNumber('SIGTERM'), 15);
  t.is(signalNumber('kill'), 9);
  t.is(signalNumber('2'), 2);
  t.is(signalNumber('SIGNOPE'), undefined);
  t.is(signalNumber('99'), undefined);
});

test('file names: relative, plain parts only', (t) => {
  for (const good of ['main.c', 'Main.java', 'src/lib.rs', 'a/b/c+d_e-f.txt']) t.is(fileNameProblem(good), undefined, good);
  for (const bad of ['', '/etc/passwd', '../x', 'a/../b', './a', 'a//b', 'a/', '-rf', 'a b', 'a\0b', 'x\n', 'é.c', 'a'.repeat(256)])
    t.truthy(fileNameProblem(bad), JSON.stringify(bad));
});

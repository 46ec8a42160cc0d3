/**
 * The WebSocket framings against the codecs of real Jupyter peers: JupyterLab's own serializer
 * (@jupyterlab/services) and jupyter_server's (Debian's python3-jupyter-server). Frames we encode decode
 * there to the same message, theirs decode here, and malformed frames fail with WebSocketFrameError only.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import jlab from '@jupyterlab/services/lib/kernel/serialize.js';
import { newMessage, type JupyterMessage } from '../../src/protocol/messages.js';
import { DELIMITER, deserialize, MessageSigner, serialize } from '../../src/protocol/wire.js';
import {
  decodeFrame,
  encodeLegacy,
  encodeV1,
  requestChannel,
  V1_PROTOCOL,
  WebSocketFrameError,
} from '../../src/protocol/websocket.js';

const message = (buffers: Buffer[] = []): JupyterMessage =>
  newMessage(
    'comm_msg',
    { comm_id: 'c1', data: { text: 'héllo ✓', n: [1, 2, 3] } },
    {
      session: 'sess-1',
      parent: newMessage('execute_request', { code: 'x' }, { session: 'sess-1' }),
      metadata: { tag: 'm' },
      buffers,
    },
  );

const toArrayBuffer = (buffer: Buffer): ArrayBuffer => buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.length) as ArrayBuffer;
const bytesOf = (view: DataView | ArrayBuffer): Buffer =>
  view instanceof DataView ? Buffer.from(view.buffer, view.byteOffset, view.byteLength) : Buffer.from(view);

test('v1: a frame we encode is the same message to JupyterLab, buffers included', (t) => {
  const msg = message([Buffer.from([0, 1, 2, 255]), Buffer.from('second')]);
  const frame = encodeV1('iopub', msg);
  t.true(frame.binary);
  const theirs = jlab.deserialize(toArrayBuffer(frame.data), V1_PROTOCOL) as any;
  t.is(theirs.channel, 'iopub');
  t.deepEqual(theirs.header, msg.header);
  t.deepEqual(theirs.parent_header, msg.parent_header);
  t.deepEqual(theirs.metadata, msg.metadata);
  t.deepEqual(theirs.content, msg.content);
  t.deepEqual(theirs.buffers.map(bytesOf), msg.buffers);
});

test('v1: a frame JupyterLab encodes decodes here to its channel and message', (t) => {
  const msg = message([Buffer.from('abc')]);
  const theirs = jlab.serialize({ ...msg, channel: 'shell', buffers: [new Uint8Array(msg.buffers[0]!).buffer] } as any, V1_PROTOCOL) as ArrayBuffer;
  const { channel, msg: ours } = decodeFrame('v1', Buffer.from(theirs), true);
  t.is(channel, 'shell');
  t.deepEqual(ours.header, msg.header);
  t.deepEqual(ours.parent_header, msg.parent_header);
  t.deepEqual(ours.content, msg.content);
  t.deepEqual(ours.buffers, [Buffer.from('abc')]);
});

test('legacy: JSON text with channel, msg_id and msg_type at the top level, as jupyter_server writes it', (t) => {
  const msg = message();
  const frame = encodeLegacy('shell', msg);
  t.false(frame.binary);
  const parsed = JSON.parse(frame.data.toString('utf8'));
  t.is(parsed.channel, 'shell');
  t.is(parsed.msg_id, msg.header.msg_id);
  t.is(parsed.msg_type, 'comm_msg');
  t.deepEqual(parsed.buffers, []);
  const theirs = jlab.deserialize(frame.data.toString('utf8') as any) as any;
  t.deepEqual(theirs.content, msg.content);
});

test('legacy: a message with buffers is jupyter_server\'s binary framing, both ways with JupyterLab', (t) => {
  const msg = message([Buffer.from([9, 8, 7]), Buffer.alloc(0), Buffer.from('z')]);
  const frame = encodeLegacy('iopub', msg);
  t.true(frame.binary);
  const theirs = jlab.deserialize(toArrayBuffer(frame.data)) as any;
  t.is(theirs.channel, 'iopub');
  t.deepEqual(theirs.header, msg.header);
  t.deepEqual(theirs.buffers.map(bytesOf), msg.buffers);

  const back = jlab.serialize({ ...msg, channel: 'shell', buffers: [new Uint8Array([5, 6]).buffer] } as any) as ArrayBuffer;
  const decoded = decodeFrame('legacy', Buffer.from(back), true);
  t.is(decoded.channel, 'shell');
  t.deepEqual(decoded.msg.content, msg.content);
  t.deepEqual(decoded.msg.buffers, [Buffer.from([5, 6])]);
});

test('both framings agree with jupyter_server\'s Python codecs', (t) => {
  const msg = message([Buffer.from('buf')]);
  const v1 = encodeV1('iopub', msg).data.toString('base64');
  const legacy = encodeLegacy('iopub', msg).data.toString('base64');
  const script = `
import base64, json, sys
from jupyter_server.base.zmqhandlers import (deserialize_msg_from_ws_v1, serialize_msg_to_ws_v1,
    deserialize_binary_message)
inp = json.load(sys.stdin)
channel, parts = deserialize_msg_from_ws_v1(base64.b64decode(inp["v1"]))
legacy = deserialize_binary_message(base64.b64decode(inp["legacy"]))
theirs = serialize_msg_to_ws_v1([b'{"msg_id":"p1","msg_type":"kernel_info_request","session":"s9"}', b"{}", b"{}", b"{}", b"xyz"], "control")
print(json.dumps({"channel": channel, "header": json.loads(parts[0]), "content": json.loads(parts[3]),
  "buffers": [p.decode() for p in parts[4:]], "legacy_channel": legacy["channel"],
  "legacy_msg_id": legacy["header"]["msg_id"], "legacy_buffers": [bytes(b).decode() for b in legacy["buffers"]],
  "theirs": base64.b64encode(theirs).decode()}))
`;
  const out = JSON.parse(
    execFileSync('/usr/bin/python3', ['-c', script], { input: JSON.stringify({ v1, legacy }), encoding: 'utf8', timeout: 30_000 }),
  );
  t.is(out.channel, 'iopub');
  t.deepEqual(out.header, msg.header);
  t.deepEqual(out.content, msg.content);
  t.deepEqual(out.buffers, ['buf']);
  t.is(out.legacy_channel, 'iopub');
  t.is(out.legacy_msg_id, msg.header.msg_id);
  t.deepEqual(out.legacy_buffers, ['buf']);
  const decoded = decodeFrame('v1', Buffer.from(out.theirs, 'base64'), true);
  t.is(decoded.channel, 'control');
  t.is(decoded.msg.header.msg_type, 'kernel_info_request');
  t.deepEqual(decoded.msg.buffers, [Buffer.from('xyz')]);
});

test('a client message without parent_header or metadata gets empty ones; unknown msg_types pass', (t) => {
  const text = JSON.stringify({ channel: 'shell', header: { msg_id: 'a', msg_type: 'made_up_request', session: 's' }, content: { q: 1 } });
  const { channel, msg } = decodeFrame('legacy', Buffer.from(text), false);
  t.is(channel, 'shell');
  t.deepEqual(msg.parent_header, {});
  t.deepEqual(msg.metadata, {});
  t.is(msg.header.msg_type, 'made_up_request');
});

test('requestChannel: shell by default; iopub and unknown channels are refused', (t) => {
  t.is(requestChannel(undefined), 'shell');
  t.is(requestChannel('stdin'), 'stdin');
  t.is(requestChannel('control'), 'control');
  t.throws(() => requestChannel('iopub'), { instanceOf: WebSocketFrameError });
  t.throws(() => requestChannel('hb'), { instanceOf: WebSocketFrameError });
});

test('malformed frames fail with WebSocketFrameError and a reason', (t) => {
  const header = { msg_id: 'a', msg_type: 'kernel_info_request', session: 's' };
  const v1Good = encodeV1('shell', { header, parent_header: {}, metadata: {}, content: {}, buffers: [] } as any).data;
  const corrupt = (mutate: (b: Buffer) => void) => {
    const copy = Buffer.from(v1Good);
    mutate(copy);
    return copy;
  };
  const cases: [string, 'v1' | 'legacy', Buffer, boolean, RegExp][] = [
    ['not JSON', 'legacy', Buffer.from('{"header":'), false, /not valid JSON/],
    ['a JSON array', 'legacy', Buffer.from('[1,2]'), false, /not a JSON object/],
    ['no header', 'legacy', Buffer.from('{"content":{}}'), false, /header must be an object/],
    ['header without session', 'legacy', Buffer.from('{"header":{"msg_id":"a","msg_type":"x"}}'), false, /header.session/],
    ['content not an object', 'legacy', Buffer.from(JSON.stringify({ header, content: 'x' })), false, /content must be an object/],
    ['channel not a string', 'legacy', Buffer.from(JSON.stringify({ header, channel: 5 })), false, /channel must be a string/],
    ['legacy binary too short', 'legacy', Buffer.from([0, 0]), true, /shorter/],
    ['legacy binary with absurd count', 'legacy', Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 8]), true, /impossible/],
    ['a text frame on v1', 'v1', Buffer.from('{}'), false, /text frame/],
    ['v1 too short', 'v1', Buffer.from([1, 2, 3]), true, /shorter/],
    ['v1 with a huge part count', 'v1', corrupt((b) => b.writeBigUInt64LE(1n << 60n, 0)), true, /impossible/],
    ['v1 offsets out of order', 'v1', corrupt((b) => b.writeBigUInt64LE(0n, 16)), true, /out of order/],
    ['v1 offset past the end', 'v1', corrupt((b) => b.writeBigUInt64LE(BigInt(b.length + 10), 24)), true, /out of range/],
    ['v1 header not JSON', 'v1', corrupt((b) => b.write('#', Number(b.readBigUInt64LE(16)))), true, /header is not valid JSON/],
  ];
  for (const [name, framing, data, binary, reason] of cases) {
    const error = t.throws(() => decodeFrame(framing, data, binary), { instanceOf: WebSocketFrameError }, name);
    t.regex(error?.message ?? '', reason, name);
  }
});

test('random bytes never fail with anything but WebSocketFrameError', (t) => {
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const good = encodeV1('shell', message([Buffer.from('x')])).data;
  for (let i = 0; i < 2000; i++) {
    const data = Buffer.from(good);
    for (let j = 0; j < 1 + Math.floor(random() * 8); j++) data[Math.floor(random() * data.length)] = Math.floor(random() * 256);
    for (const [framing, binary] of [['v1', true], ['legacy', true], ['legacy', false]] as const) {
      try {
        decodeFrame(framing, data, binary);
      } catch (error) {
        if (!(error instanceof WebSocketFrameError)) t.fail(`${framing}: ${(error as Error).stack}`);
      }
    }
  }
  t.pass();
});

test('a message received from a kernel reaches clients with its JSON bytes as they came, in both framings', (t) => {
  const signer = new MessageSigner('k3y');
  const source = message([Buffer.from([7, 8, 9])]);
  // Valid JSON as a kernel might write it, but not as JSON.stringify would: spacing and \u escapes.
  const content = Buffer.from('{ "comm_id" : "c1", "data": {"text": "h\\u00e9llo"} }');
  const frames = serialize({ ...source, wire: undefined }, signer);
  const delimiter = frames.findIndex((f) => f.equals(DELIMITER));
  const signed = [frames[delimiter + 2]!, frames[delimiter + 3]!, frames[delimiter + 4]!, content];
  const received = deserialize([DELIMITER, Buffer.from(signer.sign(signed)), ...signed, ...frames.slice(delimiter + 6)], signer);
  t.deepEqual(received.content, { comm_id: 'c1', data: { text: 'héllo' } });

  const v1 = encodeV1('iopub', received).data;
  t.true(v1.includes(content), 'the v1 frame carries the content bytes verbatim');
  const legacy = encodeLegacy('iopub', received).data;
  t.true(legacy.includes(content), 'the legacy frame carries the content bytes verbatim');
  // And both still decode, in JupyterLab's codecs, to the message.
  const viaV1 = jlab.deserialize(v1.buffer.slice(v1.byteOffset, v1.byteOffset + v1.length) as ArrayBuffer, V1_PROTOCOL) as any;
  t.deepEqual(viaV1.content, { comm_id: 'c1', data: { text: 'héllo' } });
  t.is(viaV1.header.msg_id, source.header.msg_id);
  const viaLegacy = jlab.deserialize(legacy.buffer.slice(legacy.byteOffset, legacy.byteOffset + legacy.length) as ArrayBuffer, '') as any;
  t.deepEqual(viaLegacy.content, { comm_id: 'c1', data: { text: 'héllo' } });
  t.is(viaLegacy.channel, 'iopub');
  t.is(viaLegacy.msg_type, 'comm_msg');
});

test('a v1 client frame is sent to the kernel with its parts as the client wrote them', (t) => {
  const signer = new MessageSigner('k3y');
  const parts = ['shell', JSON.stringify(message().header), '{}', '{ }', '{"code" : "1+1"}'].map((p) => Buffer.from(p));
  const head = Buffer.alloc(8 * 7);
  head.writeBigUInt64LE(6n, 0);
  let offset = head.length;
  head.writeBigUInt64LE(BigInt(offset), 8);
  parts.forEach((part, i) => {
    offset += part.length;
    head.writeBigUInt64LE(BigInt(offset), 8 * (i + 2));
  });
  const { msg } = decodeFrame('v1', Buffer.concat([head, ...parts]), true);
  const frames = serialize(msg, signer);
  const delimiter = frames.findIndex((f) => f.equals(DELIMITER));
  t.deepEqual(frames.slice(delimiter + 2, delimiter + 6).map(String), parts.slice(1).map(String));
  t.deepEqual(deserialize(frames, signer).content, { code: '1+1' });
});

/**
 * Jupyter messages on a WebSocket, in the two framings Jupyter servers speak. Pure functions, no sockets.
 *
 * - `v1.kernel.websocket.jupyter.org` (jupyter_server's `serialize_msg_to_ws_v1`, JupyterLab's
 *   `serializeV1KernelWebsocketJupyterOrg`): always binary,
 *     [n: u64 LE][offset_0 … offset_{n-1}: u64 LE][channel][header][parent_header][metadata][content][buffers…]
 *   where part i spans offset_i .. offset_{i+1} (the last part ends at the frame's end).
 * - the legacy protocol (no subprotocol): a JSON text frame `{header, parent_header, metadata, content,
 *   buffers: [], channel, msg_id, msg_type}`, or, when the message has binary buffers, jupyter_server's
 *   `serialize_binary_message`: [nbufs: u32 BE][offsets: u32 BE × nbufs][JSON][buffers…].
 *
 * Decoding checks only what the service needs to forward a message safely (a header with msg_id,
 * msg_type and session; object-valued parts). Everything else, including message types this service
 * has never heard of, passes through untouched.
 */
import { isChannel, type Channel, type JsonObject, type JupyterMessage, type MessageHeader } from './messages.js';

export const V1_PROTOCOL = 'v1.kernel.websocket.jupyter.org';

/** Which framing a connection speaks: chosen once, at the handshake. */
export type WsFraming = 'v1' | 'legacy';

export class WebSocketFrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebSocketFrameError';
  }
}

/** A message from a client: the channel it names (undefined when it names none) and the message. */
export interface ClientFrame {
  channel: string | undefined;
  msg: JupyterMessage;
}

/** A frame ready for `ws.send(data, { binary })`: encoded once, sent to any number of sockets. */
export interface EncodedFrame {
  data: Buffer;
  binary: boolean;
}

// ---------------------------------------------------------------------------------------------------
// Kernel -> client

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

/** header, parent_header, metadata and content as JSON bytes: as they came in when they did (no re-encoding). */
function signedParts(msg: JupyterMessage): readonly Buffer[] {
  return msg.wire ?? [json(msg.header), json(msg.parent_header ?? {}), json(msg.metadata ?? {}), json(msg.content ?? {})];
}

export function encodeV1(channel: Channel, msg: JupyterMessage): EncodedFrame {
  const parts = [Buffer.from(channel, 'utf8'), ...signedParts(msg), ...msg.buffers];
  const count = parts.length + 1;
  const head = Buffer.allocUnsafe(8 * (count + 1));
  head.writeBigUInt64LE(BigInt(count), 0);
  let offset = head.length;
  head.writeBigUInt64LE(BigInt(offset), 8);
  parts.forEach((part, i) => {
    offset += part.length;
    head.writeBigUInt64LE(BigInt(offset), 8 * (i + 2));
  });
  return { data: Buffer.concat([head, ...parts]), binary: true };
}

const LEGACY_KEYS = ['{"header":', ',"parent_header":', ',"metadata":', ',"content":'].map((key) => Buffer.from(key));

/**
 * The JSON body jupyter_server writes: the message, msg_id/msg_type at the top level, its channel, and
 * `buffers: []` when the buffers travel in the text frame's stead (`withBuffersKey`). Assembled from the
 * message's JSON parts, so a message that came in is not encoded again.
 */
function legacyBody(channel: Channel, msg: JupyterMessage, withBuffersKey: boolean): Buffer {
  const parts = signedParts(msg);
  const tail = `,"msg_id":${JSON.stringify(msg.header.msg_id)},"msg_type":${JSON.stringify(msg.header.msg_type)}` +
    `${withBuffersKey ? ',"buffers":[]' : ''},"channel":${JSON.stringify(channel)}}`;
  return Buffer.concat([LEGACY_KEYS[0]!, parts[0]!, LEGACY_KEYS[1]!, parts[1]!, LEGACY_KEYS[2]!, parts[2]!, LEGACY_KEYS[3]!, parts[3]!, Buffer.from(tail)]);
}

export function encodeLegacy(channel: Channel, msg: JupyterMessage): EncodedFrame {
  if (msg.buffers.length === 0) return { data: legacyBody(channel, msg, true), binary: false };
  const parts = [legacyBody(channel, msg, false), ...msg.buffers];
  const head = Buffer.allocUnsafe(4 * (parts.length + 1));
  head.writeUInt32BE(parts.length, 0);
  let offset = head.length;
  parts.forEach((part, i) => {
    head.writeUInt32BE(offset, 4 * (i + 1));
    offset += part.length;
  });
  return { data: Buffer.concat([head, ...parts]), binary: true };
}

// ---------------------------------------------------------------------------------------------------
// Client -> kernel

function parseObject(text: string, what: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new WebSocketFrameError(`${what} is not valid JSON`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new WebSocketFrameError(`${what} is not a JSON object`);
  }
  return value as JsonObject;
}

/** `undefined`/`null` become `{}` (clients send `parent_header: null`); anything else must be an object. */
function optionalObject(value: unknown, what: string): JsonObject {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new WebSocketFrameError(`${what} must be an object`);
  return value as JsonObject;
}

function checkHeader(value: unknown): MessageHeader {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new WebSocketFrameError('header must be an object');
  }
  const header = value as Partial<MessageHeader>;
  for (const field of ['msg_id', 'msg_type', 'session'] as const) {
    if (typeof header[field] !== 'string' || header[field] === '') {
      throw new WebSocketFrameError(`header.${field} must be a non-empty string`);
    }
  }
  return header as MessageHeader;
}

function messageOf(body: JsonObject, buffers: Buffer[]): ClientFrame {
  const channel = body.channel;
  if (channel !== undefined && channel !== null && typeof channel !== 'string') {
    throw new WebSocketFrameError('channel must be a string');
  }
  return {
    channel: channel ?? undefined,
    msg: {
      header: checkHeader(body.header),
      parent_header: optionalObject(body.parent_header, 'parent_header') as JupyterMessage['parent_header'],
      metadata: optionalObject(body.metadata, 'metadata'),
      content: optionalObject(body.content, 'content'),
      buffers,
    },
  };
}

/** Reads `count` offsets and checks they are ordered and inside the frame. */
function checkedOffsets(read: (i: number) => number, count: number, first: number, length: number): number[] {
  const offsets: number[] = [];
  let previous = first;
  for (let i = 0; i < count; i++) {
    const offset = read(i);
    if (!Number.isSafeInteger(offset) || offset < previous || offset > length) {
      throw new WebSocketFrameError('frame offsets are out of order or out of range');
    }
    offsets.push(offset);
    previous = offset;
  }
  return offsets;
}

function decodeV1(frame: Buffer): ClientFrame {
  if (frame.length < 8) throw new WebSocketFrameError('v1 frame is shorter than its offset count');
  const bigCount = frame.readBigUInt64LE(0);
  // channel + the four JSON parts need 6 offsets; each offset takes 8 bytes of the frame.
  if (bigCount < 6n || bigCount > BigInt(Math.floor(frame.length / 8) - 1)) {
    throw new WebSocketFrameError('v1 frame has an impossible number of parts');
  }
  const count = Number(bigCount);
  const offsets = checkedOffsets((i) => Number(frame.readBigUInt64LE(8 * (i + 1))), count, 8 * (count + 1), frame.length);
  const part = (i: number) => frame.subarray(offsets[i], offsets[i + 1]);
  const text = (i: number) => part(i).toString('utf8');
  const buffers: Buffer[] = [];
  // jupyter_server reads parts up to the last offset; the final offset marks the end of the last buffer.
  for (let i = 5; i < count - 1; i++) buffers.push(Buffer.from(part(i)));
  const decoded = messageOf(
    {
      channel: text(0),
      header: parseObject(text(1), 'header'),
      parent_header: parseObject(text(2), 'parent_header'),
      metadata: parseObject(text(3), 'metadata'),
      content: parseObject(text(4), 'content'),
    },
    buffers,
  );
  // Each part parsed as a JSON object: it goes to the kernel as the client wrote it, as jupyter_server
  // forwards a v1 frame's parts.
  decoded.msg.wire = [part(1), part(2), part(3), part(4)];
  return decoded;
}

function decodeLegacyBinary(frame: Buffer): ClientFrame {
  if (frame.length < 4) throw new WebSocketFrameError('binary frame is shorter than its buffer count');
  const count = frame.readUInt32BE(0);
  if (count < 1 || 4 * (count + 1) > frame.length) throw new WebSocketFrameError('binary frame has an impossible number of parts');
  const offsets = checkedOffsets((i) => frame.readUInt32BE(4 * (i + 1)), count, 4 * (count + 1), frame.length);
  const part = (i: number) => frame.subarray(offsets[i], i + 1 < count ? offsets[i + 1] : frame.length);
  const body = parseObject(part(0).toString('utf8'), 'message');
  const buffers: Buffer[] = [];
  for (let i = 1; i < count; i++) buffers.push(Buffer.from(part(i)));
  return messageOf(body, buffers);
}

/**
 * Decodes what a client sent. Throws WebSocketFrameError on anything malformed; the caller decides what
 * to do with the connection (this service keeps it open).
 */
export function decodeFrame(framing: WsFraming, data: Buffer, isBinary: boolean): ClientFrame {
  if (framing === 'v1') {
    if (!isBinary) throw new WebSocketFrameError(`a text frame on a ${V1_PROTOCOL} connection`);
    return decodeV1(data);
  }
  if (isBinary) return decodeLegacyBinary(data);
  return messageOf(parseObject(data.toString('utf8'), 'message'), []);
}

/** The channel a client message goes to; shell when it names none (as jupyter_server assumes). */
export function requestChannel(named: string | undefined): Exclude<Channel, 'iopub'> {
  const channel = named ?? 'shell';
  if (!isChannel(channel) || channel === 'iopub') {
    throw new WebSocketFrameError(`"${channel.slice(0, 40)}" is not a channel a client can send on (shell, control, stdin)`);
  }
  return channel;
}

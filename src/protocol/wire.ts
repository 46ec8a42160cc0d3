/**
 * Jupyter wire format over ZMQ: signing and (de)serialisation of multipart frames, exactly as
 * jupyter_client's `Session.serialize` / `Session.deserialize` do it. Pure functions, no sockets.
 *
 *   [identities…, "<IDS|MSG>", hmac, header, parent_header, metadata, content, buffers…]
 *
 * The HMAC (hex digest) covers header, parent_header, metadata and content, in that order; buffers are not
 * signed. An empty key disables signing (the signature frame is then empty), as in jupyter_client.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { JsonObject, JupyterMessage, MessageHeader } from './messages.js';

export const DELIMITER = Buffer.from('<IDS|MSG>');

export class WireFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireFormatError';
  }
}

export class MessageSigner {
  private readonly key: Buffer;

  constructor(key: string | Buffer, readonly scheme = 'hmac-sha256') {
    if (scheme !== 'hmac-sha256') throw new WireFormatError(`unsupported signature scheme ${scheme}`);
    this.key = Buffer.isBuffer(key) ? key : Buffer.from(key, 'utf8');
  }

  /** Hex HMAC-SHA256 over the four signed frames; '' when the key is empty (signing disabled). */
  sign(frames: readonly (Buffer | string)[]): string {
    if (this.key.length === 0) return '';
    const hmac = createHmac('sha256', this.key);
    for (const frame of frames) hmac.update(frame);
    return hmac.digest('hex');
  }

  /** Constant-time check of a received signature. */
  verify(signature: Buffer | string, frames: readonly (Buffer | string)[]): boolean {
    if (this.key.length === 0) return true;
    const expected = Buffer.from(this.sign(frames), 'utf8');
    const actual = Buffer.isBuffer(signature) ? signature : Buffer.from(signature, 'utf8');
    return actual.length === expected.length && timingSafeEqual(actual, expected);
  }
}

/** JSON as jupyter_client writes it; the exact bytes only matter to the signature, which covers what we send. */
function pack(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

export function serialize(msg: JupyterMessage, signer: MessageSigner): Buffer[] {
  const signed = msg.wire ?? [pack(msg.header), pack(msg.parent_header), pack(msg.metadata), pack(msg.content)];
  const signature = Buffer.from(signer.sign(signed), 'utf8');
  return [...(msg.identities ?? []), DELIMITER, signature, ...signed, ...msg.buffers];
}

function parseFrame(frame: Buffer, name: string): JsonObject {
  try {
    const value: unknown = JSON.parse(frame.toString('utf8'));
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new WireFormatError(`${name} frame is not a JSON object`);
    }
    return value as JsonObject;
  } catch (error) {
    if (error instanceof WireFormatError) throw error;
    throw new WireFormatError(`${name} frame is not valid JSON`);
  }
}

/** Parses and verifies a multipart message; throws WireFormatError on a bad frame or signature. */
export function deserialize(frames: readonly Buffer[], signer: MessageSigner): JupyterMessage {
  const delimiterAt = frames.findIndex((frame) => frame.equals(DELIMITER));
  if (delimiterAt < 0) throw new WireFormatError('missing <IDS|MSG> delimiter');
  if (frames.length < delimiterAt + 6) throw new WireFormatError('too few frames after the delimiter');
  const signature = frames[delimiterAt + 1]!;
  const signed = frames.slice(delimiterAt + 2, delimiterAt + 6);
  if (!signer.verify(signature, signed)) throw new WireFormatError('invalid message signature');
  const header = parseFrame(signed[0]!, 'header') as unknown as MessageHeader;
  if (typeof header.msg_id !== 'string' || typeof header.msg_type !== 'string') {
    throw new WireFormatError('header lacks msg_id or msg_type');
  }
  return {
    identities: frames.slice(0, delimiterAt),
    header,
    parent_header: parseFrame(signed[1]!, 'parent_header') as JupyterMessage['parent_header'],
    metadata: parseFrame(signed[2]!, 'metadata'),
    content: parseFrame(signed[3]!, 'content'),
    buffers: frames.slice(delimiterAt + 6).map((frame) => Buffer.from(frame)),
    wire: signed,
  };
}

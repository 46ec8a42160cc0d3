/**
 * Z85 (ZeroMQ RFC 32), the text form libzmq takes Curve keys in: 4 bytes become 5 characters. Pure;
 * zeromq.js exports no encoder.
 */
const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';
const DECODE = new Map([...ALPHABET].map((char, index) => [char, index]));

export function z85Encode(data: Uint8Array): string {
  if (data.length % 4 !== 0) throw new Error('Z85 encodes whole groups of 4 bytes');
  let out = '';
  for (let at = 0; at < data.length; at += 4) {
    let value = ((data[at]! << 24) >>> 0) + (data[at + 1]! << 16) + (data[at + 2]! << 8) + data[at + 3]!;
    const chars: string[] = [];
    for (let i = 0; i < 5; i++) {
      chars.unshift(ALPHABET[value % 85]!);
      value = Math.floor(value / 85);
    }
    out += chars.join('');
  }
  return out;
}

/** The bytes of a Z85 string, or undefined when it is not one. */
export function z85Decode(text: string): Buffer | undefined {
  if (text.length % 5 !== 0) return undefined;
  const out = Buffer.alloc((text.length / 5) * 4);
  for (let at = 0; at < text.length; at += 5) {
    let value = 0;
    for (let i = 0; i < 5; i++) {
      const digit = DECODE.get(text[at + i]!);
      if (digit === undefined) return undefined;
      value = value * 85 + digit;
    }
    if (value > 0xffffffff) return undefined;
    out.writeUInt32BE(value, (at / 5) * 4);
  }
  return out;
}

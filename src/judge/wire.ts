/**
 * Submissions and results hold program bytes as Buffers; the store holds JSON. A Buffer is written as
 * `{"$base64": "..."}` (a tenth of the size of Buffer's own `{"type":"Buffer","data":[...]}`) and read back
 * as a Buffer, at any depth.
 */
const TAG = '$base64';

export function toWire(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return { [TAG]: value.toString('base64') };
  if (Array.isArray(value)) return value.map(toWire);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => [k, toWire(v)]));
  }
  return value;
}

export function fromWire<T>(value: unknown): T {
  return revive(value) as T;
}

function revive(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(revive);
  if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record);
    if (keys.length === 1 && keys[0] === TAG && typeof record[TAG] === 'string') return Buffer.from(record[TAG] as string, 'base64');
    return Object.fromEntries(keys.map((k) => [k, revive(record[k])]));
  }
  return value;
}

/**
 * End-of-cell markers in the output of a persistent child (bash, the JavaScript realm).
 *
 * The child writes `NUL "PK" token ":" payload NUL` to its stdout and stderr when a cell ends. A marker
 * travels in the same pipe as the cell's output, after it, so once the runner has seen the marker on both
 * streams it has read every byte the cell wrote before ending: a separate status channel could overtake
 * the output. The token is random per child, so a program cannot end its cell by accident.
 */
const NUL = 0;
/** A marker longer than this is not a marker (its writer was not us): it is passed on as output. */
const MAX_MARKER_BYTES = 1 << 20;

export function markerPrefix(token: string): Buffer {
  return Buffer.from(`\0PK${token}:`, 'latin1');
}

export function marker(token: string, payload: string): string {
  return `\0PK${token}:${payload}\0`;
}

export type ScanEvent = { kind: 'data'; data: Buffer } | { kind: 'marker'; payload: string };

export class SentinelScanner {
  private pending: Buffer = Buffer.alloc(0);

  constructor(private readonly prefix: Buffer) {}

  /** Splits a chunk into output and markers, holding back a possibly incomplete marker at its end. */
  push(chunk: Buffer): ScanEvent[] {
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    const events: ScanEvent[] = [];
    const data = (slice: Buffer) => {
      if (slice.length) events.push({ kind: 'data', data: slice });
    };
    for (;;) {
      const start = buf.indexOf(this.prefix);
      if (start < 0) {
        const keep = this.partialPrefixLength(buf);
        data(buf.subarray(0, buf.length - keep));
        this.pending = Buffer.from(buf.subarray(buf.length - keep));
        return events;
      }
      const end = buf.indexOf(NUL, start + this.prefix.length);
      if (end < 0) {
        data(buf.subarray(0, start));
        const rest = buf.subarray(start);
        if (rest.length > MAX_MARKER_BYTES) data(rest);
        else this.pending = Buffer.from(rest);
        return events;
      }
      data(buf.subarray(0, start));
      events.push({ kind: 'marker', payload: buf.subarray(start + this.prefix.length, end).toString('utf8') });
      buf = buf.subarray(end + 1);
    }
  }

  /** Output held back because it might begin a marker; given up when the stream ends. */
  flush(): Buffer {
    const rest = this.pending;
    this.pending = Buffer.alloc(0);
    return rest;
  }

  /** Length of the longest suffix of `buf` that is a proper prefix of the marker prefix. */
  private partialPrefixLength(buf: Buffer): number {
    const max = Math.min(this.prefix.length - 1, buf.length);
    for (let k = max; k > 0; k--) {
      if (buf.subarray(buf.length - k).equals(this.prefix.subarray(0, k))) return k;
    }
    return 0;
  }
}

/**
 * The `console` of a v1 run (query and batch modes): items in the order they were produced, runs of the
 * same stream merged, output past the per-run limit cut with a marker. Each call of the API takes what
 * accumulated since the previous one; the limit counts the whole run.
 */
import { StringDecoder } from 'node:string_decoder';

export type ConsoleItem =
  | ['stdout', string]
  | ['stderr', string]
  | ['media', [string, string]]
  | ['html', string];

export class ConsoleOutput {
  private pending: ConsoleItem[] = [];
  private outputBytes = 0;
  private truncated = false;
  /** Bytes of the items not taken yet: what this run holds in memory for its client. */
  private pendingBytes = 0;

  constructor(private readonly maxOutputBytes: number) {}

  /** Appends an item, merging runs of the same stream and cutting output past the limit with a marker. */
  push(item: ConsoleItem): void {
    if (this.truncated) return;
    const size = typeof item[1] === 'string' ? Buffer.byteLength(item[1]) : Buffer.byteLength(item[1][1]);
    if (this.outputBytes + size > this.maxOutputBytes) {
      this.truncated = true;
      // Keep what still fits of a stream chunk, so that one big print is cut rather than lost entirely.
      const room = this.maxOutputBytes - this.outputBytes;
      if (room > 0 && (item[0] === 'stdout' || item[0] === 'stderr')) {
        // StringDecoder leaves out a character cut in the middle of its UTF-8 bytes.
        const kept = new StringDecoder('utf8').write(Buffer.from(item[1]).subarray(0, room));
        if (kept) this.append([item[0], kept]);
      }
      this.pending.push(['stderr', `\n[output truncated: more than ${this.maxOutputBytes} bytes]\n`]);
      return;
    }
    this.outputBytes += size;
    this.append(item);
  }

  private append(item: ConsoleItem): void {
    this.pendingBytes += typeof item[1] === 'string' ? item[1].length : item[1][1].length;
    const last = this.pending[this.pending.length - 1];
    if (last && last[0] === item[0] && (item[0] === 'stdout' || item[0] === 'stderr')) {
      last[1] = (last[1] as string) + (item[1] as string);
    } else {
      this.pending.push(item);
    }
  }

  /** A notice from the service (the kernel died, …): its own stderr item, kept even past the limit. */
  notice(text: string): void {
    this.pendingBytes += text.length;
    this.pending.push(['stderr', text]);
  }

  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  /** Whether anything waits to be taken (a streaming client is sent it at once). */
  get hasPending(): boolean {
    return this.pending.length > 0;
  }

  /** Drops what is buffered and keeps nothing more (the run was discarded: nobody will take it). */
  discard(): void {
    this.pending = [];
    this.pendingBytes = 0;
    this.truncated = true;
  }

  /** The items accumulated since the last take. */
  take(): ConsoleItem[] {
    const items = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    return items;
  }
}

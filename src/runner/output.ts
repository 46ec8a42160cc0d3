/**
 * Turns a child's output into iopub `stream` messages: streamed as it comes, coalesced over a short window
 * (a program printing a million short lines must not become a million messages), in the order written
 * across stdout and stderr. A backlog of unsent output makes `write` return false, so the caller pauses
 * the child's pipe: the child then blocks on write, and the runner's memory stays bounded.
 *
 * An unfinished last line of stdout ("name? ") is held back briefly: when the program then blocks reading
 * stdin, that text becomes the prompt of the input_request, as a terminal would show it, and travels in
 * the same message as the request for input instead of racing it on another socket.
 */
import type { OutputSink, StreamName } from './executor.js';

export interface StreamPublisherOptions {
  flushMs?: number;
  /** A buffer this large is sent at once. */
  chunkBytes?: number;
  /** Backlog (buffered + in flight) above which writers are told to pause, and below which they resume. */
  highWaterBytes?: number;
  lowWaterBytes?: number;
  /** How long an unfinished stdout line may wait to become a prompt. */
  promptHoldMs?: number;
  clock?: () => number;
}

interface Chunk {
  name: StreamName;
  text: string;
}

export class StreamPublisher implements OutputSink {
  private chunks: Chunk[] = [];
  private bufferedBytes = 0;
  private timer?: NodeJS.Timeout;
  private heldSince?: number;
  private drainWaiters: (() => void)[] = [];
  private drainTimer?: NodeJS.Timeout;
  private readonly flushMs: number;
  private readonly chunkBytes: number;
  private readonly highWater: number;
  private readonly lowWater: number;
  private readonly promptHoldMs: number;
  private readonly clock: () => number;

  constructor(
    private readonly send: (name: StreamName, text: string) => void,
    private readonly inFlightBytes: () => number,
    options: StreamPublisherOptions = {},
  ) {
    this.flushMs = options.flushMs ?? 25;
    this.chunkBytes = options.chunkBytes ?? 64 * 1024;
    this.highWater = options.highWaterBytes ?? 8 * 1024 * 1024;
    this.lowWater = options.lowWaterBytes ?? 2 * 1024 * 1024;
    this.promptHoldMs = options.promptHoldMs ?? 500;
    this.clock = options.clock ?? Date.now;
  }

  write(name: StreamName, text: string): boolean {
    if (!text) return true;
    const last = this.chunks[this.chunks.length - 1];
    if (last && last.name === name) last.text += text;
    else this.chunks.push({ name, text });
    this.bufferedBytes += text.length;
    if (this.bufferedBytes >= this.chunkBytes) this.flush(true);
    else this.timer ??= setTimeout(() => this.flush(true), this.flushMs);
    return this.backlog() < this.highWater;
  }

  onDrain(callback: () => void): void {
    this.drainWaiters.push(callback);
    this.drainTimer ??= setInterval(() => {
      if (this.backlog() > this.lowWater) return;
      clearInterval(this.drainTimer);
      this.drainTimer = undefined;
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const waiter of waiters) waiter();
    }, 5);
  }

  /**
   * Sends what is buffered. With `holdPrompt`, an unfinished last stdout line stays behind (until it has
   * waited promptHoldMs); without, everything goes.
   */
  flush(holdPrompt = false): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    let held: Chunk | undefined;
    const last = this.chunks[this.chunks.length - 1];
    if (holdPrompt && last?.name === 'stdout' && !last.text.endsWith('\n')) {
      const now = this.clock();
      this.heldSince ??= now;
      if (now - this.heldSince < this.promptHoldMs) {
        const cut = last.text.lastIndexOf('\n') + 1;
        held = { name: 'stdout', text: last.text.slice(cut) };
        last.text = last.text.slice(0, cut);
      }
    }
    if (!held) this.heldSince = undefined;
    for (const chunk of this.chunks) if (chunk.text) this.send(chunk.name, chunk.text);
    this.chunks = held ? [held] : [];
    this.bufferedBytes = held ? held.text.length : 0;
    if (held) this.timer = setTimeout(() => this.flush(true), this.flushMs);
  }

  /** Takes the unfinished stdout line still held back, to be the prompt of an input_request. */
  takePrompt(): string {
    const last = this.chunks[this.chunks.length - 1];
    if (!last || last.name !== 'stdout' || last.text.endsWith('\n')) return '';
    const cut = last.text.lastIndexOf('\n') + 1;
    const prompt = last.text.slice(cut);
    last.text = last.text.slice(0, cut);
    this.bufferedBytes -= prompt.length;
    this.heldSince = undefined;
    return prompt;
  }

  private backlog(): number {
    return this.bufferedBytes + this.inFlightBytes();
  }

  close(): void {
    clearTimeout(this.timer);
    clearInterval(this.drainTimer);
  }
}

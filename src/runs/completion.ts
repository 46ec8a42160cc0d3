/**
 * v1 auto-completion (Backend.AI's complete call) as a Jupyter complete_request: the code before the
 * cursor and the code after it (`options.post`) make the cell, the cursor sits between them. Backend.AI
 * also sends the cursor's row, column and line; a Jupyter kernel needs only the offset, so those are
 * checked and otherwise unused.
 */
import { rateLimited, unavailable } from '../errors.js';
import type { LiveKernel } from '../kernels/live-kernel.js';
import type { JupyterMessage } from '../protocol/messages.js';

export interface CompleteRequest {
  /** The code up to the cursor. */
  code: string;
  /** The code after the cursor. */
  post: string;
}

export interface Completion {
  /** The matches in the kernel's order (Backend.AI's `result`). */
  matches: string[];
  /**
   * The text a match replaces: from cursorStart to cursorEnd, offsets in Unicode code points into
   * code + post (as Jupyter counts them).
   */
  cursorStart: number;
  cursorEnd: number;
}

/** The code around the cursor a client may send (code + post, in characters): a cell, not a file. */
export const MAX_COMPLETE_CODE_CHARS = 256 * 1024;
/** Completions waiting for one kernel's answer; more are refused (429), not queued behind a busy kernel. */
export const MAX_PENDING_COMPLETIONS = 4;
/** Matches passed on: a kernel may answer with thousands (`import ` lists every module). */
export const MAX_MATCHES = 1000;
const MAX_MATCH_CHARS = 1024;

/** What a completion needs of a kernel (LiveKernel has it). */
export type CompletionKernel = Pick<LiveKernel, 'id' | 'message' | 'request'>;

/** Length in Unicode code points, Jupyter's unit for cursor_pos since protocol 5.2. */
const codePoints = (text: string) => {
  let n = 0;
  for (const _ of text) n++;
  return n;
};

/** The kernel's complete_reply as Backend.AI's list of matches, with the span they replace. */
export function completionOf(reply: JupyterMessage, cursor: number, cellLength: number): Completion {
  const content = reply.content as { status?: unknown; matches?: unknown; cursor_start?: unknown; cursor_end?: unknown };
  // A kernel that fails to complete (status "error") simply has no matches, as Backend.AI's kernels do.
  const raw = content.status === 'ok' && Array.isArray(content.matches) ? content.matches : [];
  const matches = raw.filter((m): m is string => typeof m === 'string' && m.length <= MAX_MATCH_CHARS).slice(0, MAX_MATCHES);
  const position = (value: unknown, fallback: number) =>
    typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= cellLength ? value : fallback;
  const cursorEnd = position(content.cursor_end, cursor);
  const cursorStart = Math.min(position(content.cursor_start, cursor), cursorEnd);
  return { matches, cursorStart, cursorEnd };
}

/**
 * Completions in flight, per kernel. Each waits at most the timeout (then its request is left to the
 * kernel's table of unowned requests, which is bounded), and each kernel has a few at a time: a client
 * sending a million of them gets 429s, and the service holds no more than a few per kernel.
 */
export class Completions {
  private readonly pending = new Map<string, number>();

  constructor(private readonly timeoutMs: number) {}

  async complete(kernel: CompletionKernel, request: CompleteRequest): Promise<Completion> {
    const waiting = this.pending.get(kernel.id) ?? 0;
    if (waiting >= MAX_PENDING_COMPLETIONS) {
      throw rateLimited(`${MAX_PENDING_COMPLETIONS} completions already wait for kernel ${kernel.id} to answer; wait for one before sending another`);
    }
    this.pending.set(kernel.id, waiting + 1);
    try {
      const cursor = codePoints(request.code);
      const cell = request.code + request.post;
      const message = kernel.message('complete_request', { code: cell, cursor_pos: cursor });
      let reply: JupyterMessage;
      try {
        reply = await kernel.request('shell', message, this.timeoutMs);
      } catch {
        throw unavailable(`kernel ${kernel.id} did not answer the completion within ${this.timeoutMs} ms (a kernel running code answers once it is done); try again`);
      }
      return completionOf(reply, cursor, codePoints(cell));
    } finally {
      const left = (this.pending.get(kernel.id) ?? 1) - 1;
      if (left > 0) this.pending.set(kernel.id, left);
      else this.pending.delete(kernel.id);
    }
  }

  /** Kernels with completions in flight (each entry is removed with its last completion). */
  get size(): number {
    return this.pending.size;
  }
}

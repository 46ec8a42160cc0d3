/**
 * How many submissions are judged at once, and the bounded line of those waiting: a slot is taken before
 * any sandbox is made, and a full line is refused at once (503, as Judge0 answers a full queue) instead of
 * holding a client's request and its bytes without bound. A waiting submission whose signal is aborted
 * leaves the line.
 */
import { unavailable } from '../errors.js';

interface Waiter {
  grant(release: () => void): void;
  fail(error: unknown): void;
}

export class JudgeAdmission {
  private running = 0;
  private readonly waiting: Waiter[] = [];
  private closedWith?: Error;

  constructor(
    readonly concurrency: number,
    readonly queueSize: number,
  ) {}

  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Resolves with the release of a slot once one is free (release is idempotent). */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (this.running < this.concurrency) return Promise.resolve(this.take());
    if (this.waiting.length >= this.queueSize) {
      return Promise.reject(
        unavailable(`the judging queue is full (${this.queueSize} submissions waiting, ${this.concurrency} being judged); try again later`),
      );
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const at = this.waiting.indexOf(waiter);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(abortReason(signal!));
      };
      const waiter: Waiter = {
        grant: (release) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
        fail: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  /** Refuses every waiting and later submission with `error` (shutdown); running ones keep their slots. */
  close(error: Error): void {
    this.closedWith = error;
    for (const waiter of this.waiting.splice(0)) waiter.fail(error);
  }

  private take(): () => void {
    this.running += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.running -= 1;
      const next = this.waiting.shift();
      if (next) next.grant(this.take());
    };
  }
}

export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The submission was aborted', 'AbortError');
}

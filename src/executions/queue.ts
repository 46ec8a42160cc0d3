/**
 * First in, first out, at most `limit` at once: executions beyond POLYKERNEL_MAX_CONCURRENT_EXECUTIONS
 * wait here instead of failing (the original started a kernel per request, and too many at once made
 * kernels fail to start). A waiting task can be withdrawn (shutdown or delete before it started).
 */
export class WorkQueue {
  private readonly waiting = new Map<string, () => Promise<void>>();
  private readonly running = new Set<string>();

  constructor(private readonly limit: number, private readonly onError: (id: string, error: unknown) => void = () => {}) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError('the queue limit must be a whole number >= 1');
  }

  /** Adds a task; it starts as soon as fewer than `limit` run. */
  push(id: string, task: () => Promise<void>): void {
    if (this.waiting.has(id) || this.running.has(id)) throw new Error(`task ${id} is already queued`);
    this.waiting.set(id, task);
    this.pump();
  }

  /** Withdraws a task that has not started; false when it runs already or is unknown. */
  withdraw(id: string): boolean {
    return this.waiting.delete(id);
  }

  /** Withdraws every waiting task and returns their ids. */
  drain(): string[] {
    const ids = [...this.waiting.keys()];
    this.waiting.clear();
    return ids;
  }

  /** 1-based place of a waiting task, 0 when it is not waiting. */
  position(id: string): number {
    return [...this.waiting.keys()].indexOf(id) + 1;
  }

  get runningCount(): number {
    return this.running.size;
  }

  get waitingCount(): number {
    return this.waiting.size;
  }

  private pump(): void {
    while (this.running.size < this.limit && this.waiting.size > 0) {
      const [id, task] = this.waiting.entries().next().value as [string, () => Promise<void>];
      this.waiting.delete(id);
      this.running.add(id);
      void Promise.resolve()
        .then(task)
        .catch((error: unknown) => this.onError(id, error))
        .finally(() => {
          this.running.delete(id);
          this.pump();
        });
    }
  }
}

/**
 * One operation at a time per key, in arrival order: the lifecycle operations of one kernel (restart,
 * delete, interrupt, the reaction to its container's death) never overlap, so none of them works on a
 * container or directory that another is replacing. Different keys run in parallel. A key's entry lives
 * only while operations on it are queued, so the map holds at most one entry per operation in flight.
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, operation: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(operation, operation);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Whether an operation on `key` is running or queued. */
  busy(key: string): boolean {
    return this.tails.has(key);
  }

  get size(): number {
    return this.tails.size;
  }
}

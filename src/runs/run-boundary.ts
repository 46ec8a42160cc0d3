/**
 * How a run's pending `next` call learns that the run may have reached a boundary (finished, input
 * wanted, build finished, timed out): the run calls `notify` on every change, and `until` resolves once
 * the run's own test holds, or when the flush window is over. Shared by query and batch runs.
 */
export class RunBoundary {
  private wake?: () => void;

  notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  until(reached: () => boolean, flushWindowMs: number): Promise<void> {
    if (reached()) return Promise.resolve();
    return new Promise((resolve) => {
      const window = setTimeout(resolve, flushWindowMs);
      const check = () => {
        if (reached()) {
          clearTimeout(window);
          resolve();
        } else {
          this.wake = check;
        }
      };
      this.wake = check;
    });
  }
}

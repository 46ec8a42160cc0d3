/**
 * Warm sandboxes: per language, a few sandboxes already started (container and supervisor up, nothing
 * written, nothing run), so that a submission pays for its runs and not for a container start. A warm
 * sandbox is made with the server's caps (the largest memory and processes any submission may ask for):
 * every run's own limits are the supervisor's to enforce. It is handed out once, never returned, and
 * replaced in the background.
 */
import type { Logger } from '../logger.js';
import type { JudgeSandbox, SandboxSpec } from './model.js';

export interface WarmSandboxHooks {
  /** The spec of a warm sandbox of this language (undefined: the language is unknown now). */
  specFor(lang: string): Promise<SandboxSpec | undefined>;
  create(spec: SandboxSpec): Promise<JudgeSandbox>;
}

interface Ready {
  sandbox: JudgeSandbox;
  spec: SandboxSpec;
}

export class WarmSandboxes {
  private readonly ready = new Map<string, Ready[]>();
  private readonly starting = new Map<string, number>();
  /** Starts in progress, until their sandbox is in `ready` or closed: stop waits for them. */
  private readonly creating = new Set<Promise<void>>();
  private stopped = false;
  /** Resolves at stop, so that a start waiting out its backoff gives up at once. */
  private readonly stopping: Promise<void>;
  private wakeOnStop = () => {};
  /** Consecutive failed starts per language: refills back off so a broken image does not spin. */
  private readonly failures = new Map<string, number>();

  constructor(
    private readonly sizes: Readonly<Record<string, number>>,
    private readonly hooks: WarmSandboxHooks,
    private readonly log: Logger,
  ) {
    this.stopping = new Promise((resolve) => (this.wakeOnStop = resolve));
  }

  fill(): void {
    for (const lang of Object.keys(this.sizes)) this.refill(lang);
  }

  /**
   * A never-used sandbox of this language that can hold `needs` (its image and runtime, at least its
   * memory and processes), or undefined: the caller makes one cold.
   */
  take(lang: string, needs: SandboxSpec): JudgeSandbox | undefined {
    const list = this.ready.get(lang);
    if (!list) return undefined;
    const at = list.findIndex(({ spec }) => fits(spec, needs));
    if (at < 0) return undefined;
    const [taken] = list.splice(at, 1);
    this.refill(lang);
    return taken.sandbox;
  }

  readyCount(lang: string): number {
    return this.ready.get(lang)?.length ?? 0;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeOnStop();
    const all = [...this.ready.values()].flat();
    this.ready.clear();
    await Promise.all(all.map(({ sandbox }) => sandbox.close().catch(() => undefined)));
    // A sandbox being made now is closed as soon as it exists: none outlives the stop.
    await Promise.all([...this.creating]);
  }

  private refill(lang: string): void {
    if (this.stopped) return;
    const target = this.sizes[lang] ?? 0;
    const have = (this.ready.get(lang)?.length ?? 0) + (this.starting.get(lang) ?? 0);
    for (let i = have; i < target; i++) {
      const start = this.startOne(lang);
      this.creating.add(start);
      void start.finally(() => this.creating.delete(start));
    }
  }

  private async startOne(lang: string): Promise<void> {
    this.starting.set(lang, (this.starting.get(lang) ?? 0) + 1);
    let started: Ready | undefined;
    try {
      const failures = this.failures.get(lang) ?? 0;
      if (failures > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([new Promise((resolve) => (timer = setTimeout(resolve, Math.min(30_000, 500 * 2 ** failures)))), this.stopping]);
        clearTimeout(timer);
      }
      if (this.stopped) return;
      const spec = await this.hooks.specFor(lang);
      if (!spec) throw new Error(`no language ${lang}`);
      if (!this.stopped) started = { spec, sandbox: await this.hooks.create(spec) };
      this.failures.delete(lang);
    } catch (error) {
      this.failures.set(lang, (this.failures.get(lang) ?? 0) + 1);
      this.log.warn('Could not start a warm judge sandbox', { lang, error: (error as Error).message });
    } finally {
      this.starting.set(lang, (this.starting.get(lang) ?? 1) - 1);
    }
    if (!started) {
      if (!this.stopped && (this.failures.get(lang) ?? 0) > 0) this.refill(lang);
      return;
    }
    if (this.stopped) {
      await started.sandbox.close().catch(() => undefined);
      return;
    }
    const list = this.ready.get(lang) ?? [];
    list.push(started);
    this.ready.set(lang, list);
  }
}

function fits(have: SandboxSpec, needs: SandboxSpec): boolean {
  return (
    have.image === needs.image &&
    have.runtime === needs.runtime &&
    have.memoryKB >= needs.memoryKB &&
    have.maxProcesses >= needs.maxProcesses &&
    have.diskMB >= needs.diskMB
  );
}

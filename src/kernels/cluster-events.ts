/**
 * What one replica does to a kernel, told to the others sharing its store: a kernel deleted, restarted
 * (or being restarted), or found dead. One message on the store's `kernel-events` topic per event, JSON:
 *
 *   {"v":1,"kind":"deleted"|"restarting"|"restarted"|"died","kernelId":"<uuid>","generation":<n>,
 *    "from":"<replica id>","containerId"?:"…","reason"?:"…"}
 *
 * `generation` is the kernel's restart generation (KernelRecord.generation): 0 at its start, one more
 * after each restart. For "restarting" and "restarted" it is the generation the restart makes; for "died"
 * and "deleted" the one the kernel had. A replica compares it with what it holds, so a stale or
 * duplicate event changes nothing. Pub/sub is lossy (a subscriber that reconnects misses what was sent
 * meanwhile): the store then reports a gap, and the manager re-reads the record of every kernel it holds.
 * Events are hints; the record stays the truth.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../logger.js';
import type { Store } from '../store/store.js';

export type KernelEventKind = 'deleted' | 'restarting' | 'restarted' | 'died';

export interface KernelEvent {
  kind: KernelEventKind;
  kernelId: string;
  generation: number;
  containerId?: string;
  reason?: string;
}

const KINDS: ReadonlySet<string> = new Set<KernelEventKind>(['deleted', 'restarting', 'restarted', 'died']);
/** Anything longer is not ours: a peer on the same Redis sending junk costs a length check. */
const MAX_EVENT_CHARS = 2048;

export interface ClusterEventHandlers {
  event(event: KernelEvent): void;
  /** Events may have been missed. */
  gap(): void;
}

export class ClusterEvents {
  /** This process's name on the topic: its own events come back to it and are skipped. */
  readonly replica = randomUUID();
  private unsubscribe?: () => void;

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly handlers: ClusterEventHandlers,
  ) {}

  async start(): Promise<void> {
    this.unsubscribe ??= await this.store.subscribe('kernel-events', {
      message: (raw) => {
        const event = parseEvent(raw, this.replica);
        if (event) this.handlers.event(event);
      },
      onGap: () => this.handlers.gap(),
    });
  }

  /** Best effort: a replica that misses it converges from the record (see the module comment). */
  async publish(event: KernelEvent): Promise<void> {
    try {
      await this.store.publish('kernel-events', JSON.stringify({ v: 1, ...event, from: this.replica }));
    } catch (error) {
      this.log.warn('Could not tell the other replicas about a kernel', { kernelId: event.kernelId, kind: event.kind, error: (error as Error).message });
    }
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }
}

/** The event, or undefined for this replica's own, malformed or foreign messages. */
export function parseEvent(raw: string, self: string): KernelEvent | undefined {
  if (raw.length > MAX_EVENT_CHARS) return undefined;
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || value.v !== 1 || value.from === self) return undefined;
  const { kind, kernelId, generation, containerId, reason } = value;
  if (typeof kind !== 'string' || !KINDS.has(kind) || typeof kernelId !== 'string' || kernelId.length > 100) return undefined;
  if (typeof generation !== 'number' || !Number.isSafeInteger(generation) || generation < 0) return undefined;
  return {
    kind: kind as KernelEventKind,
    kernelId,
    generation,
    containerId: typeof containerId === 'string' ? containerId : undefined,
    reason: typeof reason === 'string' ? reason.slice(0, 200) : undefined,
  };
}

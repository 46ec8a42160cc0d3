/**
 * Shared state behind one small interface: namespaced JSON records. Kernels, the clientSessionToken index,
 * sessions, executions and judged submissions all live here, so that with Redis they survive a restart of the service and
 * are seen by every replica. `putIfAbsent` is the one atomic primitive (claims of tokens and names).
 */
export type Namespace = 'kernels' | 'tokens' | 'sessions' | 'executions' | 'submissions' | 'submission-index' | 'kernel-claims';

/** A publish/subscribe channel between the replicas sharing the store (cluster-events.ts). */
export type Topic = 'kernel-events';

/** What hears a topic. `onGap`: messages may have been missed (the subscriber's connection was lost). */
export interface TopicListener {
  message(message: string): void;
  onGap?(): void;
}

export interface Store {
  get<T>(ns: Namespace, id: string): Promise<T | undefined>;
  put<T>(ns: Namespace, id: string, value: T): Promise<void>;
  /** Writes only when no record with this id exists; true when it wrote. */
  putIfAbsent<T>(ns: Namespace, id: string, value: T): Promise<boolean>;
  /** Merges fields into an existing record (undefined ones are ignored); false (and no write) when there is none. */
  update<T extends object>(ns: Namespace, id: string, patch: Partial<T>): Promise<boolean>;
  delete(ns: Namespace, id: string): Promise<boolean>;
  list<T>(ns: Namespace): Promise<T[]>;
  /**
   * Sends a message to every subscriber of `topic`, this process's included. Best effort: a replica whose
   * subscription is down meanwhile misses it (Redis pub/sub keeps nothing), and hears `onGap` instead.
   */
  publish(topic: Topic, message: string): Promise<void>;
  /** Hears `topic` until the returned function is called. */
  subscribe(topic: Topic, listener: TopicListener): Promise<() => void>;
  /** Answers whether the backing store can be reached right now. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

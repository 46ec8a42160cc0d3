/**
 * Shared state behind one small interface: namespaced JSON records. Kernels, the clientSessionToken index,
 * sessions, executions and judged submissions all live here, so that with Redis they survive a restart of the service and
 * are seen by every replica. `putIfAbsent` is the one atomic primitive (claims of tokens and names).
 */
export type Namespace = 'kernels' | 'tokens' | 'sessions' | 'executions' | 'submissions' | 'submission-index' | 'pending-callbacks';

export interface Store {
  get<T>(ns: Namespace, id: string): Promise<T | undefined>;
  put<T>(ns: Namespace, id: string, value: T): Promise<void>;
  /** Writes only when no record with this id exists; true when it wrote. */
  putIfAbsent<T>(ns: Namespace, id: string, value: T): Promise<boolean>;
  /** Merges fields into an existing record (undefined ones are ignored); false (and no write) when there is none. */
  update<T extends object>(ns: Namespace, id: string, patch: Partial<T>): Promise<boolean>;
  delete(ns: Namespace, id: string): Promise<boolean>;
  list<T>(ns: Namespace): Promise<T[]>;
  /** Answers whether the backing store can be reached right now. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

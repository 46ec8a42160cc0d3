/** The embedded default for a single host: everything in this process, lost on restart. */
import { EventEmitter } from 'node:events';
import type { Namespace, Store, Topic, TopicListener } from './store.js';

export class MemoryStore implements Store {
  private readonly data = new Map<Namespace, Map<string, string>>();
  /** Managers sharing this store in one process (tests, one process hosting several apps) hear each other. */
  private readonly topics = new EventEmitter().setMaxListeners(0);

  private table(ns: Namespace): Map<string, string> {
    let table = this.data.get(ns);
    if (!table) this.data.set(ns, (table = new Map()));
    return table;
  }

  // Records are stored serialised so that callers can never share or mutate a stored object, exactly
  // as with Redis.
  async get<T>(ns: Namespace, id: string): Promise<T | undefined> {
    const raw = this.table(ns).get(id);
    return raw === undefined ? undefined : (JSON.parse(raw) as T);
  }

  async put<T>(ns: Namespace, id: string, value: T): Promise<void> {
    this.table(ns).set(id, JSON.stringify(value));
  }

  async putIfAbsent<T>(ns: Namespace, id: string, value: T): Promise<boolean> {
    const table = this.table(ns);
    if (table.has(id)) return false;
    table.set(id, JSON.stringify(value));
    return true;
  }

  async update<T extends object>(ns: Namespace, id: string, patch: Partial<T>): Promise<boolean> {
    const table = this.table(ns);
    const raw = table.get(id);
    if (raw === undefined) return false;
    // Fields set to undefined are skipped, not deleted: RedisStore's HSET of the given fields cannot delete.
    const fields = Object.entries(patch).filter(([, value]) => value !== undefined);
    table.set(id, JSON.stringify({ ...JSON.parse(raw), ...Object.fromEntries(fields) }));
    return true;
  }

  async delete(ns: Namespace, id: string): Promise<boolean> {
    return this.table(ns).delete(id);
  }

  async list<T>(ns: Namespace): Promise<T[]> {
    return [...this.table(ns).values()].map((raw) => JSON.parse(raw) as T);
  }

  async publish(topic: Topic, message: string): Promise<void> {
    // Delivered later, as over Redis: a publisher never runs its subscribers' reactions inside its own call.
    setImmediate(() => this.topics.emit(topic, message));
  }

  async subscribe(topic: Topic, listener: TopicListener): Promise<() => void> {
    const hear = (message: string) => listener.message(message);
    this.topics.on(topic, hear);
    return () => this.topics.off(topic, hear);
  }

  async ping(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {}
}

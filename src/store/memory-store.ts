/** The embedded default for a single host: everything in this process, lost on restart. */
import type { Namespace, Store } from './store.js';

export class MemoryStore implements Store {
  private readonly data = new Map<Namespace, Map<string, string>>();

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

  async ping(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {}
}

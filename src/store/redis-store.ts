/**
 * The only importer of ioredis. A record is a Redis hash `<prefix><ns>:<id>` whose fields are the record's
 * top-level fields, each JSON-encoded; the set `<prefix><ns>` indexes the ids of a namespace. So `update`
 * is one atomic HSET of just the changed fields (no read-modify-write, no lost updates between the stats
 * sampler and a request), and no JSON is ever decoded inside Redis.
 *
 * Commands fail fast while Redis is unreachable (no offline queue) or does not answer (a command timeout),
 * so a request that needs the store answers 503 instead of hanging; ioredis reconnects on its own.
 */
import { Redis } from 'ioredis';
import { unavailable } from '../errors.js';
import type { Namespace, Store, Topic, TopicListener } from './store.js';

// KEYS[1] record, KEYS[2] index; ARGV[1] id, then field/value pairs.
const PUT_IF_ABSENT = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SADD', KEYS[2], ARGV[1])
return 1`;
const UPDATE_IF_PRESENT = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1`;

function toFields(value: object): string[] {
  const fields: string[] = [];
  for (const [field, fieldValue] of Object.entries(value)) {
    if (fieldValue !== undefined) fields.push(field, JSON.stringify(fieldValue));
  }
  return fields;
}

function fromFields<T>(hash: Record<string, string>): T | undefined {
  const entries = Object.entries(hash);
  if (entries.length === 0) return undefined;
  return Object.fromEntries(entries.map(([field, raw]) => [field, JSON.parse(raw)])) as T;
}

export class RedisStore implements Store {
  private readonly redis: Redis;
  private closed = false;
  /** Calls of ready() still waiting: close() ends them. */
  private readonly waiters = new Set<(error?: Error) => void>();
  /** A connection in subscriber mode can send nothing else (ioredis): made on the first subscribe. */
  private subscriber?: Redis;
  private readonly topicListeners = new Map<string, Set<TopicListener>>();

  constructor(private readonly url: string, private readonly prefix = 'polykernel:') {
    this.redis = new Redis(url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      // A Redis that accepts connections but never answers (frozen, partitioned) fails fast too: a
      // request waiting on it would otherwise hang without bound.
      commandTimeout: 2000,
      retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
    });
    // Connection errors surface per request as 503; the event needs a listener or Node throws.
    this.redis.on('error', () => undefined);
  }

  /**
   * Resolves once connected, however long that takes (ioredis reconnects on its own, every 2 s at most);
   * `waiting` is called every `everyMs` meanwhile, so that a start waiting for Redis says so.
   */
  async ready(waiting: (waitedMs: number) => void = () => undefined, everyMs = 10_000): Promise<void> {
    if (this.redis.status === 'ready') return;
    if (this.closed) throw unavailable('the state store was closed');
    const started = Date.now();
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => waiting(Date.now() - started), everyMs);
      const settle = (error?: Error) => {
        clearInterval(timer);
        this.redis.off('ready', onReady);
        this.waiters.delete(settle);
        if (error) reject(error);
        else resolve();
      };
      const onReady = () => settle();
      this.redis.once('ready', onReady);
      // Closed while waiting (a start cut short): the wait ends, and its timer with it.
      this.waiters.add(settle);
    });
  }

  private index(ns: Namespace): string {
    return `${this.prefix}${ns}`;
  }

  private recordKey(ns: Namespace, id: string): string {
    return `${this.prefix}${ns}:${id}`;
  }

  private async call<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      throw unavailable(`the state store (Redis) is unreachable (${(error as Error).message}); try again shortly`);
    }
  }

  async get<T>(ns: Namespace, id: string): Promise<T | undefined> {
    return fromFields<T>(await this.call(() => this.redis.hgetall(this.recordKey(ns, id))));
  }

  async put<T>(ns: Namespace, id: string, value: T): Promise<void> {
    const key = this.recordKey(ns, id);
    await this.call(() =>
      this.redis.multi().del(key).hset(key, ...toFields(value as object)).sadd(this.index(ns), id).exec(),
    );
  }

  async putIfAbsent<T>(ns: Namespace, id: string, value: T): Promise<boolean> {
    const keys = [this.recordKey(ns, id), this.index(ns)];
    const result = await this.call(() => this.redis.eval(PUT_IF_ABSENT, 2, ...keys, id, ...toFields(value as object)));
    return result === 1;
  }

  async update<T extends object>(ns: Namespace, id: string, patch: Partial<T>): Promise<boolean> {
    const fields = toFields(patch);
    if (fields.length === 0) return (await this.call(() => this.redis.exists(this.recordKey(ns, id)))) === 1;
    const result = await this.call(() => this.redis.eval(UPDATE_IF_PRESENT, 1, this.recordKey(ns, id), ...fields));
    return result === 1;
  }

  async delete(ns: Namespace, id: string): Promise<boolean> {
    const results = await this.call(() =>
      this.redis.multi().del(this.recordKey(ns, id)).srem(this.index(ns), id).exec(),
    );
    return results?.[0]?.[1] === 1;
  }

  async list<T>(ns: Namespace): Promise<T[]> {
    const ids = await this.call(() => this.redis.smembers(this.index(ns)));
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hgetall(this.recordKey(ns, id));
    const results = await this.call(() => pipeline.exec());
    return (results ?? [])
      .map(([error, hash], i) => {
        // A pipeline answers each command's error in place (a key of another type: WRONGTYPE).
        if (error) throw unavailable(`the state store (Redis) could not read ${this.recordKey(ns, ids[i]!)}: ${error.message}`);
        return fromFields<T>(hash as Record<string, string>);
      })
      .filter((record): record is T => record !== undefined);
  }

  private topicKey(topic: Topic): string {
    return `${this.prefix}${topic}`;
  }

  async publish(topic: Topic, message: string): Promise<void> {
    await this.call(() => this.redis.publish(this.topicKey(topic), message));
  }

  async subscribe(topic: Topic, listener: TopicListener): Promise<() => void> {
    const subscriber = this.openSubscriber();
    const key = this.topicKey(topic);
    let listeners = this.topicListeners.get(key);
    if (!listeners) {
      this.topicListeners.set(key, (listeners = new Set()));
      // Queued while the connection is down and sent once it is up (ioredis subscribes again after every
      // reconnect by itself); a start is not held up by it: what it misses meanwhile is a gap, told below.
      void subscriber.subscribe(key).catch(() => undefined);
    }
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size > 0) return;
      this.topicListeners.delete(key);
      void subscriber.unsubscribe(key).catch(() => undefined);
    };
  }

  private openSubscriber(): Redis {
    if (this.subscriber) return this.subscriber;
    const subscriber = new Redis(this.url, {
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      connectTimeout: 2000,
      retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
    });
    subscriber.on('error', () => undefined);
    subscriber.on('message', (key: string, message: string) => {
      for (const listener of this.topicListeners.get(key) ?? []) listener.message(message);
    });
    // Every (re)connection may follow messages published while no subscription was up: Redis keeps none.
    subscriber.on('ready', () => {
      for (const listeners of this.topicListeners.values()) for (const listener of listeners) listener.onGap?.();
    });
    this.subscriber = subscriber;
    return subscriber;
  }

  async ping(): Promise<boolean> {
    try {
      return (await this.redis.ping()) === 'PONG';
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const settle of [...this.waiters]) settle(unavailable('the state store was closed'));
    this.redis.disconnect();
    this.subscriber?.disconnect();
    this.topicListeners.clear();
  }
}

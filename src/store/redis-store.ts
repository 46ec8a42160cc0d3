/**
 * The only importer of ioredis. A record is a Redis hash `<prefix><ns>:<id>` whose fields are the record's
 * top-level fields, each JSON-encoded; the set `<prefix><ns>` indexes the ids of a namespace. So `update`
 * is one atomic HSET of just the changed fields (no read-modify-write, no lost updates between the stats
 * sampler and a request), and no JSON is ever decoded inside Redis.
 *
 * The coordination primitives are Lua scripts, each one atomic step on Redis's own clock (TIME), so
 * replicas whose clocks differ still agree on when a claim or a lease lapses. A slot set is a sorted set
 * `<prefix>slots:<set>` of members scored by expiry (+inf = held until released); a lease is the string
 * `<prefix>lease:<name>` = "<epoch>:<holder>" with a PX expiry, its epoch counter `<prefix>lease-epoch:<name>`.
 *
 * Commands fail fast while Redis is unreachable (no offline queue) or does not answer (a command timeout),
 * so a request that needs the store answers 503 instead of hanging; ioredis reconnects on its own.
 */
import { Redis } from 'ioredis';
import { unavailable } from '../errors.js';
import type { Fence, LeaseName, Namespace, SlotClaim, SlotSet, Store, Topic, TopicListener, UpdateOptions } from './store.js';

// KEYS[1] record, KEYS[2] index; ARGV[1] id, then field/value pairs.
const PUT_IF_ABSENT = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SADD', KEYS[2], ARGV[1])
return 1`;
// KEYS[1] record; ARGV[1] n, then n field/value pairs that never move back, then the other pairs. Numbers
// are JSON numerals, which tonumber reads; the value written is the caller's own encoding.
const UPDATE_IF_PRESENT = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = tonumber(ARGV[1])
for i = 2, 2 * n, 2 do
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '')
  if current == nil or current < tonumber(ARGV[i + 1]) then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
if #ARGV > 2 * n + 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2 * n + 2)) end
return 1`;
// KEYS[1] record, KEYS[2] index; ARGV[1] id, ARGV[2] field, ARGV[3] the expected value, encoded.
const DELETE_IF = `
if redis.call('HGET', KEYS[1], ARGV[2]) ~= ARGV[3] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1`;
const NOW_MS = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)`;
// KEYS[1] slot set; ARGV[1] member, ARGV[2] max (0 = none), ARGV[3] ttl ms ('' = until released).
const CLAIM_SLOT = `${NOW_MS}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local expiry = '+inf'
if ARGV[3] ~= '' then expiry = string.format('%.0f', now + tonumber(ARGV[3])) end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  local max = tonumber(ARGV[2])
  if max > 0 and redis.call('ZCARD', KEYS[1]) >= max then return 0 end
end
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
return 1`;
// KEYS[1] slot set: the live claims, scores as strings (inf for an unbounded one).
const LIST_SLOTS = `${NOW_MS}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')`;
// KEYS[1] lease, KEYS[2] its epoch counter; ARGV[1] holder, ARGV[2] ttl ms. SET NX PX and INCR as one step:
// an epoch is spent only by a taking that succeeds.
const ACQUIRE_LEASE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], epoch .. ':' .. ARGV[1], 'NX', 'PX', ARGV[2])
return epoch`;
// KEYS[1] lease; ARGV[1] "<epoch>:<holder>", ARGV[2] ttl ms.
const RENEW_LEASE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;
// KEYS[1] lease, KEYS[2] its epoch counter: a released lease leaves no key behind.
const RELEASE_LEASE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1`;
// KEYS[1] lease, KEYS[2] record; ARGV[1] "<epoch>:<holder>", then field/value pairs. -1 = fenced.
const UPDATE_FENCED = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
if #ARGV > 1 then redis.call('HSET', KEYS[2], unpack(ARGV, 2)) end
return 1`;

const leaseValue = (fence: Fence) => `${fence.epoch}:${fence.holder}`;

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

  async update<T extends object>(ns: Namespace, id: string, patch: Partial<T>, options: UpdateOptions<T> = {}): Promise<boolean> {
    const neverLower = new Set<string>(options.neverLower ?? []);
    const monotonic: Record<string, number> = {};
    const plain: Record<string, unknown> = {};
    for (const [field, value] of Object.entries(patch)) {
      if (neverLower.has(field) && typeof value === 'number') monotonic[field] = value;
      else plain[field] = value;
    }
    const raising = toFields(monotonic);
    const fields = toFields(plain);
    if (raising.length + fields.length === 0) return (await this.call(() => this.redis.exists(this.recordKey(ns, id)))) === 1;
    const args = [String(raising.length / 2), ...raising, ...fields];
    const result = await this.call(() => this.redis.eval(UPDATE_IF_PRESENT, 1, this.recordKey(ns, id), ...args));
    return result === 1;
  }

  async delete(ns: Namespace, id: string): Promise<boolean> {
    const results = await this.call(() =>
      this.redis.multi().del(this.recordKey(ns, id)).srem(this.index(ns), id).exec(),
    );
    return results?.[0]?.[1] === 1;
  }

  async deleteIf<T extends object>(ns: Namespace, id: string, field: keyof T & string, expected: unknown): Promise<boolean> {
    const keys = [this.recordKey(ns, id), this.index(ns)];
    const result = await this.call(() => this.redis.eval(DELETE_IF, 2, ...keys, id, field, JSON.stringify(expected)));
    return result === 1;
  }

  private slotKey(set: SlotSet): string {
    return `${this.prefix}slots:${set}`;
  }

  private leaseKey(name: LeaseName): string {
    return `${this.prefix}lease:${name}`;
  }

  private epochKey(name: LeaseName): string {
    return `${this.prefix}lease-epoch:${name}`;
  }

  async claimSlot(set: SlotSet, member: string, max: number, ttlMs?: number): Promise<boolean> {
    const ttl = ttlMs === undefined ? '' : String(Math.max(1, Math.round(ttlMs)));
    const result = await this.call(() => this.redis.eval(CLAIM_SLOT, 1, this.slotKey(set), member, String(max), ttl));
    return result === 1;
  }

  async releaseSlot(set: SlotSet, member: string): Promise<boolean> {
    return (await this.call(() => this.redis.zrem(this.slotKey(set), member))) === 1;
  }

  async slots(set: SlotSet): Promise<SlotClaim[]> {
    const flat = (await this.call(() => this.redis.eval(LIST_SLOTS, 1, this.slotKey(set)))) as string[];
    const claims: SlotClaim[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      const expiresAt = Number(flat[i + 1]);
      claims.push(Number.isFinite(expiresAt) ? { member: flat[i]!, expiresAt } : { member: flat[i]! });
    }
    return claims;
  }

  async acquireLease(name: LeaseName, holder: string, ttlMs: number): Promise<Fence | undefined> {
    const keys = [this.leaseKey(name), this.epochKey(name)];
    const epoch = await this.call(() => this.redis.eval(ACQUIRE_LEASE, 2, ...keys, holder, String(Math.max(1, Math.round(ttlMs)))));
    return typeof epoch === 'number' ? { lease: name, holder, epoch } : undefined;
  }

  async renewLease(fence: Fence, ttlMs: number): Promise<boolean> {
    const ttl = String(Math.max(1, Math.round(ttlMs)));
    return (await this.call(() => this.redis.eval(RENEW_LEASE, 1, this.leaseKey(fence.lease), leaseValue(fence), ttl))) === 1;
  }

  async releaseLease(fence: Fence): Promise<boolean> {
    const keys = [this.leaseKey(fence.lease), this.epochKey(fence.lease)];
    return (await this.call(() => this.redis.eval(RELEASE_LEASE, 2, ...keys, leaseValue(fence)))) === 1;
  }

  async updateFenced<T extends object>(ns: Namespace, id: string, patch: Partial<T>, fence: Fence): Promise<'written' | 'missing' | 'fenced'> {
    const fields = toFields(patch);
    const keys = [this.leaseKey(fence.lease), this.recordKey(ns, id)];
    const result = await this.call(() => this.redis.eval(UPDATE_FENCED, 2, ...keys, leaseValue(fence), ...fields));
    return result === -1 ? 'fenced' : result === 1 ? 'written' : 'missing';
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

  /**
   * An entry that lives `ttlMs` unless written again (a heartbeat): `<prefix>live:<group>:<id>` with a TTL
   * that Redis keeps (one clock for every host), indexed by the set `<prefix>live:<group>`.
   */
  async putExpiring(group: string, id: string, value: unknown, ttlMs: number): Promise<void> {
    await this.call(() =>
      this.redis.multi().set(`${this.prefix}live:${group}:${id}`, JSON.stringify(value), 'PX', ttlMs).sadd(`${this.prefix}live:${group}`, id).exec(),
    );
  }

  async deleteExpiring(group: string, id: string): Promise<void> {
    await this.call(() => this.redis.multi().del(`${this.prefix}live:${group}:${id}`).srem(`${this.prefix}live:${group}`, id).exec());
  }

  /** The live entries of a group; ids whose entry expired are dropped from its index on the way. */
  async listExpiring<T>(group: string): Promise<Array<{ id: string; value: T }>> {
    const index = `${this.prefix}live:${group}`;
    const ids = await this.call(() => this.redis.smembers(index));
    if (ids.length === 0) return [];
    const values = await this.call(() => this.redis.mget(...ids.map((id) => `${index}:${id}`)));
    const live: Array<{ id: string; value: T }> = [];
    const expired: string[] = [];
    ids.forEach((id, i) => {
      const raw = values[i];
      if (raw === null || raw === undefined) expired.push(id);
      else live.push({ id, value: JSON.parse(raw) as T });
    });
    if (expired.length > 0) await this.call(() => this.redis.srem(index, ...expired));
    return live;
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

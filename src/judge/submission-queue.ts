/**
 * Submissions waiting for the engine, persisted: each is a record in the store (Redis when configured)
 * that goes queued -> processing -> finished, and a bounded pool of workers hands them to the engine in
 * the order they came. A restart loses none: at start every record of this instance that is not finished
 * (queued, or processing when the last process died) is queued again, oldest first, and run; a finished
 * one is never run again. A finished record is kept for the configured TTL, and at most `maxKept` of
 * them, then deleted.
 *
 * The queue knows nothing of any API's shapes: a record carries the engine's Submission and the API's own
 * `meta` (Judge0's request fields as the client gave them), and `onFinished` hooks (callbacks) see each
 * record as it finishes.
 *
 * Beside each record the store holds a small index entry (namespace `submission-index`: token, owner,
 * times, state, size), and this process a copy of the entries of its instance: a start reads the entries,
 * not the records, and listing, the TTL and the bounds work on entries. The submission and its result are
 * read from the store only when needed, so the service's memory does not grow with what it keeps; the
 * store's is bounded by `maxKept` records and `maxKeptMB` of them.
 */
import { randomUUID } from 'node:crypto';
import type { Config } from '../config/index.js';
import { DomainError, unavailable } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Store } from '../store/store.js';
import type { JudgeEngine, JudgeResult, Submission } from './model.js';
import { fromWire, toWire } from './wire.js';

export type JobState = 'queued' | 'processing' | 'finished';

/** One submission as the store holds it. Times are ms since the epoch. */
export interface JobRecord<M = unknown> {
  token: string;
  /** The API key that created it (undefined: admin or open mode). */
  owner?: string;
  /** The service instance that runs it (POLYKERNEL_INSTANCE): only it re-queues it after a restart. */
  instance: string;
  state: JobState;
  createdAt: number;
  /** Order among submissions of the same millisecond (a batch). */
  seq: number;
  startedAt?: number;
  finishedAt?: number;
  /** How many times a worker took it (more than 1 after a restart during its run). */
  attempts: number;
  /** The engine's Submission in wire form (src/judge/wire.ts). */
  submission: unknown;
  meta: M;
  /** The engine's JudgeResult in wire form, once finished without an internal fault. */
  result?: unknown;
  /** Why the engine could not judge it (an internal error), once finished that way. */
  failure?: string;
}

/** A finished record, decoded. */
export interface FinishedJob<M = unknown> {
  record: JobRecord<M>;
  result?: JudgeResult;
}

export interface NewJob<M> {
  submission: Submission;
  meta: M;
  owner?: string;
}

/** What the index keeps of a record (the store's `submission-index`, and this process's copy). */
interface IndexEntry {
  token: string;
  instance: string;
  owner?: string;
  createdAt: number;
  seq: number;
  state: JobState;
  finishedAt?: number;
  /** Size of the stored record, bytes of JSON (about what the store holds for it). */
  bytes: number;
}

export type QueueConfig = Pick<Config, 'instance' | 'judge0Workers' | 'judge0MaxQueueSize' | 'judge0ResultTtlS' | 'judge0MaxKept' | 'judge0MaxKeptMB'> &
  Partial<Pick<Config, 'judge0MaxQueuePerClient'>>;

export interface SubmissionQueueDeps {
  config: QueueConfig;
  store: Store;
  engine: JudgeEngine;
  log: Logger;
  clock?: () => number;
  newToken?: () => string;
  /** How long to wait before a submission the engine refused as busy (503) is offered again. */
  busyRetryMs?: number;
}

const NS = 'submissions';
const INDEX = 'submission-index';

export const decodeResult = (record: JobRecord): JudgeResult | undefined => (record.result === undefined ? undefined : fromWire<JudgeResult>(record.result));
export const decodeSubmission = (record: JobRecord): Submission => fromWire<Submission>(record.submission);

export class SubmissionQueue<M = unknown> {
  private readonly index = new Map<string, IndexEntry>();
  private readonly waiting: string[] = [];
  /** Room held for requests still being read (reserve()). */
  private reserved = 0;
  /**
   * Submissions each client has waiting or reserved (its API key, else its address): the overall cap alone
   * lets one client fill the whole line, and every other client's create is then refused for as long as the
   * flood lasts. Counts only this process's submissions since its start (one re-queued after a restart
   * has no client); a count reaching 0 is removed, so the map holds only clients with something waiting.
   */
  private readonly queuedByClient = new Map<string, number>();
  private readonly clientOfToken = new Map<string, string>();
  private readonly running = new Map<string, AbortController>();
  private readonly waiters = new Map<string, Set<(record: JobRecord<M>) => void>>();
  private readonly finishedHooks: ((job: FinishedJob<M>) => void)[] = [];
  private readonly clock: () => number;
  private readonly newToken: () => string;
  private sweeper?: NodeJS.Timeout;
  private retryTimer?: NodeJS.Timeout;
  private stopping = false;
  /** Resolves at stop: requests waiting for a result answer then instead of holding the shutdown. */
  private readonly stopped: Promise<'stopped'>;
  private markStopped!: () => void;
  private seq = 0;
  /** The engine answered busy: nothing is taken from the line until the retry timer fires. */
  private paused = false;

  constructor(private readonly deps: SubmissionQueueDeps) {
    this.clock = deps.clock ?? Date.now;
    this.newToken = deps.newToken ?? randomUUID;
    this.stopped = new Promise((resolve) => (this.markStopped = () => resolve('stopped')));
  }

  private get store(): Store {
    return this.deps.store;
  }

  private get ttlMs(): number {
    return this.deps.config.judge0ResultTtlS * 1000;
  }

  /** Called with every record as it finishes (after it is stored), with its decoded result. */
  onFinished(hook: (job: FinishedJob<M>) => void): void {
    this.finishedHooks.push(hook);
  }

  /**
   * Reads this instance's records: unfinished ones are queued again (oldest first; one that was
   * processing is run again from the start), finished ones are indexed for their TTL, expired ones deleted.
   */
  async start(): Promise<void> {
    const entries = (await this.store.list<IndexEntry>(INDEX)).filter((entry) => entry.instance === this.deps.config.instance);
    const now = this.clock();
    const again: IndexEntry[] = [];
    for (const entry of entries) {
      if (entry.state === 'finished') {
        if ((entry.finishedAt ?? 0) + this.ttlMs <= now) await this.forget(entry.token);
        else this.index.set(entry.token, entry);
        continue;
      }
      again.push(entry);
    }
    again.sort((a, b) => a.createdAt - b.createdAt || a.seq - b.seq);
    for (const entry of again) {
      if (entry.state === 'processing') {
        // A record that did finish (its index entry was not updated) stays finished: run() sees it.
        const record = await this.store.get<JobRecord<M>>(NS, entry.token);
        if (record && record.state !== 'finished') await this.store.update<JobRecord<M>>(NS, entry.token, { state: 'queued' });
        await this.setState(entry.token, 'queued', entry);
        this.deps.log.warn('Submission was processing when the service stopped; it runs again', { token: entry.token });
      }
      this.index.set(entry.token, { ...entry, state: 'queued' });
      this.waiting.push(entry.token);
    }
    if (again.length) this.deps.log.info('Submissions queued again after a restart', { count: again.length });
    const every = Math.max(1000, Math.min(60_000, Math.floor(this.ttlMs / 4)));
    this.sweeper = setInterval(() => void this.sweep().catch((error: Error) => this.deps.log.error('Sweep of finished submissions failed', { error: error.message })), every);
    this.sweeper.unref();
    this.pump();
  }

  /** Submissions waiting and running in this process. */
  stats(): { waiting: number; running: number; workers: number; kept: number } {
    return { waiting: this.waiting.length, running: this.running.size, workers: this.deps.config.judge0Workers, kept: this.index.size };
  }

  /** Whether `count` more submissions fit in the queue now (room held by reserve() counts as taken). */
  hasRoomFor(count: number): boolean {
    return this.waiting.length + this.reserved + count <= this.deps.config.judge0MaxQueueSize;
  }

  /**
   * Holds room for one submission while its request is read and checked, so that a full queue refuses a
   * request before its body is read or parsed: without it, every request that comes while the queue has
   * room reads and decodes its body (megabytes each) only to be refused at submit(), and a flood of them
   * grows the service's memory with the number of requests instead of the queue's size. Returns the
   * release (call it once the submission is submitted or refused), or undefined when the queue is full.
   */
  reserve(client?: string): (() => void) | undefined {
    if (!this.hasRoomFor(1)) return undefined;
    this.reserved += 1;
    if (client !== undefined) this.countClient(client, 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.reserved -= 1;
      if (client !== undefined) this.countClient(client, -1);
    };
  }

  /** Whether `client` may queue `count` more (POLYKERNEL_JUDGE0_MAX_QUEUE_PER_CLIENT; room it holds by reserve() counts as taken). */
  clientHasRoomFor(client: string, count: number): boolean {
    const cap = this.deps.config.judge0MaxQueuePerClient ?? 0;
    return cap === 0 || (this.queuedByClient.get(client) ?? 0) + count <= cap;
  }

  private countClient(client: string, delta: number): void {
    const count = (this.queuedByClient.get(client) ?? 0) + delta;
    if (count <= 0) this.queuedByClient.delete(client);
    else this.queuedByClient.set(client, count);
  }

  /** A submission leaves the line (taken by a worker, or dropped at stop): its client's count goes down. */
  private leftLine(token: string): void {
    const client = this.clientOfToken.get(token);
    if (client === undefined) return;
    this.clientOfToken.delete(token);
    this.countClient(client, -1);
  }

  /**
   * Stores and queues submissions, in order; the queue's room is checked for all of them first (a batch
   * is taken whole or refused). Returns their tokens.
   */
  async submit(jobs: NewJob<M>[], heldRoom = 0, client?: string): Promise<JobRecord<M>[]> {
    if (this.stopping) throw unavailable('the service is shutting down');
    // Room the caller holds by reserve() is its own: counted in `reserved` already.
    if (!this.hasRoomFor(jobs.length - heldRoom)) throw unavailable('queue is full');
    const records: JobRecord<M>[] = [];
    for (const job of jobs) {
      const record: JobRecord<M> = {
        token: this.newToken(),
        owner: job.owner,
        instance: this.deps.config.instance,
        state: 'queued',
        createdAt: this.clock(),
        seq: this.seq++,
        attempts: 0,
        submission: toWire(job.submission),
        meta: job.meta,
      };
      const entry: IndexEntry = {
        token: record.token,
        instance: record.instance,
        owner: record.owner,
        createdAt: record.createdAt,
        seq: record.seq,
        state: 'queued',
        bytes: JSON.stringify(record).length,
      };
      // The entry first: an entry without its record is dropped when its turn comes; a record without an
      // entry would be kept for ever.
      await this.store.put(INDEX, record.token, entry);
      await this.store.put(NS, record.token, record);
      this.index.set(record.token, entry);
      this.waiting.push(record.token);
      if (client !== undefined) {
        // Counted for as long as it waits; the caller's reservation (released after this) counted it until now.
        this.clientOfToken.set(record.token, client);
        this.countClient(client, 1);
      }
      records.push(record);
    }
    this.pump();
    return records;
  }

  /** The record, or undefined when there is none (never was, expired, deleted). */
  async get(token: string): Promise<JobRecord<M> | undefined> {
    const record = await this.store.get<JobRecord<M>>(NS, token);
    if (!record) return undefined;
    if (record.state === 'finished' && (record.finishedAt ?? 0) + this.ttlMs <= this.clock()) return undefined;
    return record;
  }

  async getMany(tokens: string[]): Promise<(JobRecord<M> | undefined)[]> {
    return Promise.all(tokens.map((token) => this.get(token)));
  }

  /**
   * Resolves with the record once it is finished, or as it is after `timeoutMs` (still queued or
   * processing); undefined when it does not exist.
   */
  async waitFor(token: string, timeoutMs: number): Promise<JobRecord<M> | undefined> {
    // Listening before reading: a run that finishes between the read and the subscription is not missed.
    let set = this.waiters.get(token);
    if (!set) this.waiters.set(token, (set = new Set()));
    const waiters = set;
    let listener!: (record: JobRecord<M>) => void;
    let timer: NodeJS.Timeout | undefined;
    const finished = new Promise<JobRecord<M> | undefined>((resolve) => {
      listener = resolve;
      waiters.add(listener);
    });
    try {
      const current = await this.get(token);
      if (!current || current.state === 'finished') return current;
      const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      const outcome = await Promise.race([finished, timedOut, this.stopped]);
      if (outcome === 'timeout' || outcome === 'stopped') return (await this.get(token).catch(() => current)) ?? current;
      return outcome;
    } finally {
      clearTimeout(timer);
      waiters.delete(listener);
      if (waiters.size === 0 && this.waiters.get(token) === waiters) this.waiters.delete(token);
    }
  }

  /** Deletes a finished record; false when there is none. The caller checks it is finished. */
  async delete(token: string): Promise<boolean> {
    return this.forget(token);
  }

  /** Deletes a record and its index entry. */
  private async forget(token: string): Promise<boolean> {
    this.index.delete(token);
    const [deleted] = await Promise.all([this.store.delete(NS, token), this.store.delete(INDEX, token)]);
    return deleted;
  }

  /**
   * A page of this instance's submissions that `sees` lets through, newest first (as Judge0 lists), and
   * how many there are in all.
   */
  async page(sees: (owner: string | undefined) => boolean, page: number, perPage: number): Promise<{ records: JobRecord<M>[]; total: number }> {
    const tokens = [...this.index.entries()]
      .filter(([, entry]) => sees(entry.owner))
      .sort((a, b) => b[1].createdAt - a[1].createdAt || b[1].seq - a[1].seq)
      .map(([token]) => token);
    const slice = perPage === 0 ? [] : tokens.slice((page - 1) * perPage, page * perPage);
    const records = (await this.getMany(slice)).filter((record): record is JobRecord<M> => record !== undefined);
    return { records, total: tokens.length };
  }

  /** Stops taking work; running submissions are aborted and stay `processing`, to run again after a restart. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.markStopped();
    clearInterval(this.sweeper);
    clearTimeout(this.retryTimer);
    for (const controller of this.running.values()) controller.abort(new Error('the service is shutting down'));
    this.waiting.length = 0;
    this.clientOfToken.clear();
    this.queuedByClient.clear();
  }

  private pump(): void {
    while (!this.stopping && !this.paused && this.running.size < this.deps.config.judge0Workers && this.waiting.length > 0) {
      const token = this.waiting.shift()!;
      this.leftLine(token);
      const controller = new AbortController();
      this.running.set(token, controller);
      void this.run(token, controller.signal)
        .catch((error: Error) => this.deps.log.error('Submission run failed unexpectedly', { token, error: error?.stack ?? String(error) }))
        .finally(() => {
          this.running.delete(token);
          this.pump();
        });
    }
  }

  private async run(token: string, signal: AbortSignal): Promise<void> {
    let record: JobRecord<M> | undefined;
    try {
      record = await this.store.get<JobRecord<M>>(NS, token);
    } catch (error) {
      // The store is out of reach: the submission keeps its place and is offered again shortly.
      this.deps.log.warn('Submission not started: the store is unreachable', { token, error: (error as Error).message });
      this.waiting.unshift(token);
      this.retryLater();
      return;
    }
    if (!record) {
      // Deleted meanwhile, or its record was never written (a crash between the two writes).
      await this.forget(token);
      return;
    }
    if (record.state === 'finished') {
      await this.setState(token, 'finished', { finishedAt: record.finishedAt });
      return;
    }
    const startedAt = this.clock();
    const attempts = (record.attempts ?? 0) + 1;
    try {
      await this.store.update<JobRecord<M>>(NS, token, { state: 'processing', startedAt, attempts });
      await this.setState(token, 'processing');
    } catch (error) {
      this.deps.log.warn('Submission not started: the store is unreachable', { token, error: (error as Error).message });
      this.waiting.unshift(token);
      this.retryLater();
      return;
    }
    let result: JudgeResult | undefined;
    let failure: string | undefined;
    try {
      result = await this.deps.engine.judge(decodeSubmission(record), signal);
    } catch (error) {
      if (signal.aborted) return; // the service stops: it stays processing and runs again after the restart
      if (error instanceof DomainError && error.code === 'unavailable') {
        // The engine's own line is full: offer it again shortly, ahead of newer ones.
        this.waiting.unshift(token);
        this.retryLater();
        try {
          await this.store.update<JobRecord<M>>(NS, token, { state: 'queued' });
          await this.setState(token, 'queued');
        } catch {
          // Still `processing` in the store: run() takes it again all the same.
        }
        return;
      }
      failure = error instanceof DomainError ? error.message : 'the judge failed; the service logged the details';
      if (!(error instanceof DomainError)) this.deps.log.error('Judging failed', { token, error: (error as Error)?.stack ?? String(error) });
    }
    if (signal.aborted) return;
    const finishedAt = this.clock();
    const patch: Partial<JobRecord<M>> = { state: 'finished', finishedAt, ...(result ? { result: toWire(result) } : { failure }) };
    const stored = await this.storeResult(token, patch);
    if (stored === undefined) return; // left processing: the next start runs it again
    if (!stored) {
      // Deleted while it ran.
      await this.forget(token);
      return;
    }
    const bytes = (this.index.get(token)?.bytes ?? 0) + JSON.stringify(patch).length;
    // The record is what counts; an index entry left `processing` is set right at the next start.
    await this.setState(token, 'finished', { finishedAt, bytes }).catch((error: Error) =>
      this.deps.log.warn('Index entry of a finished submission not updated', { token, error: error.message }),
    );
    const finished: JobRecord<M> = { ...record, startedAt, attempts, ...patch } as JobRecord<M>;
    for (const waiter of this.waiters.get(token) ?? []) waiter(finished);
    for (const hook of this.finishedHooks) {
      try {
        hook({ record: finished, result });
      } catch (error) {
        this.deps.log.error('A finished-submission hook failed', { token, error: (error as Error).message });
      }
    }
    this.evictOverflow();
  }

  /**
   * Writes a result, trying again a few times while the store is out of reach; undefined when it never
   * could (the record stays `processing`, and the next start of the service runs it again).
   */
  private async storeResult(token: string, patch: Partial<JobRecord<M>>): Promise<boolean | undefined> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.store.update<JobRecord<M>>(NS, token, patch);
      } catch (error) {
        if (attempt >= 5 || this.stopping) {
          this.deps.log.error('Result not stored: the store is unreachable', { token, error: (error as Error).message });
          return undefined;
        }
        await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt).unref());
      }
    }
  }

  /** Sets an index entry's state, here and in the store. */
  private async setState(token: string, state: JobState, more: Partial<IndexEntry> = {}): Promise<void> {
    const entry = this.index.get(token);
    if (entry) Object.assign(entry, more, { state });
    await this.store.update<IndexEntry>(INDEX, token, { ...more, state });
  }

  /** Holds the line (the engine is busy) until a timer offers it again. */
  private retryLater(): void {
    this.paused = true;
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.paused = false;
      this.pump();
    }, this.deps.busyRetryMs ?? 250);
    this.retryTimer.unref();
  }

  /** Deletes finished records past their TTL. */
  async sweep(): Promise<void> {
    const now = this.clock();
    for (const [token, entry] of this.index) {
      if (entry.state === 'finished' && (entry.finishedAt ?? 0) + this.ttlMs <= now) await this.forget(token);
    }
    this.evictOverflow();
  }

  /**
   * Past `maxKept` finished records or `maxKeptMB` of all records, the oldest finished ones go before
   * their TTL: the store must stay bounded whatever clients send and never fetch.
   */
  private evictOverflow(): void {
    const finished = [...this.index.values()].filter((e) => e.state === 'finished').sort((a, b) => (a.finishedAt ?? 0) - (b.finishedAt ?? 0));
    let count = finished.length;
    let bytes = [...this.index.values()].reduce((sum, e) => sum + e.bytes, 0);
    const maxBytes = this.deps.config.judge0MaxKeptMB * 1024 * 1024;
    let dropped = 0;
    for (const entry of finished) {
      if (count <= this.deps.config.judge0MaxKept && bytes <= maxBytes) break;
      count--;
      bytes -= entry.bytes;
      dropped++;
      void this.forget(entry.token).catch(() => undefined);
    }
    if (dropped) this.deps.log.warn('Finished submissions dropped before their TTL: POLYKERNEL_JUDGE0_MAX_KEPT or _MAX_KEPT_MB reached', { dropped });
  }
}

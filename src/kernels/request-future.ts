/**
 * The requests a kernel has not finished answering, keyed by msg_id, as @jupyterlab/services keeps its
 * kernel futures: each message whose parent is a pending request goes to that request's future only, and
 * a request ends once its reply (shell/control) and its `idle` status (iopub) are both in. The live kernel
 * routes every message through one table; nobody else has to look at every message and filter by parent.
 *
 * A future has an owner (a v1 run, a notebook cell, a readiness probe) that hears its messages through
 * handlers, or none: a client's request sent through the channels, or one whose owner stopped listening.
 * Those stay tracked until they end too, because what the kernel is doing (its state, `executing`, the
 * time of its last activity) depends on them.
 */
import type { Channel, JupyterMessage, StatusContent } from '../protocol/messages.js';

/**
 * iopub is lossy (a PUB socket drops messages past its high-water mark, and a message too large for the
 * service drops the connection: see MAX_KERNEL_MESSAGE_BYTES), so the idle status that ends a request may
 * never come. Once the reply is in, the request ends after this long without it.
 */
export const IDLE_AFTER_REPLY_MS = 2000;
/**
 * The reply can be lost too: ipykernel catches a KeyboardInterrupt that lands after the code ended but
 * before its execute_reply went out ("KeyboardInterrupt caught in kernel"), sends no reply and publishes
 * the idle status all the same. A SIGINT timed so (a client interrupting, or leaving its streaming socket,
 * just as its run ends) must not leave the request pending until its time limit takes the kernel along:
 * once the idle is in, the request ends after this long without its reply. Replies come a few
 * milliseconds after the idle at most when they come at all.
 */
export const REPLY_AFTER_IDLE_MS = 2000;

/** How a request ended: `idle` is false when its idle status never came and the reply alone ended it. */
export interface RequestEnd {
  reply: JupyterMessage | undefined;
  idle: boolean;
}

/** What an owner hears of its request: every message whose parent it is, by channel. */
export interface FutureHandlers {
  onIOPub?(msg: JupyterMessage): void;
  /** An input_request: the request waits for an input_reply on stdin. */
  onStdin?(msg: JupyterMessage): void;
  onReply?(msg: JupyterMessage): void;
}

export interface RequestOptions {
  /** Whether the request ends only once its reply is in (comm_msg and its kin have none). */
  expectReply: boolean;
  /** Whether it may run code: counted by `executing`, and its end is the kernel's last activity. */
  execution: boolean;
  handlers?: FutureHandlers;
}

export class RequestFuture {
  readonly msgId: string;
  readonly expectReply: boolean;
  readonly execution: boolean;
  /** Resolves when the request ends; never settles when it does not (the kernel went away first). */
  readonly done: Promise<RequestEnd>;
  /** The send's outcome, for requests the service sends itself (see LiveKernel.submit). */
  sent: Promise<void> = Promise.resolve();
  reply?: JupyterMessage;
  idle = false;
  ended = false;
  private handlers?: FutureHandlers;
  private resolve!: (end: RequestEnd) => void;
  private idleFallback?: NodeJS.Timeout;

  constructor(
    msg: JupyterMessage,
    readonly channel: Channel,
    options: RequestOptions,
    private readonly table: { ended(future: RequestFuture): void; detached(future: RequestFuture): void },
  ) {
    this.msgId = msg.header.msg_id;
    this.expectReply = options.expectReply;
    this.execution = options.execution;
    this.handlers = options.handlers;
    this.done = new Promise((resolve) => (this.resolve = resolve));
  }

  /** Whether somebody still listens to this request's messages. */
  get owned(): boolean {
    return this.handlers !== undefined;
  }

  /** The owner stops listening; the request stays tracked until it ends (or is forgotten past the bound). */
  detach(): void {
    if (!this.handlers) return;
    this.handlers = undefined;
    if (!this.ended) this.table.detached(this);
  }

  /** A message whose parent is this request. */
  handle(channel: Channel, msg: JupyterMessage): void {
    if (this.ended) return;
    if (channel === 'iopub') {
      if (msg.header.msg_type === 'status' && (msg.content as StatusContent).execution_state === 'idle') this.idle = true;
      this.handlers?.onIOPub?.(msg);
    } else if (channel === 'stdin') {
      this.handlers?.onStdin?.(msg);
    } else if (channel === this.channel && !this.reply) {
      this.reply = msg;
      this.handlers?.onReply?.(msg);
    }
    if (this.idle && (this.reply || !this.expectReply)) this.end(true);
    else if (this.reply && !this.idleFallback) this.idleFallback = setTimeout(() => this.end(false), IDLE_AFTER_REPLY_MS);
    else if (this.idle && !this.idleFallback) this.idleFallback = setTimeout(() => this.end(true), REPLY_AFTER_IDLE_MS);
  }

  private end(idle: boolean): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.idleFallback);
    this.table.ended(this);
    this.resolve({ reply: this.reply, idle });
  }

  /** Forgotten without an end (the connection it was sent on is gone): it hears nothing more, no timer outlives it. */
  drop(): void {
    this.handlers = undefined;
    clearTimeout(this.idleFallback);
  }
}

/**
 * The table itself. Owned futures are bounded by their owners (each has a time limit or a run bound);
 * unowned ones by `maxUnowned`: a client queuing more requests than that forgets the oldest.
 */
export class PendingRequests {
  private readonly pending = new Map<string, RequestFuture>();
  private executions = 0;
  private unowned = 0;
  private readonly events = {
    ended: (future: RequestFuture) => this.forget(future),
    detached: () => {
      this.unowned++;
      this.boundUnowned();
    },
  };

  constructor(
    private readonly maxUnowned: number,
    private readonly onEnd: (future: RequestFuture) => void,
  ) {}

  /** Starts tracking a request; one already pending under the same msg_id keeps its place and owner. */
  track(msg: JupyterMessage, channel: Channel, options: RequestOptions): RequestFuture {
    const existing = this.pending.get(msg.header.msg_id);
    if (existing) return existing;
    const future = new RequestFuture(msg, channel, options, this.events);
    this.pending.set(future.msgId, future);
    if (future.execution) this.executions++;
    if (!future.owned) {
      this.unowned++;
      this.boundUnowned();
    }
    return future;
  }

  /** The pending request a message answers, if any, after it has handled the message. */
  route(channel: Channel, msg: JupyterMessage, parentId: string | undefined): RequestFuture | undefined {
    const future = parentId === undefined ? undefined : this.pending.get(parentId);
    future?.handle(channel, msg);
    return future;
  }

  get(msgId: string): RequestFuture | undefined {
    return this.pending.get(msgId);
  }

  /** Requests that may be running code and have not ended. */
  get executing(): number {
    return this.executions;
  }

  get size(): number {
    return this.pending.size;
  }

  /** Forgets a request that never reached the kernel. */
  cancel(future: RequestFuture): void {
    if (this.pending.get(future.msgId) !== future) return;
    this.remove(future);
    future.drop();
  }

  /** Drops every request but those `keep` names (the connection they were sent on is gone: their answers never come). */
  clear(keep: (future: RequestFuture) => boolean = () => false): void {
    for (const future of this.pending.values()) if (!keep(future)) this.cancel(future);
  }

  private forget(future: RequestFuture): void {
    if (this.pending.get(future.msgId) !== future) return;
    this.remove(future);
    this.onEnd(future);
  }

  private remove(future: RequestFuture): void {
    this.pending.delete(future.msgId);
    if (future.execution) this.executions--;
    if (!future.owned) this.unowned--;
  }

  private boundUnowned(): void {
    if (this.unowned <= this.maxUnowned) return;
    // The oldest unowned one: a Map iterates in insertion order, and owned futures are few (see above).
    for (const future of this.pending.values()) {
      if (future.owned) continue;
      this.cancel(future);
      return;
    }
  }
}

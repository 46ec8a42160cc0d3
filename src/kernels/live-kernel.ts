/**
 * A running kernel as this process sees it: its ZMQ connection, its execution state as the iopub status
 * messages tell it, the time of its last activity, and the requests it has not finished answering
 * (request-future.ts). The service's own requests (v1 queries, notebook cells, readiness probes) are
 * sent with `submit` and hear only their own messages; the Jupyter channels bridge sends with `send` and
 * listens to everything with `onMessage`.
 */
import { randomUUID } from 'node:crypto';
import {
  newMessage,
  parentMsgId,
  type Channel,
  type JsonObject,
  type JupyterMessage,
  type StatusContent,
} from '../protocol/messages.js';
import type { KernelTransport, MessageListener } from '../transport/kernel-transport.js';
import { transition, type KernelState } from './kernel-record.js';
import { PendingRequests, type FutureHandlers, type RequestFuture } from './request-future.js';

export type { FutureHandlers, RequestFuture };

export class KernelNotReadyError extends Error {}

/** How long waitReady waits for the iopub status of an answered probe before it probes again. */
const REPROBE_AFTER_REPLY_MS = 25;
/** Client messages a held kernel keeps until it is released; more are refused, not buffered. */
const MAX_HELD_SENDS = 256;
/** Client requests remembered until their end: a client queuing more than this many forgets the oldest. */
const MAX_UNOWNED_REQUESTS = 1000;

export class LiveKernel {
  /** The session id of messages the service itself sends (v1 queries, readiness probes). */
  readonly session = randomUUID();
  private current: KernelState = 'starting';
  /**
   * When a client last asked something of the kernel: a request sent to it, or the end (its idle status)
   * of an execution a client asked for. What the kernel publishes by itself (a detached thread printing,
   * forged status messages) does not count: that would keep a kernel nobody uses from being culled.
   */
  lastActivity: number;
  /** A hot-path figure kept in memory and written to the store by the usage sampler: an execute costs no store round trip. */
  numQueriesExecuted = 0;
  connection: KernelTransport;
  private readonly listeners = new Set<MessageListener>();
  /** While set, client messages wait here instead of reaching the kernel (see hold). */
  private held?: { sends: number; waiting: Set<string>; released: Promise<void>; release: () => void };
  /**
   * Requests sent and not yet ended. An execution a client asked for ending is the kernel's last
   * activity: idle time counts from there, not from its start. Each request ends once, so replaying its
   * status cannot keep the kernel looking used.
   */
  private readonly pending = new PendingRequests(MAX_UNOWNED_REQUESTS, (ended) => {
    if (ended.execution) this.lastActivity = this.clock();
  });

  constructor(
    readonly id: string,
    /** Opens a fresh transport to the kernel: at start, and again after its process was restarted. */
    private readonly openTransport: () => KernelTransport,
    private readonly clock: () => number,
  ) {
    this.lastActivity = clock();
    this.connection = this.connect();
  }

  private connect(): KernelTransport {
    const connection = this.openTransport();
    connection.onMessage((channel, msg) => this.dispatch(channel, msg));
    return connection;
  }

  private dispatch(channel: Channel, msg: JupyterMessage): void {
    const parentId = parentMsgId(msg);
    if (channel === 'iopub' && msg.header.msg_type === 'status') {
      // A request on control is answered while the shell may be busy: its status says nothing about the shell.
      if (parentId === undefined || this.pending.get(parentId)?.channel !== 'control') this.setState((msg.content as StatusContent).execution_state);
    }
    this.pending.route(channel, msg, parentId);
    for (const listener of this.listeners) listener(channel, msg);
  }

  /** The execution state as the kernel's status messages (and the manager's restarts) tell it. */
  get state(): KernelState {
    return this.current;
  }

  /** Every change of state goes through `transition`, so an impossible one (dead -> busy) never happens. */
  setState(next: KernelState): void {
    this.current = transition(this.current, next);
  }

  /**
   * Drops the old sockets and connects again (after the kernel process was restarted). Requests sent to
   * the old process are forgotten (their answers never come); those still held go to the new one and
   * stay pending.
   */
  reconnect(): void {
    this.connection.close();
    this.connection = this.connect();
    const waiting = this.held?.waiting;
    this.pending.clear((future) => waiting?.has(future.msgId) === true);
  }

  /** Whether something (a channels hub) listens to every message: the kernel is in use in this process. */
  get listened(): boolean {
    return this.listeners.size > 0;
  }

  onMessage(listener: MessageListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Sends a client's message. While the kernel is held (a restart), it waits until the new kernel process
   * is ready and sealed (kernel-manager), so no client code runs while the kernel can still write its
   * socket directory.
   */
  send(channel: Channel, msg: JupyterMessage): Promise<void> {
    // A client's request ends at its idle: comm_msg and its kin have no reply.
    if (!mayRunCode(channel, msg)) return this.deliver(channel, msg);
    const future = this.pending.track(msg, channel, { expectReply: false, execution: true });
    return this.deliver(channel, msg).catch((error: Error) => {
      this.pending.cancel(future);
      throw error;
    });
  }

  /**
   * Sends a request of the service's own and returns its future: the messages whose parent it is go to
   * `handlers` only, and `done` resolves once its reply and its idle status are in (or IDLE_AFTER_REPLY_MS
   * after the reply without the idle). `sent` rejects when the message could not be sent; the request is
   * then forgotten. Goes through `hold` like a client's message.
   */
  submit(channel: 'shell' | 'control', msg: JupyterMessage, handlers: FutureHandlers): RequestFuture {
    const future = this.pending.track(msg, channel, { expectReply: true, execution: mayRunCode(channel, msg), handlers });
    future.sent = this.deliver(channel, msg).catch((error: Error) => {
      this.pending.cancel(future);
      throw error;
    });
    // Who needs to know awaits `sent`; nobody else should see an unhandled rejection.
    future.sent.catch(() => undefined);
    return future;
  }

  private deliver(channel: Channel, msg: JupyterMessage): Promise<void> {
    if (channel !== 'iopub') this.lastActivity = this.clock();
    const held = this.held;
    if (!held) return this.connection.send(channel, msg);
    if (held.sends >= MAX_HELD_SENDS) return Promise.reject(new Error('the kernel is restarting; too many messages wait already'));
    held.sends++;
    held.waiting.add(msg.header.msg_id);
    return held.released.then(() => this.connection.send(channel, msg));
  }

  /** Client messages wait from now on until `release` (the service's own probes still go through). */
  hold(): void {
    if (this.held) return;
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    this.held = { sends: 0, waiting: new Set(), released, release };
  }

  /** Lets the waiting client messages through, in order, to the connection as it is now. */
  release(): void {
    const held = this.held;
    this.held = undefined;
    held?.release();
  }

  /** Whether an execution a client asked for has not ended yet (the idle-CPU budget spares such a kernel). */
  get executing(): boolean {
    return this.pending.executing > 0;
  }

  /** Builds a request in the service's own session. */
  message(msgType: string, content: JsonObject, parent?: JupyterMessage): JupyterMessage {
    return newMessage(msgType, content, { session: this.session, parent });
  }

  /**
   * Sends a request and resolves with its reply (the message on `channel` whose parent is the request).
   * Rejects after `timeoutMs`.
   */
  request(channel: 'shell' | 'control', msg: JupyterMessage, timeoutMs: number): Promise<JupyterMessage> {
    return new Promise((resolve, reject) => {
      const future = this.submit(channel, msg, {
        onReply: (reply) => {
          clearTimeout(timer);
          future.detach();
          resolve(reply);
        },
      });
      const timer = setTimeout(() => {
        future.detach();
        reject(new KernelNotReadyError(`no ${msg.header.msg_type} reply within ${timeoutMs} ms`));
      }, timeoutMs);
      future.sent.catch((error: Error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  /**
   * Waits until the kernel answers kernel_info on shell AND its iopub status for that request arrives:
   * only then is the SUB socket known to be subscribed (ZMQ's slow-joiner problem), so no output of the
   * first execution can be lost. Probes again every `probeMs` until `timeoutMs`.
   *
   * On `control` (re-adoption after a restart of the service), ipykernel answers even while a long
   * computation holds its shell; the probe's status then leaves `state` alone.
   */
  async waitReady(timeoutMs: number, probeMs = 250, channel: 'shell' | 'control' = 'shell'): Promise<JupyterMessage> {
    // ZMQ queues what a DEALER sends before its peer has bound the socket, so one probe reaches a kernel
    // that is still booting. Another probe is sent only when the reply came but its iopub status did
    // not (the SUB was not subscribed yet), so no stray probe keeps a ready kernel busy afterwards.
    const probes: RequestFuture[] = [];
    let kernelInfo: JupyterMessage | undefined;
    let sawIopub = false;
    let wake: () => void = () => undefined;
    const handlers: FutureHandlers = {
      onIOPub: () => {
        sawIopub = true;
        wake();
      },
      onReply: (reply) => {
        if (reply.header.msg_type === 'kernel_info_reply') kernelInfo = reply;
        wake();
      },
    };
    // Not `submit`: a probe bypasses `hold` (it is what a held kernel waits for) and is no client activity.
    const probe = async () => {
      const request = this.message('kernel_info_request', {});
      const future = this.pending.track(request, channel, { expectReply: true, execution: false, handlers });
      probes.push(future);
      await this.connection.send(channel, request).catch((error: Error) => {
        this.pending.cancel(future);
        throw error;
      });
    };
    /** Resolves on the next message of a probe or after `ms`. */
    const nextEvent = (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    try {
      const deadline = this.clock() + timeoutMs;
      await probe();
      while (this.clock() < deadline) {
        if (kernelInfo && sawIopub) {
          if (this.state === 'starting' || this.state === 'restarting') this.setState('idle');
          return kernelInfo;
        }
        // Once the kernel has answered, it is up and the SUB connects within milliseconds: probe again
        // soon rather than after a whole probe interval (a cold start pays this wait).
        const interval = kernelInfo ? REPROBE_AFTER_REPLY_MS : probeMs;
        const waitedFrom = this.clock();
        await nextEvent(Math.max(1, Math.min(interval, deadline - waitedFrom)));
        if (kernelInfo && !sawIopub && this.clock() - waitedFrom >= interval) await probe();
      }
      throw new KernelNotReadyError(`kernel did not become ready within ${timeoutMs} ms`);
    } finally {
      // Probes still in flight stay tracked until they end, so that a control probe's late status still
      // leaves `state` alone.
      for (const future of probes) future.detach();
    }
  }

  close(): void {
    this.setState('dead');
    this.connection.close();
    this.listeners.clear();
    this.pending.clear();
    // Waiting sends now reach the closed connection, which refuses them.
    this.release();
  }
}

/** Every shell request but kernel_info (answered at once) may run code: an execute, a widget's comm_msg, a completion. */
function mayRunCode(channel: Channel, msg: JupyterMessage): boolean {
  return channel === 'shell' && msg.header.msg_type !== 'kernel_info_request';
}

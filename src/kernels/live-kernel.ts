/**
 * A running kernel as this process sees it: its ZMQ connection, its execution state as the iopub status
 * messages tell it, and the time of its last activity. Everything that talks to a kernel (v1 queries, the
 * Jupyter channels bridge, notebook executions) goes through `send` and `onMessage`.
 */
import { randomUUID } from 'node:crypto';
import type { ConnectionInfo } from '../protocol/connection-file.js';
import {
  newMessage,
  parentMsgId,
  type Channel,
  type JsonObject,
  type JupyterMessage,
  type StatusContent,
} from '../protocol/messages.js';
import { KernelConnection, type MessageListener } from '../transport/kernel-connection.js';
import { transition, type KernelState, type ResourceLimits } from './kernel-record.js';

export class KernelNotReadyError extends Error {}

/** How long waitReady waits for the iopub status of an answered probe before it probes again. */
const REPROBE_AFTER_REPLY_MS = 25;
/** Client messages a held kernel keeps until it is released; more are refused, not buffered. */
const MAX_HELD_SENDS = 256;
/** Requests remembered until their end: a client queuing more than this many forgets the oldest. */
const MAX_OPEN_EXECUTIONS = 1000;

export class LiveKernel {
  /** The session id of messages the service itself sends (v1 queries, readiness probes). */
  readonly session = randomUUID();
  state: KernelState = 'starting';
  /**
   * When a client last asked something of the kernel: a request sent to it, or the end (its idle status)
   * of an execution a client asked for. What the kernel publishes by itself (a detached thread printing,
   * forged status messages) does not count: that would keep a kernel nobody uses from being culled.
   */
  lastActivity: number;
  /**
   * Hot-path figures kept in memory and written to the store by the usage sampler, so that an execute
   * costs no store round trip. `limits` never change after creation.
   */
  numQueriesExecuted = 0;
  limits?: ResourceLimits;
  /** The API key that created it (undefined: admin or open mode), so the execute path checks it without the store. */
  owner?: string;
  connection: KernelConnection;
  private readonly listeners = new Set<MessageListener>();
  /** Readiness probes sent on control: their busy/idle status says nothing about the shell (see waitReady). */
  private readonly controlProbes = new Set<string>();
  /** While set, client messages wait here instead of reaching the kernel (see hold). */
  private held?: { sends: number; released: Promise<void>; release: () => void };
  /** Shell requests sent and not yet seen ending (idle status), oldest first; bounded (MAX_OPEN_EXECUTIONS). */
  private readonly openExecutions = new Set<string>();

  constructor(
    readonly id: string,
    private info: ConnectionInfo,
    private readonly clock: () => number,
    private readonly onBadFrame?: (error: Error) => void,
  ) {
    this.lastActivity = clock();
    this.connection = this.connect();
  }

  private connect(): KernelConnection {
    const connection = new KernelConnection(this.info, this.onBadFrame);
    connection.onMessage((channel, msg) => this.dispatch(channel, msg));
    return connection;
  }

  private dispatch(channel: Channel, msg: JupyterMessage): void {
    if (channel === 'iopub' && msg.header.msg_type === 'status') {
      const parent = parentMsgId(msg) ?? '';
      if (!this.controlProbes.has(parent)) this.state = transition(this.state, (msg.content as StatusContent).execution_state);
      // An execution a client asked for ended: idle time counts from here, not from its start. Each
      // request ends once, so replaying its status cannot keep the kernel looking used.
      if ((msg.content as StatusContent).execution_state === 'idle' && this.openExecutions.delete(parent)) this.lastActivity = this.clock();
    }
    for (const listener of this.listeners) listener(channel, msg);
  }

  /** Every change of state goes through `transition`, so an impossible one (dead -> busy) never happens. */
  setState(next: KernelState): void {
    this.state = transition(this.state, next);
  }

  /** Drops the old sockets and connects again (after the kernel process was restarted). */
  reconnect(): void {
    this.connection.close();
    this.connection = this.connect();
    this.openExecutions.clear();
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
    if (channel !== 'iopub') this.lastActivity = this.clock();
    // Every shell request but kernel_info (the service's own readiness probes, answered at once) may run
    // code: an execute, a widget's comm_msg, a completion.
    if (channel === 'shell' && msg.header.msg_type !== 'kernel_info_request') {
      this.openExecutions.add(msg.header.msg_id);
      if (this.openExecutions.size > MAX_OPEN_EXECUTIONS) this.openExecutions.delete(this.openExecutions.values().next().value!);
    }
    const held = this.held;
    if (!held) return this.connection.send(channel, msg);
    if (held.sends >= MAX_HELD_SENDS) return Promise.reject(new Error('the kernel is restarting; too many messages wait already'));
    held.sends++;
    return held.released.then(() => this.connection.send(channel, msg));
  }

  /** Client messages wait from now on until `release` (the service's own probes still go through). */
  hold(): void {
    if (this.held) return;
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    this.held = { sends: 0, released, release };
  }

  /** Lets the waiting client messages through, in order, to the connection as it is now. */
  release(): void {
    const held = this.held;
    this.held = undefined;
    held?.release();
  }

  /** Whether an execution a client asked for has not ended yet (the idle-CPU budget spares such a kernel). */
  get executing(): boolean {
    return this.openExecutions.size > 0;
  }

  /** Builds a request in the service's own session. */
  message(msgType: string, content: JsonObject, parent?: JupyterMessage): JupyterMessage {
    return newMessage(msgType, content, { session: this.session, parent });
  }

  /**
   * Sends a request and resolves with its reply (the message on `channel` whose parent is the request).
   * Rejects after `timeoutMs`.
   */
  request(channel: Channel, msg: JupyterMessage, timeoutMs: number): Promise<JupyterMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        unsubscribe();
        reject(new KernelNotReadyError(`no ${msg.header.msg_type} reply within ${timeoutMs} ms`));
      }, timeoutMs);
      const unsubscribe = this.onMessage((replyChannel, reply) => {
        if (replyChannel === channel && parentMsgId(reply) === msg.header.msg_id) {
          clearTimeout(timer);
          unsubscribe();
          resolve(reply);
        }
      });
      this.send(channel, msg).catch((error: Error) => {
        clearTimeout(timer);
        unsubscribe();
        reject(error);
      });
    });
  }

  /**
   * Waits until the kernel answers kernel_info on shell AND its iopub status for that request arrives:
   * only then is the SUB socket known to be subscribed (ZMQ's slow-joiner problem), so no output of the
   * first execution can be lost. Probes again every `probeMs` until `timeoutMs`.
   *
   * On `control` (re-adoption after a restart of the service, issue #6), ipykernel answers even while a
   * long computation holds its shell; the probe's status then leaves `state` alone.
   */
  async waitReady(timeoutMs: number, probeMs = 250, channel: 'shell' | 'control' = 'shell'): Promise<JupyterMessage> {
    // ZMQ queues what a DEALER sends before its peer has bound the socket, so one probe reaches a kernel
    // that is still booting. Another probe is sent only when the reply came but its iopub status did
    // not (the SUB was not subscribed yet), so no stray probe keeps a ready kernel busy afterwards.
    const probedIds = new Set<string>();
    let kernelInfo: JupyterMessage | undefined;
    let sawIopub = false;
    let wake: () => void = () => undefined;
    const unsubscribe = this.onMessage((replyChannel, msg) => {
      const parent = parentMsgId(msg);
      if (!parent || !probedIds.has(parent)) return;
      if (replyChannel === 'iopub') sawIopub = true;
      if (replyChannel === channel && msg.header.msg_type === 'kernel_info_reply') kernelInfo = msg;
      wake();
    });
    const probe = async () => {
      const request = this.message('kernel_info_request', {});
      probedIds.add(request.header.msg_id);
      if (channel === 'control') this.controlProbes.add(request.header.msg_id);
      await this.connection.send(channel, request);
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
          if (this.state === 'starting' || this.state === 'restarting') this.state = 'idle';
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
      unsubscribe();
    }
  }

  close(): void {
    this.state = 'dead';
    this.connection.close();
    this.listeners.clear();
    // Waiting sends now reach the closed connection, which refuses them.
    this.release();
  }
}

/**
 * A kernel for unit tests of what submits requests (query runs, notebook cells): its requests go into a
 * real pending-request table, as on a LiveKernel, and the test (or a script) answers them by hand.
 */
import type { FutureHandlers, RequestFuture } from '../../src/kernels/live-kernel.js';
import { PendingRequests } from '../../src/kernels/request-future.js';
import { newMessage, parentMsgId, type Channel, type JsonObject, type JupyterMessage } from '../../src/protocol/messages.js';

export class FakeKernel {
  readonly session = 'fake-session';
  readonly sent: { channel: Channel; msg: JupyterMessage }[] = [];
  private readonly pending = new PendingRequests(1000, () => undefined);
  private readonly futures: RequestFuture[] = [];

  message(msgType: string, content: JsonObject, parent?: JupyterMessage): JupyterMessage {
    return newMessage(msgType, content, { session: this.session, parent });
  }

  async send(channel: Channel, msg: JupyterMessage): Promise<void> {
    this.sent.push({ channel, msg });
  }

  submit(channel: 'shell' | 'control', msg: JupyterMessage, handlers: FutureHandlers): RequestFuture {
    const future = this.pending.track(msg, channel, { expectReply: true, execution: true, handlers });
    this.futures.push(future);
    future.sent = this.send(channel, msg);
    return future;
  }

  /** Requests whose owner still listens to them. */
  get listening(): number {
    return this.futures.filter((future) => future.owned && !future.ended).length;
  }

  /** Delivers a kernel message whose parent is `parent` (none when null), as the kernel's sockets would. */
  emit(channel: Channel, msgType: string, content: JsonObject, parent: JupyterMessage | null): void {
    const msg = newMessage(msgType, content, { session: 'kernel-session', parent: parent ?? undefined });
    this.pending.route(channel, msg, parentMsgId(msg));
  }
}

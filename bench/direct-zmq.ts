/**
 * The baseline of every round trip: the benchmark speaking to a kernel's own IPC sockets with this
 * project's transport, no service in between (the same kernel, in the same container, that the service
 * serves).
 */
import { randomUUID } from 'node:crypto';
import type { ConnectionInfo } from '../src/protocol/connection-file.js';
import { newMessage, parentMsgId, type JupyterMessage } from '../src/protocol/messages.js';
import { KernelConnection } from '../src/transport/kernel-connection.js';

export interface DirectKernel {
  /** execute_request until its execute_reply and its idle status have both arrived. */
  execute(code: string): Promise<void>;
  close(): void;
}

export function connectDirect(info: ConnectionInfo): DirectKernel {
  // The kernel's own speed: no relays (the service's bound on a kernel's messages is part of its cost).
  const connection = new KernelConnection(info, undefined, { trustedKernel: true });
  const session = randomUUID();
  const waiters = new Map<string, (msg: JupyterMessage) => void>();
  connection.onMessage((_channel, msg) => {
    const parent = parentMsgId(msg);
    if (parent) waiters.get(parent)?.(msg);
  });
  return {
    execute: (code) =>
      new Promise((resolve) => {
        const request = newMessage(
          'execute_request',
          { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true },
          { session },
        );
        let replied = false;
        let idle = false;
        waiters.set(request.header.msg_id, (msg) => {
          if (msg.channel === 'shell') replied = true;
          if (msg.header.msg_type === 'status' && (msg.content as { execution_state?: string }).execution_state === 'idle') idle = true;
          if (replied && idle) {
            waiters.delete(request.header.msg_id);
            resolve();
          }
        });
        void connection.send('shell', request);
      }),
    close: () => connection.close(),
  };
}

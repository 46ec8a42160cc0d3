/**
 * Jupyter messaging protocol v5.3 message model.
 * https://jupyter-client.readthedocs.io/en/latest/messaging.html
 *
 * Wire field names stay snake_case exactly as the spec writes them, so that a message read from ZMQ can be
 * forwarded to a WebSocket client (and back) without renaming anything.
 */
import { randomUUID } from 'node:crypto';

export const PROTOCOL_VERSION = '5.3';

export type Channel = 'shell' | 'control' | 'stdin' | 'iopub';
const CHANNELS: readonly Channel[] = ['shell', 'control', 'stdin', 'iopub'];

export function isChannel(value: unknown): value is Channel {
  return typeof value === 'string' && (CHANNELS as readonly string[]).includes(value);
}

export interface MessageHeader {
  msg_id: string;
  msg_type: string;
  username: string;
  session: string;
  date: string;
  version: string;
  subshell_id?: string | null;
  [extra: string]: unknown;
}

export type JsonObject = { [key: string]: unknown };

/** A Jupyter message as it travels between peers. `parent_header` is `{}` when there is no parent. */
export interface JupyterMessage<C extends JsonObject = JsonObject> {
  header: MessageHeader;
  parent_header: MessageHeader | Record<string, never>;
  metadata: JsonObject;
  content: C;
  buffers: Buffer[];
  /** The channel the message travels on; set on WebSocket messages, absent on ZMQ frames. */
  channel?: Channel;
  /** ZMQ routing identities (ROUTER sockets only). */
  identities?: Buffer[];
  /**
   * header, parent_header, metadata and content exactly as the bytes that came in (from a kernel, or
   * from a client's v1 WebSocket frame), each already checked to be a JSON object. Encoders forward these
   * bytes instead of encoding the parsed objects again. A message built by the service has none, and a
   * message received must not be changed while it carries them.
   */
  wire?: readonly Buffer[];
}

export type ExecutionState = 'starting' | 'idle' | 'busy' | 'restarting' | 'dead';

/** Content of the messages this service reads; every other message type passes through untouched. */
export interface StreamContent extends JsonObject { name: 'stdout' | 'stderr'; text: string }
export interface StatusContent extends JsonObject { execution_state: ExecutionState }
export interface ErrorContent extends JsonObject { ename: string; evalue: string; traceback: string[] }
export interface DisplayDataContent extends JsonObject {
  data: Record<string, unknown>;
  metadata: JsonObject;
  transient?: JsonObject;
}
export interface ExecuteResultContent extends DisplayDataContent { execution_count: number }
export interface InputRequestContent extends JsonObject { prompt: string; password: boolean }
export interface ExecuteReplyContent extends JsonObject {
  status: 'ok' | 'error' | 'aborted';
  execution_count?: number;
  ename?: string;
  evalue?: string;
  traceback?: string[];
}

export interface NewMessageOptions {
  session: string;
  username?: string;
  parent?: JupyterMessage;
  metadata?: JsonObject;
  buffers?: Buffer[];
  channel?: Channel;
  msgId?: string;
}

/** Builds a fresh message with a new id and the current time, as `Session.msg` does in jupyter_client. */
export function newMessage<C extends JsonObject>(
  msgType: string,
  content: C,
  options: NewMessageOptions,
): JupyterMessage<C> {
  return {
    header: {
      msg_id: options.msgId ?? randomUUID(),
      msg_type: msgType,
      username: options.username ?? 'polykernel',
      session: options.session,
      date: new Date().toISOString(),
      version: PROTOCOL_VERSION,
    },
    parent_header: options.parent ? options.parent.header : {},
    metadata: options.metadata ?? {},
    content,
    buffers: options.buffers ?? [],
    ...(options.channel ? { channel: options.channel } : {}),
  };
}

/** The msg_id of a message's parent, or undefined when it has none. */
export function parentMsgId(msg: JupyterMessage): string | undefined {
  const parent = msg.parent_header as Partial<MessageHeader>;
  return typeof parent.msg_id === 'string' ? parent.msg_id : undefined;
}

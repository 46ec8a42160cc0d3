/**
 * The frames a client sends on the v1 streaming socket (`/v1/stream/kernel/:id/execute`), checked at the
 * edge: pure functions, no socket. A frame is a JSON text frame of the HTTP execute call's shape,
 * `{mode, code, runId, options}`, with the modes that make sense on a socket: `query` and `batch` start a
 * run, `input` answers the running one's input request. `continue` has no use here: output is pushed.
 * Every refusal says what to fix.
 */
import { invalidInput } from '../../errors.js';
import type { BatchOptions } from '../../runs/batch.js';
import { validateObject, type ObjectSchema } from '../validate.js';
import { EXECUTE_SCHEMA, toBatchOptions } from './routes.js';

export type StreamRequest =
  | { mode: 'query'; code: string; runId?: string }
  | { mode: 'batch'; options: BatchOptions; runId?: string }
  | { mode: 'input'; code: string; runId?: string };

const STREAM_MODES = ['query', 'batch', 'input'] as const;

const STREAM_SCHEMA: ObjectSchema = {
  ...EXECUTE_SCHEMA,
  mode: { type: 'string', required: true, enum: STREAM_MODES },
};

const SHAPE = 'send a JSON object {"mode": "query" | "batch" | "input", "code", "runId", "options"} as a text frame';
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The runId a frame names, when it is a JSON object with a well-formed one: error frames carry it. */
export function runIdOf(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const runId = (value as Record<string, unknown>).runId;
  return typeof runId === 'string' && runId.length <= 64 && /^[A-Za-z0-9_.:-]+$/.test(runId) ? runId : undefined;
}

/** A frame's bytes as JSON; a binary frame, bytes that are not UTF-8 or text that is not JSON are refused. */
export function decodeStreamFrame(data: Buffer, isBinary: boolean): unknown {
  if (isBinary) throw invalidInput(`binary frames are not understood: ${SHAPE}`);
  let text: string;
  try {
    text = utf8.decode(data);
  } catch {
    throw invalidInput(`the frame is not UTF-8 text: ${SHAPE}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw invalidInput(`the frame is not JSON (${(error as Error).message.slice(0, 100)}): ${SHAPE}`);
  }
}

/** A decoded frame checked against the modes and fields of the socket. */
export function parseStreamRequest(value: unknown, maxBodyBytes: number): StreamRequest {
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && (value as Record<string, unknown>).mode === 'continue') {
    throw invalidInput('mode "continue" is not used on the streaming socket: output is pushed as it comes; send "query", "batch" or "input"');
  }
  const frame = validateObject<{ mode: (typeof STREAM_MODES)[number]; code?: string; runId?: string; options?: Record<string, unknown> }>(STREAM_SCHEMA, value, 'frame');
  const code = () => {
    if (frame.code === undefined) throw invalidInput(`frame.code is required in mode "${frame.mode}"`);
    return frame.code;
  };
  switch (frame.mode) {
    case 'query':
      // Query mode ignores its options, as the HTTP call and Backend.AI do.
      return { mode: 'query', code: code(), runId: frame.runId };
    case 'batch':
      return { mode: 'batch', options: toBatchOptions(frame.options, maxBodyBytes), runId: frame.runId };
    case 'input':
      return { mode: 'input', code: code(), runId: frame.runId };
  }
}

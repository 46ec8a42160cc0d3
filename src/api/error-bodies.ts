/**
 * How an error reaches a client, written once for every API surface: what may be told (a DomainError, or
 * a 4xx that koa marks as exposed; anything else is an internal fault, answered with a generic 500 and
 * logged by the caller), the one table of HTTP reason phrases, and one body renderer per dialect:
 * - v1: an RFC 7807 problem document, as Backend.AI answers;
 * - Piston (/api/v2): `{message}`, the one field Piston's errors have and its clients read;
 * - Jupyter: tornado's `{message, reason}`, which Jupyter clients read. The Jupyter REST APIs, the channels
 *   WebSocket handshake (src/channels) and /api/executions (nbexec, a jupyter_server extension) all speak it;
 * - Judge0: `{"error": message}`, and for a submission with wrong fields Judge0's 422 body, the messages
 *   per field (`{"language_id": ["can't be blank"]}`).
 */
import { DomainError, httpStatusOf } from '../errors.js';

export interface ErrorAnswer {
  status: number;
  /** Stable machine-readable code (the v1 problem type); derived from the reason phrase when absent. */
  code?: string;
  message: string;
  shortMessage?: string;
  fields?: Record<string, string[]>;
}

export const INTERNAL_ERROR: ErrorAnswer = { status: 500, message: 'internal error; the service logged the details' };

/** What a client is told about `error`; undefined for an internal fault, which the caller logs. */
export function answerOf(error: unknown): ErrorAnswer | undefined {
  if (error instanceof DomainError) {
    return { status: httpStatusOf(error), code: error.code, message: error.message, shortMessage: error.shortMessage, fields: error.fields };
  }
  const httpError = error as { status?: number; expose?: boolean; message?: string } | null;
  if (httpError?.status && httpError.status < 500 && httpError.expose) return { status: httpError.status, message: httpError.message ?? 'bad request' };
  return undefined;
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  402: 'Payment Required',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
};

export function reasonPhrase(status: number): string {
  return REASONS[status] ?? 'Error';
}

export function v1ErrorBody(answer: ErrorAnswer): Record<string, unknown> {
  const title = reasonPhrase(answer.status);
  const code = answer.code ?? title.toLowerCase().replace(/ /g, '_');
  return { type: `urn:polykernel:error:${code}`, title, status: answer.status, detail: answer.message };
}

export function jupyterErrorBody(answer: ErrorAnswer): Record<string, unknown> {
  const body: Record<string, unknown> = { message: answer.message, reason: reasonPhrase(answer.status) };
  if (answer.shortMessage !== undefined) body.short_message = answer.shortMessage;
  return body;
}

export function judge0ErrorBody(answer: ErrorAnswer): Record<string, unknown> {
  return answer.fields ?? { error: answer.message };
}

export function pistonErrorBody(answer: ErrorAnswer): Record<string, unknown> {
  return { message: answer.message };
}

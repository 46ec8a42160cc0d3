/**
 * What every API surface shares at the HTTP edge: reading bodies within a size limit, reading the token, and
 * turning errors into JSON. Each surface renders its own error body (v1: a problem document; the
 * Jupyter APIs: `{message, reason}`), chosen by path in one place. A fault that is not a DomainError is
 * logged with its stack and answered with a generic 500: clients never see internals.
 */
import type { Context, Middleware, Next } from 'koa';
import { DomainError, httpStatusOf, invalidInput } from '../errors.js';
import type { Logger } from '../logger.js';
import { refusesNonJsonBody } from './origin.js';

export type ErrorStyle = 'v1' | 'jupyter';

export function errorStyleOf(path: string): ErrorStyle {
  return path === '/v1' || path.startsWith('/v1/') ? 'v1' : 'jupyter';
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
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export function errorBody(style: ErrorStyle, status: number, message: string, code?: string): Record<string, unknown> {
  const reason = REASONS[status] ?? 'Error';
  if (style === 'v1') {
    // RFC 7807 problem details, as Backend.AI answers.
    return { type: `urn:polykernel:error:${code ?? reason.toLowerCase().replace(/ /g, '_')}`, title: reason, status, detail: message };
  }
  return { message, reason };
}

export function sendError(ctx: Context, status: number, message: string, code?: string): void {
  const style = errorStyleOf(ctx.path);
  ctx.status = status;
  ctx.body = errorBody(style, status, message, code);
  if (style === 'v1') ctx.type = 'application/problem+json';
}

export function errorBoundary(log: Logger): Middleware {
  return async (ctx: Context, next: Next) => {
    try {
      await next();
      if (ctx.body === undefined || ctx.body === null) {
        if (ctx.status === 404) sendError(ctx, 404, `no such resource: ${ctx.method} ${ctx.path.slice(0, 200)}`, 'not_found');
        else if (ctx.status === 405) sendError(ctx, 405, `${ctx.method} is not allowed on ${ctx.path.slice(0, 200)}; allowed: ${ctx.response.get('Allow')}`);
      }
    } catch (error) {
      if (error instanceof DomainError) {
        sendError(ctx, httpStatusOf(error), error.message, error.code);
        return;
      }
      const httpError = error as { status?: number; expose?: boolean; message?: string };
      if (httpError.status && httpError.status < 500 && httpError.expose) {
        sendError(ctx, httpError.status, httpError.message ?? 'bad request');
        return;
      }
      log.error('Unhandled error', { method: ctx.method, path: ctx.path, error: (error as Error)?.stack ?? String(error) });
      sendError(ctx, 500, 'internal error; the service logged the details');
    }
  };
}

/** The token a request presents: `Authorization: token <t>` / `Bearer <t>`, or `?token=<t>`. */
export function presentedToken(headers: Record<string, string | string[] | undefined>, url: URL): string | undefined {
  const header = headers.authorization;
  if (typeof header === 'string') {
    const match = /^(?:token|bearer)\s+(.+)$/i.exec(header.trim());
    if (match) return match[1];
  }
  return url.searchParams.get('token') ?? undefined;
}

class PayloadTooLarge extends DomainError {
  constructor(limit: number) {
    super('payload_too_large', `request body is larger than ${limit} bytes`);
  }
}

/**
 * Reads the raw body, refusing anything over `limit` bytes (413) before buffering it all. The request is
 * paused, not destroyed, and the connection closed after the answer: a client still uploading (a chunked
 * body has no Content-Length to refuse up front) then reads its 413 instead of a reset (issue #6).
 */
export async function readRawBody(ctx: Context, limit: number): Promise<string> {
  const declared = Number(ctx.get('content-length') || 0);
  if (declared > limit) {
    ctx.set('Connection', 'close');
    throw new PayloadTooLarge(limit);
  }
  const req = ctx.req;
  return new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      req.off('data', onData).off('end', onEnd).off('error', onError).off('aborted', onAborted);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        done();
        req.pause();
        ctx.set('Connection', 'close');
        reject(new PayloadTooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      done();
      resolve(Buffer.concat(chunks).toString('utf8'));
    };
    // The client went away mid-body: nobody reads the answer, and it is not a fault of the service.
    const onError = () => {
      done();
      reject(invalidInput('the request body was cut short'));
    };
    const onAborted = onError;
    req.on('data', onData).on('end', onEnd).on('error', onError).on('aborted', onAborted);
  });
}

/**
 * A JSON body, whatever Content-Type says: `curl -d '{...}'` sends JSON labelled as a form, and the
 * v1 API's users do exactly that. An empty body is `{}`. A browser's body must be labelled JSON, though
 * (see refusesNonJsonBody in ./origin.ts): that is what a cross-site form would send.
 */
export async function readJsonBody(ctx: Context, limit: number): Promise<unknown> {
  const raw = await readRawBody(ctx, limit);
  if (raw.trim() === '') return {};
  const notJson = refusesNonJsonBody(ctx.headers);
  if (notJson) throw new DomainError('unsupported_media_type', notJson, 'Unsupported Media Type');
  try {
    return JSON.parse(raw);
  } catch (error) {
    throw invalidInput(`request body is not valid JSON: ${(error as Error).message}`);
  }
}

/**
 * What every API surface shares at the HTTP edge: reading bodies within a size limit, and answering errors
 * in the surface's dialect (v1: a problem document; Judge0's API: `{error}`; Piston's /api/v2:
 * `{message}`; the Jupyter APIs: `{message, reason}`), chosen by path in one place. A fault that is not a
 * DomainError is logged with its stack and answered with a generic 500: clients never see internals.
 */
import type { Context, Middleware, Next } from 'koa';
import { invalidInput, payloadTooLarge, unsupportedMediaType } from '../errors.js';
import { answerOf, INTERNAL_ERROR, judge0ErrorBody, jupyterErrorBody, pistonErrorBody, v1ErrorBody, type ErrorAnswer } from './error-bodies.js';
import type { Logger } from '../logger.js';
import { refusesNonJsonBody } from './origin.js';

/** The /v1 API answers problem documents, Piston's /api/v2 `{message}`; every other path is a Jupyter API (see ./error-bodies.ts). */
function speaksV1(path: string): boolean {
  return path === '/v1' || path.startsWith('/v1/');
}

/** The top-level paths of Judge0's API (its config/routes.rb). */
const JUDGE0_ROOTS = new Set(['submissions', 'languages', 'statuses', 'system_info', 'config_info', 'about', 'version', 'workers', 'authenticate', 'authorize', 'isolate', 'license', 'statistics']);

export function speaksJudge0(path: string): boolean {
  return JUDGE0_ROOTS.has(path.split('/')[1] ?? '');
}

export function speaksPiston(path: string): boolean {
  return path === '/api/v2' || path.startsWith('/api/v2/');
}

function sendError(ctx: Context, answer: ErrorAnswer): void {
  ctx.status = answer.status;
  if (speaksJudge0(ctx.path)) {
    ctx.body = judge0ErrorBody(answer);
  } else if (speaksV1(ctx.path)) {
    ctx.body = v1ErrorBody(answer);
    ctx.type = 'application/problem+json';
  } else if (speaksPiston(ctx.path)) {
    ctx.body = pistonErrorBody(answer);
  } else {
    ctx.body = jupyterErrorBody(answer);
  }
}

/**
 * Every error of every route and middleware after it is answered here, in its surface's dialect: a
 * handler or middleware throws a DomainError and never writes an error status itself.
 */
export function errorBoundary(log: Logger): Middleware {
  return async (ctx: Context, next: Next) => {
    try {
      await next();
      if (ctx.body === undefined || ctx.body === null) {
        if (ctx.status === 404) sendError(ctx, { status: 404, code: 'not_found', message: `no such resource: ${ctx.method} ${ctx.path.slice(0, 200)}` });
        else if (ctx.status === 405) sendError(ctx, { status: 405, message: `${ctx.method} is not allowed on ${ctx.path.slice(0, 200)}; allowed: ${ctx.response.get('Allow')}` });
      }
    } catch (error) {
      const answer = answerOf(error);
      if (!answer) log.error('Unhandled error', { method: ctx.method, path: ctx.path, error: (error as Error)?.stack ?? String(error) });
      sendError(ctx, answer ?? INTERNAL_ERROR);
    }
  };
}

/**
 * Reads the raw body, refusing anything over `limit` bytes (413) before buffering it all. The request is
 * paused, not destroyed, and the connection closed after the answer: a client still uploading (a chunked
 * body has no Content-Length to refuse up front) then reads its 413 instead of a connection reset.
 */
export async function readRawBody(ctx: Context, limit: number): Promise<string> {
  const declared = Number(ctx.get('content-length') || 0);
  if (declared > limit) {
    ctx.set('Connection', 'close');
    throw payloadTooLarge(limit);
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
        reject(payloadTooLarge(limit));
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
  if (notJson) throw unsupportedMediaType(notJson);
  try {
    return JSON.parse(raw);
  } catch (error) {
    throw invalidInput(`request body is not valid JSON: ${(error as Error).message}`);
  }
}

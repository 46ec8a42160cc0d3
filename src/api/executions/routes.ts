/**
 * nbexec's /api/executions. Thin handlers: parse, one manager call, status + JSON. Errors render as
 * `{message, reason}` (api/http.ts). With `X-Response-Encoding: chunked`, POST /api/executions streams
 * one JSON event per line until the notebook ends, and the other POST/DELETE calls wait for their
 * operation; without it they answer 202 at once and the work goes on.
 *
 * A client that disconnects from a stream only stops receiving events: the execution runs on, exactly as
 * in the non-chunked mode, and its record says how it ended. Stopping it is an explicit shutdown.
 */
import { PassThrough } from 'node:stream';
import Router from '@koa/router';
import type { Context } from 'koa';
import type { Config } from '../../config/index.js';
import { tenantOf } from '../../auth/tenant.js';
import { invalidInput } from '../../errors.js';
import type { ExecutionManager } from '../../executions/manager.js';
import { isTerminal, type ExecutionEvent } from '../../executions/model.js';
import type { Logger } from '../../logger.js';
import { readFields, toExecutionRequest } from './submission.js';

export interface ExecutionsDeps {
  config: Config;
  log: Logger;
  executions: ExecutionManager;
}

const wantsChunked = (ctx: Context) => ctx.get('x-response-encoding').trim().toLowerCase() === 'chunked';

/** A 202 with an empty body (koa turns a null body into 204). */
function accepted(ctx: Context): void {
  ctx.status = 202;
  ctx.body = '';
}

export function executionsRouter(deps: ExecutionsDeps): Router {
  const { executions, log } = deps;
  const router = new Router({ prefix: '/api/executions' });
  const background = (what: string, work: Promise<unknown>) =>
    void work.catch((error: Error) => log.error(`Background ${what} failed`, { error: error.message }));

  router.get('/', async (ctx) => {
    ctx.body = { executions: await executions.list(tenantOf(ctx)) };
  });

  router.post('/', async (ctx) => {
    const request = toExecutionRequest(await readFields(ctx, deps.config.maxBodyBytes));
    if (!wantsChunked(ctx)) {
      const { execution } = await executions.submit(request, undefined, tenantOf(ctx));
      ctx.status = 202;
      ctx.set('Location', `/api/executions/${execution.exec_id}`);
      ctx.body = { event: 'notebook_start', timestamp: Date.now() / 1000, execution };
      return;
    }
    const stream = new PassThrough();
    // A write racing a client's disconnect must not become an unhandled error.
    stream.on('error', () => undefined);
    const write = (event: ExecutionEvent) => {
      if (stream.destroyed || stream.writableEnded) return;
      stream.write(`${JSON.stringify(event)}\n`);
      if (isTerminal(event)) stream.end();
    };
    const { execution, unsubscribe } = await executions.submit(request, write, tenantOf(ctx));
    stream.once('close', unsubscribe);
    ctx.status = 202;
    ctx.type = 'application/x-ndjson';
    ctx.set('Location', `/api/executions/${execution.exec_id}`);
    ctx.set('Cache-Control', 'no-cache');
    ctx.body = stream;
    // Headers now: a queued execution may not send its first event for a while.
    ctx.res.flushHeaders();
  });

  router.delete('/', async (ctx) => {
    const scope = tenantOf(ctx);
    if (wantsChunked(ctx)) await executions.deleteAll(scope);
    else background('delete of all executions', executions.deleteAll(scope));
    accepted(ctx);
  });

  router.get('/:execId', async (ctx) => {
    ctx.body = { execution: await executions.get(ctx.params.execId!, tenantOf(ctx)) };
  });

  router.post('/:execId', async (ctx) => {
    const fields = await readFields(ctx, deps.config.maxBodyBytes);
    const action = fields.action ?? ctx.query.action;
    if (action !== 'shutdown') {
      throw invalidInput(action === undefined ? 'action is required (the only action is "shutdown")' : `unknown action "${String(action).slice(0, 40)}"; the only action is "shutdown"`);
    }
    const { done } = await executions.shutdown(ctx.params.execId!, tenantOf(ctx));
    if (wantsChunked(ctx)) {
      ctx.status = 202;
      ctx.body = { execution: await done };
      return;
    }
    background('shutdown', done);
    accepted(ctx);
  });

  router.delete('/:execId', async (ctx) => {
    const { done } = await executions.delete(ctx.params.execId!, tenantOf(ctx));
    if (wantsChunked(ctx)) await done;
    else background('delete', done);
    accepted(ctx);
  });

  return router;
}

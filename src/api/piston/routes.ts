/**
 * Piston's REST API (docs/api-v2.md): GET /api/v2/runtimes and POST /api/v2/execute, on the judge engine,
 * also under /api/v2/piston/ as the public emkc.org API had them.
 * Thin handlers: parse, one engine call, Piston's JSON. Errors render as Piston's `{message}` (api/http.ts).
 *
 * Piston refuses a body not labelled application/json (415); this reads JSON whatever the label, as the
 * rest of the service does, because piston-client posts its JSON as text/plain. A browser's body must
 * still be labelled JSON (src/api/origin.ts).
 */
import Router from '@koa/router';
import type { Context } from 'koa';
import type { Config } from '../../config/index.js';
import type { JudgeEngine } from '../../judge/model.js';
import { readJsonBody } from '../http.js';
import { readJob } from './request.js';
import { resultOf } from './response.js';
import { pistonRuntimeOf, runtimesBody, type PistonRuntime } from './runtimes.js';

export interface PistonDeps {
  config: Config;
  judge: JudgeEngine;
}

export async function pistonRuntimes(judge: JudgeEngine): Promise<PistonRuntime[]> {
  return (await judge.languages()).map(pistonRuntimeOf);
}

/** Aborted when the client goes away before its answer: the engine then ends the run and its sandbox. */
function abortOnDisconnect(ctx: Context): AbortController {
  const controller = new AbortController();
  ctx.res.once('close', () => {
    if (!ctx.res.writableFinished) controller.abort();
  });
  return controller;
}

export function pistonRouter(deps: PistonDeps): Router {
  const { config, judge } = deps;
  const router = new Router({ prefix: '/api/v2' });

  // The public API at emkc.org served the same routes under /api/v2/piston/: its users change only the host.
  router.get(['/runtimes', '/piston/runtimes'], async (ctx) => {
    ctx.body = runtimesBody(await pistonRuntimes(judge));
  });

  router.post(['/execute', '/piston/execute'], async (ctx) => {
    const body = await readJsonBody(ctx, config.maxBodyBytes);
    const job = readJob(body, await pistonRuntimes(judge), config);
    const disconnect = abortOnDisconnect(ctx);
    let judged;
    try {
      judged = await judge.judge({ ...job.submission, tests: [{ stdin: job.stdin }], comparison: 'exact' }, disconnect.signal);
    } catch (error) {
      // The client hung up and the engine ended its run: there is nobody to answer, and nothing went wrong.
      if (disconnect.signal.aborted) return;
      throw error;
    }
    ctx.body = resultOf(job.runtime, judged);
  });

  return router;
}

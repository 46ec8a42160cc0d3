/**
 * createApp(deps): the middleware order and the routers of every API surface. It never listens, so
 * tests drive `app.callback()` through a server of their own.
 */
import Koa from 'koa';
import { unavailable } from './errors.js';
import type { Config } from './config/index.js';
import { errorBoundary } from './api/http.js';
import { browserEdge, openOriginWarning } from './api/origin.js';
import { authenticate } from './auth/middleware.js';
import { v1Router } from './api/v1/routes.js';
import { executionsRouter } from './api/executions/routes.js';
import type { ExecutionManager } from './executions/manager.js';
import type { JudgeEngine } from './judge/model.js';
import { cors } from './api/jupyter/cors.js';
import { jupyterRouter } from './api/jupyter/routes.js';
import { pistonRouter } from './api/piston/routes.js';
import { playground } from './api/playground/routes.js';
import { SessionManager } from './sessions/session-manager.js';
import type { KernelManager } from './kernels/kernel-manager.js';
import type { QueryService } from './runs/query-service.js';
import type { Logger } from './logger.js';
import type { Store } from './store/store.js';
import { judge0Router } from './api/judge0/routes.js';
import type { Judge0Runtime } from './api/judge0/runtime.js';

export interface AppDeps {
  config: Config;
  log: Logger;
  kernels: KernelManager;
  queries: QueryService;
  store: Store;
  clock?: () => number;
  /** Notebook executions; /api/executions is mounted only when given. */
  executions?: ExecutionManager;
  /** Open WebSockets of a kernel in this process (src/channels), for the Jupyter kernel model. */
  connectionCount?: (kernelId: string) => number | undefined;
  /** The judge engine (src/judge) the judging APIs (Judge0's, Piston's) call; they are mounted only when given. */
  judge?: JudgeEngine;
  /** Judge0's submission queue and callbacks (src/api/judge0/runtime.ts); Judge0's API needs it with `judge`. */
  judge0?: Judge0Runtime;
  /**
   * Routes this process cannot serve in its role (a gateway has no Docker engine for judging), answered
   * 503 with the message, in each surface's dialect, instead of 404.
   */
  unavailableRoutes?: Array<{ prefixes: string[]; message: string }>;
}

export function createApp(deps: AppDeps): Koa {
  const app = new Koa();
  const openOrigin = openOriginWarning(deps.config);
  if (openOrigin) deps.log.warn(openOrigin);
  // Errors are rendered by errorBoundary; koa's default handler would log them a second time.
  app.silent = true;
  app.use(errorBoundary(deps.log));
  // CORS headers on every response, errors included; preflights answered before auth (they carry no token).
  app.use(cors(deps.config));
  // Web pages elsewhere (CSRF) and DNS rebinding are refused before anything else is looked at.
  // The playground page may be opened from a link elsewhere (a top-level navigation); nothing else may.
  app.use(browserEdge(deps.config, deps.config.playground ? ['/'] : []));
  // The playground page loads without a token: it asks for one and sends it with every API call.
  if (deps.config.playground) app.use(playground());
  app.use(authenticate(deps));
  const refused = deps.unavailableRoutes ?? [];
  if (refused.length > 0) {
    app.use((ctx, next) => {
      const hit = refused.find((r) => r.prefixes.some((prefix) => ctx.path === prefix || ctx.path.startsWith(`${prefix}/`)));
      if (hit) throw unavailable(hit.message);
      return next();
    });
  }
  const v1 = v1Router(deps);
  app.use(v1.routes());
  app.use(v1.allowedMethods());
  const jupyter = jupyterRouter({ ...deps, sessions: new SessionManager(deps.store, deps.kernels) });
  app.use(jupyter.routes());
  app.use(jupyter.allowedMethods());
  if (deps.executions) {
    const executions = executionsRouter({ ...deps, executions: deps.executions });
    app.use(executions.routes());
    app.use(executions.allowedMethods());
  }
  if (deps.judge && deps.judge0) {
    const judge0 = judge0Router({ config: deps.config, judge: deps.judge, judge0: deps.judge0 });
    app.use(judge0.routes());
    app.use(judge0.allowedMethods());
  }
  if (deps.judge) {
    const piston = pistonRouter({ config: deps.config, judge: deps.judge });
    app.use(piston.routes());
    app.use(piston.allowedMethods());
  }
  return app;
}

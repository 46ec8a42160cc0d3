/**
 * createApp(deps): the middleware order and the routers of every API surface. It never listens, so
 * tests drive `app.callback()` through a server of their own.
 */
import Koa from 'koa';
import type { Config } from './config/index.js';
import { errorBoundary, requireToken } from './api/http.js';
import { v1Router } from './api/v1/routes.js';
import type { KernelManager } from './kernels/kernel-manager.js';
import type { QueryService } from './kernels/query-service.js';
import type { Logger } from './logger.js';
import type { Store } from './store/store.js';
import type { ContainerRuntime } from './runtime/runtime.js';

export interface AppDeps {
  config: Config;
  log: Logger;
  kernels: KernelManager;
  queries: QueryService;
  store: Store;
  runtime: ContainerRuntime;
  clock?: () => number;
}

export function createApp(deps: AppDeps): Koa {
  const app = new Koa();
  // Errors are rendered by errorBoundary; koa's default handler would log them a second time.
  app.silent = true;
  app.use(errorBoundary(deps.log));
  app.use(requireToken(deps.config.authToken));
  const v1 = v1Router(deps);
  app.use(v1.routes());
  app.use(v1.allowedMethods());
  return app;
}

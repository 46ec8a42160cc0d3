/**
 * The HTTP edge of authentication: resolves the caller of every request (admin token, API key, or the
 * open mode), puts its Tenant on ctx.state.tenant for the API layers, and answers 401 / 429 itself.
 * Tokens are read in the Jupyter forms: `Authorization: token <t>` / `Bearer <t>`, or `?token=<t>`.
 * CORS preflights carry no credentials by design and pass (they reach no handler).
 */
import type { Context, Middleware, Next } from 'koa';
import type { Config } from '../config/index.js';
import type { KernelManager } from '../kernels/kernel-manager.js';
import type { Logger } from '../logger.js';
import { presentedToken, sendError } from '../api/http.js';
import { rateHeaders, Tenancy } from './tenancy.js';

export interface AuthDeps {
  config: Config;
  kernels: KernelManager;
  log: Logger;
}

export function authenticate(deps: AuthDeps): Middleware {
  const tenancy = Tenancy.of(deps.config, deps.kernels, deps.log);
  return async (ctx: Context, next: Next) => {
    if (ctx.method === 'OPTIONS') return next();
    const resolution = tenancy.resolve(presentedToken(ctx.headers, ctx.URL));
    if (!resolution.ok) {
      if (resolution.status === 429) ctx.set(rateHeaders(resolution.rate));
      sendError(ctx, resolution.status, resolution.message, resolution.status === 401 ? 'unauthorized' : 'rate_limited');
      return;
    }
    if (resolution.rate) ctx.set(rateHeaders(resolution.rate));
    ctx.state.tenant = tenancy.tenant(resolution.caller);
    return next();
  };
}

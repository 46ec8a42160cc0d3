/**
 * The HTTP edge of authentication: resolves the caller of every request (admin token, API key, or the
 * open mode) with `Tenancy.authenticate`, as the channels WebSocket handshake does, and puts its Tenant
 * on ctx.state.tenant for the API layers. CORS preflights carry no credentials by design and pass (they
 * reach no handler).
 */
import type { Context, Middleware, Next } from 'koa';
import type { Config } from '../config/index.js';
import type { KernelManager } from '../kernels/kernel-manager.js';
import type { Logger } from '../logger.js';
import { Tenancy } from './tenancy.js';

export interface AuthDeps {
  config: Config;
  kernels: KernelManager;
  log: Logger;
}

export function authenticate(deps: AuthDeps): Middleware {
  const tenancy = Tenancy.of(deps.config, deps.kernels, deps.log);
  return async (ctx: Context, next: Next) => {
    if (ctx.method === 'OPTIONS') return next();
    const authentication = tenancy.authenticate(ctx.headers, ctx.URL);
    ctx.set(authentication.headers);
    // The error boundary answers a refusal (401 / 429) in the surface's dialect, these headers kept.
    if (!authentication.ok) throw authentication.error;
    ctx.state.tenant = authentication.tenant;
    return next();
  };
}

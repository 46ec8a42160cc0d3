/**
 * CORS with Kernel Gateway's settings (KG_ALLOW_ORIGIN, KG_ALLOW_HEADERS, KG_ALLOW_METHODS,
 * KG_ALLOW_CREDENTIALS, KG_EXPOSE_HEADERS, KG_MAX_AGE): each one that is set becomes its header on every
 * response of every API surface, errors included, and a preflight (OPTIONS) is answered here, before
 * token auth, since browsers send no credentials with it. Nothing set: no headers, no preflight answers.
 */
import type { Middleware } from 'koa';
import type { Config } from '../../config/index.js';

type CorsConfig = Pick<Config, 'allowOrigin' | 'allowHeaders' | 'allowMethods' | 'allowCredentials' | 'exposeHeaders' | 'maxAge'>;

export function cors(config: CorsConfig): Middleware {
  const headers = (
    [
      ['Access-Control-Allow-Origin', config.allowOrigin],
      ['Access-Control-Allow-Headers', config.allowHeaders],
      ['Access-Control-Allow-Methods', config.allowMethods],
      ['Access-Control-Allow-Credentials', config.allowCredentials],
      ['Access-Control-Expose-Headers', config.exposeHeaders],
      ['Access-Control-Max-Age', config.maxAge],
    ] as const
  ).filter(([, value]) => value !== '');
  if (headers.length === 0) return (_ctx, next) => next();
  return async (ctx, next) => {
    for (const [name, value] of headers) ctx.set(name, value);
    if (ctx.method === 'OPTIONS') {
      ctx.status = 204;
      return;
    }
    await next();
  };
}

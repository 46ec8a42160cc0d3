/**
 * The playground page (src/playground, bundled by scripts/build-playground.mjs into dist/playground):
 * `GET /` and its assets under /playground/, served before authentication. The page holds no data: every
 * call it makes (the Jupyter REST API, the channels WebSocket) carries the token the user enters and is
 * checked there.
 *
 * Its Content-Security-Policy keeps it to this origin: scripts, styles, images and connections only from
 * 'self' (which covers ws:/wss: of the same host), images also as data:/blob: (kernel PNGs). Kernel HTML is
 * shown in sandboxed frames without scripts (see src/playground/output.ts); a srcdoc frame inherits this
 * policy, so such HTML cannot load anything from elsewhere either.
 */
import { readFile } from 'node:fs/promises';
import type { Middleware } from 'koa';
import { unavailable } from '../../errors.js';

/** dist/playground, beside dist/src where this module is compiled to. */
const BUNDLE_DIR = new URL('../../../playground/', import.meta.url);

/** The bundle's file names: the page script, its chunks and the stylesheet. No slash, no leading dot. */
const ASSET_PATH = /^\/playground\/([A-Za-z0-9_-][A-Za-z0-9_.-]{0,100}\.(js|css))$/;
const TYPES: Record<string, string> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };
const PAGE_TYPE = 'text/html; charset=utf-8';

export const PLAYGROUND_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  // CodeMirror sets style attributes and style elements for its themes.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "font-src 'self'",
  "connect-src 'self'",
  "frame-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Most distinct files kept in memory: the bundle has a dozen; names past this are not cached. */
const MAX_CACHED = 64;

export function playground(dir: URL = BUNDLE_DIR): Middleware {
  // Read on first use and kept: the bundle is a build output that does not change while the service runs.
  // Only files that exist are kept, so requests for made-up names cannot grow the cache.
  const cache = new Map<string, Buffer>();
  const load = async (file: string): Promise<Buffer | undefined> => {
    const cached = cache.get(file);
    if (cached) return cached;
    try {
      const content = await readFile(new URL(file, dir));
      if (cache.size < MAX_CACHED) cache.set(file, content);
      return content;
    } catch {
      return undefined;
    }
  };
  return async (ctx, next) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    let file: string;
    let type: string;
    if (ctx.path === '/') {
      file = 'index.html';
      type = PAGE_TYPE;
    } else {
      const match = ASSET_PATH.exec(ctx.path);
      if (!match) return next();
      file = match[1]!;
      type = TYPES[match[2]!]!;
    }
    const body = await load(file);
    if (!body) {
      if (file !== 'index.html') return next();
      throw unavailable('the playground is not built: `npm run build` bundles it into dist/playground (or set POLYKERNEL_PLAYGROUND=false)');
    }
    ctx.type = type;
    // Chunks are named by their content's hash: a new build names them anew, so they may be kept for good.
    ctx.set('Cache-Control', file.startsWith('chunk-') ? 'public, max-age=31536000, immutable' : 'no-cache');
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    if (type === PAGE_TYPE) {
      ctx.set('Content-Security-Policy', PLAYGROUND_CSP);
      ctx.set('X-Frame-Options', 'DENY');
    }
    ctx.body = body;
  };
}

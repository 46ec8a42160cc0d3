/**
 * The browser edge: what keeps a web page the user happens to visit from driving this service, which by
 * default listens on 127.0.0.1 with no token. As jupyter_server does (JupyterHandler.check_host,
 * check_origin; its WebSocket handler's check_origin):
 *
 * - Host (DNS rebinding): while the service listens on a loopback address, a request whose Host header is
 *   not a local name is refused. A page on attacker.example whose name was re-pointed at 127.0.0.1 sends
 *   "same-origin" requests with `Host: attacker.example`; curl, Jupyter's clients and server-side callers
 *   of a loopback service send `localhost` or a loopback address. Local = a loopback IP (127/8, ::1) or a
 *   name in POLYKERNEL_LOCAL_HOSTNAMES (jupyter's local_hostnames, default `localhost`).
 *   POLYKERNEL_ALLOW_REMOTE_ACCESS (jupyter's allow_remote_access) turns the check off; by default it is
 *   off exactly when the service listens on a non-loopback address.
 * - Origin (CSRF): a request that carries Origin is let through only when the Origin is this service
 *   itself (its host equals the Host header) or KG_ALLOW_ORIGIN ("*" = any), which is also the value of
 *   the CORS header a browser needs to read an answer. Requests without Origin pass: browsers send it on
 *   every cross-origin request but the no-cors subresource GET, which Sec-Fetch-Site then marks
 *   `cross-site` / `same-site`, and that is refused too.
 *   One exception: a top-level navigation to one of the service's own pages (the playground), which a
 *   link on another site opens; see isPageNavigation.
 *   Unlike jupyter_server, a token does not waive the Origin check: a cross-origin browser client needs
 *   KG_ALLOW_ORIGIN for CORS anyway, and the check stays independent of how a request authenticates.
 * - Content-Type (see `refusesNonJsonBody`): a browser request's JSON body must be labelled
 *   application/json. That label forces a CORS preflight, so even KG_ALLOW_ORIGIN=* cannot be used by a
 *   page to post a "simple request" (text/plain, form, multipart) that the browser sends unasked. Clients
 *   that are not browsers (no Origin, no Sec-Fetch-Site) keep `curl -d '{...}'`, whose JSON is labelled
 *   as a form.
 *
 * Refusals are 403s that say which option would allow the request. CORS preflights (OPTIONS) are not
 * origin-checked: they are how a browser asks, and the CORS headers (src/api/jupyter/cors.ts) answer.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
import type { Middleware } from 'koa';
import type { Config } from '../config/index.js';
import { forbidden } from '../errors.js';

export type EdgeConfig = Pick<Config, 'ip' | 'allowOrigin' | 'allowRemoteAccess' | 'localHostnames'>;

/** Whether `address` (an IP literal or a host name) is a loopback address. */
export function isLoopback(address: string): boolean {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  const lower = bare.toLowerCase();
  if (lower === 'localhost' || lower.endsWith('.localhost')) return true;
  switch (isIP(lower)) {
    case 4:
      return lower.split('.')[0] === '127';
    case 6:
      return lower === '::1' || /^(0{0,4}:){7}0{0,3}1$/.test(lower) || lower.startsWith('::ffff:127.');
    default:
      return false;
  }
}

/**
 * Whether the Host check is off. `auto` (the default) follows jupyter_server: on when the service listens
 * on a loopback address only. A host name other than localhost for KG_IP counts as remote (jupyter
 * resolves it; set POLYKERNEL_ALLOW_REMOTE_ACCESS=false when such a name is loopback-only).
 */
export function remoteAccessAllowed(config: Pick<Config, 'ip' | 'allowRemoteAccess'>): boolean {
  if (config.allowRemoteAccess !== 'auto') return config.allowRemoteAccess;
  return !isLoopback(config.ip);
}

/** The host part of a Host header: port and IPv6 brackets removed, lower case. */
export function hostName(hostHeader: string): string {
  const host = hostHeader.trim().toLowerCase();
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end > 0 ? host.slice(1, end) : host;
  }
  const colon = host.indexOf(':');
  // More than one colon without brackets: a bare IPv6 address (no port possible).
  if (colon >= 0 && host.indexOf(':', colon + 1) < 0) return host.slice(0, colon);
  return host;
}

const clip = (value: string) => JSON.stringify(value.slice(0, 200));

/** Builds the check of a request's headers: a message saying why it is refused, or undefined. */
export function edgeCheck(config: EdgeConfig): (headers: IncomingHttpHeaders, method?: string, pageNavigation?: boolean) => string | undefined {
  const checkHost = !remoteAccessAllowed(config);
  const localNames = new Set(config.localHostnames.map((name) => name.toLowerCase()));
  const allowOrigin = config.allowOrigin.trim().replace(/\/$/, '').toLowerCase();

  return (headers, method, pageNavigation = false) => {
    const host = typeof headers.host === 'string' ? headers.host : undefined;
    if (checkHost && host !== undefined) {
      const name = hostName(host);
      const local = isIP(name) ? isLoopback(name) : localNames.has(name);
      if (!local) {
        return (
          `request refused: Host ${clip(host)} is not a local name of this service, which listens on a loopback address ` +
          '(a page re-pointing its own host name at 127.0.0.1, DNS rebinding, sends such requests); if the service should ' +
          'answer under that name, add it to POLYKERNEL_LOCAL_HOSTNAMES or set POLYKERNEL_ALLOW_REMOTE_ACCESS=true'
        );
      }
    }
    if (method === 'OPTIONS' || allowOrigin === '*' || pageNavigation) return undefined;
    const origin = typeof headers.origin === 'string' ? headers.origin : undefined;
    if (origin === undefined) {
      const site = headers['sec-fetch-site'];
      if (site === 'cross-site' || site === 'same-site') {
        return `request refused: a web page of another site (Sec-Fetch-Site: ${site}) may not use this service; set KG_ALLOW_ORIGIN to the page's origin to allow it`;
      }
      return undefined;
    }
    const normalised = origin.trim().replace(/\/$/, '').toLowerCase();
    if (allowOrigin !== '' && normalised === allowOrigin) return undefined;
    if (host !== undefined && sameOrigin(normalised, host)) return undefined;
    return (
      `cross-origin request refused: Origin ${clip(origin)} is neither this service (Host ${clip(host ?? '')}) nor KG_ALLOW_ORIGIN; ` +
      `to let a web page at that origin use the service, set KG_ALLOW_ORIGIN=${origin.slice(0, 200)} (or * for any origin)`
    );
  };
}

function sameOrigin(origin: string, host: string): boolean {
  try {
    const url = new URL(origin);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.host === new URL(`http://${host.trim().toLowerCase()}`).host;
  } catch {
    // "null" (sandboxed frames, file: pages, redirects) and anything unparsable is no origin of ours.
    return false;
  }
}

/**
 * A browser opening one of the service's own web pages (`pages`: the playground at /) as a document:
 * a top-level GET navigation (Sec-Fetch-Mode: navigate, Sec-Fetch-Dest: document), e.g. a link on another
 * site. It reads nothing and changes nothing (the page is static; what it does next is same-origin and
 * checked as usual), so the Origin check does not refuse it; the Host check still does (DNS rebinding).
 * Such a page must not be framed (its CSP says frame-ancestors 'none').
 */
function isPageNavigation(pages: ReadonlySet<string>, path: string, method: string, headers: IncomingHttpHeaders): boolean {
  return (
    pages.has(path) &&
    (method === 'GET' || method === 'HEAD') &&
    headers['sec-fetch-mode'] === 'navigate' &&
    headers['sec-fetch-dest'] === 'document'
  );
}

/** Koa middleware: the Host and Origin checks on every request, before auth. `pages`: see isPageNavigation. */
export function browserEdge(config: EdgeConfig, pages: readonly string[] = []): Middleware {
  const check = edgeCheck(config);
  const navigable = new Set(pages);
  return async (ctx, next) => {
    const refusal = check(ctx.headers, ctx.method, isPageNavigation(navigable, ctx.path, ctx.method, ctx.headers));
    if (refusal) throw forbidden(refusal);
    await next();
  };
}

/** A request made by a browser: it names its origin or its fetch site (other clients send neither). */
function fromBrowser(headers: IncomingHttpHeaders): boolean {
  return headers.origin !== undefined || headers['sec-fetch-site'] !== undefined;
}

/** application/json and the +json types (application/problem+json, …). */
export function isJsonType(contentType: string | undefined): boolean {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  return type === 'application/json' || /^application\/[\w.+-]+\+json$/.test(type);
}

/**
 * Why a JSON body must not be read, or undefined: a browser request whose body is not labelled as JSON.
 * Such a body is what a cross-site form or text/plain fetch sends without any preflight.
 */
export function refusesNonJsonBody(headers: IncomingHttpHeaders): string | undefined {
  if (!fromBrowser(headers) || isJsonType(headers['content-type'])) return undefined;
  return `a request from a web page must send its JSON body with Content-Type: application/json, not ${JSON.stringify(String(headers['content-type'] ?? 'none').slice(0, 100))}`;
}

/**
 * The warning a start logs when any web page may drive an open service: KG_ALLOW_ORIGIN=* with neither
 * KG_AUTH_TOKEN nor API keys lets every page a user of the service visits upload files to and run code in
 * its kernels (the Origin check is then the only thing between a page and the API, and * lets every page
 * through). As jupyter_server, which warns at start that "all authentication is disabled" rather than
 * refusing, it is a warning, not a refusal: a trusted network may mean it. Undefined when nothing is wrong.
 */
export function openOriginWarning(config: Pick<Config, 'allowOrigin' | 'authToken' | 'apiKeysFile'>): string | undefined {
  if (config.allowOrigin.trim() !== '*' || config.authToken !== '' || config.apiKeysFile !== '') return undefined;
  return 'KG_ALLOW_ORIGIN=* with no KG_AUTH_TOKEN and no POLYKERNEL_API_KEYS_FILE: any web page a user of this service visits can upload files to and run code in its kernels. Set KG_AUTH_TOKEN (or API keys), or name the one origin that may use the service in KG_ALLOW_ORIGIN';
}

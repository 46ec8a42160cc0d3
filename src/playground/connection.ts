/**
 * The page's link to the service it was served by: @jupyterlab/services settings for this origin, and the
 * token. A service started with KG_AUTH_TOKEN answers 401 without one; the page then asks for it once and
 * keeps it in sessionStorage (this tab only, gone when it closes). It is sent as Jupyter's clients send it:
 * `Authorization: token …` on REST calls and `?token=…` on the channels WebSocket (appendToken: browsers
 * cannot set headers on a WebSocket, and the service has no login cookie).
 */
import { KernelSpecAPI, ServerConnection } from '@jupyterlab/services';

const TOKEN_KEY = 'polykernel.token';

export function storedToken(): string {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? '';
  } catch {
    return '';
  }
}

export function storeToken(token: string): void {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage refused (a privacy mode): the token then lasts as long as the page.
  }
}

export function settingsFor(token: string): ServerConnection.ISettings {
  const base = new URL('/', location.href);
  const ws = new URL(base.href);
  ws.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
  return ServerConnection.makeSettings({
    baseUrl: base.href,
    wsUrl: ws.href,
    token,
    appendToken: token !== '',
    // The library labels its JSON bodies only when it sends a token; the service refuses a browser's
    // unlabelled (text/plain) body, which is what a cross-site form could send (src/api/origin.ts).
    init: { cache: 'no-store', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' } },
  });
}

export type Probe =
  | { ok: true; specs: KernelSpecAPI.ISpecModels; settings: ServerConnection.ISettings }
  | { ok: false; needsToken: true; message: string }
  | { ok: false; needsToken: false; message: string };

/** Lists the kernelspecs with `token`: the first call of the page, and how it learns a token is needed. */
export async function probe(token: string): Promise<Probe> {
  const settings = settingsFor(token);
  try {
    const specs = await KernelSpecAPI.getSpecs(settings);
    return { ok: true, specs, settings };
  } catch (error) {
    if (error instanceof ServerConnection.ResponseError && error.response.status === 401) {
      return { ok: false, needsToken: true, message: token ? 'That token was refused; enter the service token.' : 'This service needs a token.' };
    }
    return { ok: false, needsToken: false, message: `The service could not list its languages: ${(error as Error).message}` };
  }
}

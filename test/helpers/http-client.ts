/**
 * The HTTP clients of the tests, JSON in and out. `jsonCall` is fetch, what most users' clients are: the
 * integration tests speak to the service through it. `HttpClient` is node:http over one keep-alive pool
 * with Nagle off, as a judge's or REPL's backend talks: the benchmark and the load test measure through it,
 * so the cost of the client is as small as it gets.
 */
import http from 'node:http';

export interface Answer {
  status: number;
  body: any;
}

/** One call of a JSON API: the shape every client here has, and the v1 and Jupyter helpers take. */
export type Call = (method: string, route: string, body?: unknown, headers?: Record<string, string>) => Promise<Answer>;

/**
 * A fetch-based JSON client of the service at `baseUrl`, sending `defaultHeaders` (an API key, say) with
 * every call. A string body goes as it is (malformed JSON included); a body that is not JSON comes back as
 * its raw text, so a test can say what it got.
 */
export function jsonCall(baseUrl: string, defaultHeaders: Record<string, string> = {}) {
  return async (method: string, route: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer & { headers: Headers }> => {
    const response = await fetch(baseUrl + route, {
      method,
      headers: { 'content-type': 'application/json', ...defaultHeaders, ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // Not JSON: the test sees the raw text (and will say so when it expected JSON).
    }
    return { status: response.status, body: parsed, headers: response.headers };
  };
}

/** One keep-alive connection pool per service: a request costs no TCP handshake. */
export class HttpClient {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

  /** `defaultHeaders` go with every call (the service's admin token, say); a call's own headers win. */
  constructor(readonly url: string, private readonly defaultHeaders: Record<string, string> = {}) {}

  call(method: string, route: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return this.send(method, route, payload, headers, true);
  }

  /**
   * A request on a pooled connection that the server closed as idle (its keepAliveTimeout) just as this
   * one went out fails with ECONNRESET before any answer; the server never read it, so it is sent again
   * once, on a fresh connection, as Node's documentation of `request.reusedSocket` advises.
   */
  private send(method: string, route: string, payload: Buffer | undefined, headers: Record<string, string>, mayRetry: boolean): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        this.url + route,
        {
          method,
          agent: this.agent,
          headers: {
            ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
            ...this.defaultHeaders,
            ...headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString();
            try {
              resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
            } catch {
              reject(new Error(`${method} ${route} answered ${res.statusCode} with a body that is not JSON: ${text.slice(0, 200)}`));
            }
          });
          res.on('error', reject);
        },
      );
      req.setNoDelay(true);
      req.on('error', (error: NodeJS.ErrnoException) => {
        if (mayRetry && req.reusedSocket && error.code === 'ECONNRESET') resolve(this.send(method, route, payload, headers, false));
        else reject(error);
      });
      req.end(payload);
    });
  }

  /** A call that must succeed (2xx): its JSON body. */
  async ok(method: string, route: string, body?: unknown): Promise<any> {
    const { status, body: answer } = await this.call(method, route, body);
    if (status < 200 || status >= 300) throw new Error(`${method} ${route} answered ${status}: ${JSON.stringify(answer)}`);
    return answer;
  }

  close(): void {
    this.agent.destroy();
  }
}

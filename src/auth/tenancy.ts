/**
 * One service's authentication state: the admin token, the API keys, their rate-limit counters and
 * kernel quotas, and `authenticate`, the one check of a request's credentials. HTTP requests (the auth
 * middleware) and the channels WebSocket handshake (channel bridge, which never reaches koa) both call it
 * through `Tenancy.of(config, …)`: one instance per service configuration, so the two share keys and
 * counters.
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Config } from '../config/index.js';
import { rateLimited, unauthorized, type DomainError } from '../errors.js';
import type { KernelManager } from '../kernels/kernel-manager.js';
import type { Logger } from '../logger.js';
import { KeyRegistry, type KeyPolicy } from './api-keys.js';
import { KernelQuota } from './quota.js';
import { FixedWindowLimiter, type RateDecision } from './rate-limit.js';
import { Tenant, type Caller } from './tenant.js';

export type TenancyConfig = Pick<
  Config,
  'authToken' | 'apiKeysFile' | 'apiKeysReloadMs' | 'keyMaxKernels' | 'keyMaxMemKB' | 'keyMaxCpuCreditMs' | 'rateLimit' | 'rateLimitWindowS'
>;
type TenancyKernels = Pick<KernelManager, 'get' | 'create' | 'list' | 'resolveLimits' | 'removedKernel' | 'handle'>;

/** A request's caller, or why it is refused; `headers` (the rate limit's) go on the answer either way. */
export type Authentication =
  | { ok: true; tenant: Tenant; headers: Record<string, string> }
  | { ok: false; error: DomainError; headers: Record<string, string> };

const instances = new WeakMap<object, Tenancy>();

export class Tenancy {
  private readonly keys?: KeyRegistry;
  private readonly limiter: FixedWindowLimiter;
  private readonly quota: KernelQuota;

  static of(config: TenancyConfig, kernels: TenancyKernels, log: Logger): Tenancy {
    let tenancy = instances.get(config);
    if (!tenancy) {
      tenancy = new Tenancy(config, kernels, log);
      instances.set(config, tenancy);
    }
    return tenancy;
  }

  private constructor(
    private readonly config: TenancyConfig,
    private readonly kernels: TenancyKernels,
    log: Logger,
  ) {
    this.limiter = new FixedWindowLimiter(config.rateLimitWindowS * 1000);
    this.quota = new KernelQuota(kernels);
    if (config.apiKeysFile) {
      const defaults: KeyPolicy = {
        maxKernels: config.keyMaxKernels,
        maxMemKB: config.keyMaxMemKB,
        maxCpuCreditMs: config.keyMaxCpuCreditMs,
        rateLimit: config.rateLimit,
      };
      this.keys = new KeyRegistry({ file: config.apiKeysFile, reloadMs: config.apiKeysReloadMs, defaults, log });
      this.keys.onRevoked = (ids) => this.limiter.forget(ids);
    }
  }

  /** No admin token and no keys: the open single-user mode, as before keys existed. */
  private get open(): boolean {
    return !this.config.authToken && !this.keys;
  }

  /**
   * Who sends this request, from the token it presents (`Authorization: token <t>` / `Bearer <t>`, or
   * `?token=<t>`, the Jupyter forms; Basic, or Judge0's `X-Auth-Token`, see presentedToken). An unknown
   * token is refused before any per-key state exists; a valid
   * key's request is counted against its rate limit (the admin is not limited, as Backend.AI's admin API).
   */
  authenticate(headers: IncomingHttpHeaders, url: URL): Authentication {
    if (this.open) return { ok: true, tenant: this.tenant({ kind: 'open' }), headers: {} };
    const token = presentedToken(headers, url);
    if (token !== undefined && this.config.authToken && sameSecret(this.config.authToken, token)) {
      return { ok: true, tenant: this.tenant({ kind: 'admin' }), headers: {} };
    }
    const key = token === undefined ? undefined : this.keys?.lookup(token);
    if (!key) {
      const how = this.keys ? 'an API key' : 'the KG_AUTH_TOKEN';
      return { ok: false, error: unauthorized(`authentication required: send "Authorization: token <${how}>" (or Bearer, ?token=, Basic with it as the password, or Judge0's X-Auth-Token header)`), headers: {} };
    }
    const rate = this.limiter.hit(key.id, key.policy.rateLimit);
    if (!rate.allowed) return { ok: false, error: rateLimitReached(key.id, rate), headers: rateHeaders(rate) };
    return { ok: true, tenant: this.tenant({ kind: 'tenant', key }), headers: rateHeaders(rate) };
  }

  /**
   * Counts one more request of a caller authenticated earlier: a run started on a WebSocket it opened
   * (v1 streaming), which is one execute call as much as an HTTP one. The refusal when past the limit.
   */
  countRequest(caller: Caller): DomainError | undefined {
    if (caller.kind !== 'tenant') return undefined;
    const rate = this.limiter.hit(caller.key.id, caller.key.policy.rateLimit);
    return rate.allowed ? undefined : rateLimitReached(caller.key.id, rate);
  }

  /** Whether a caller resolved earlier is still valid (its key not revoked since). */
  stillValid(caller: Caller): boolean {
    return caller.kind !== 'tenant' || (this.keys?.isValid(caller.key) ?? false);
  }

  private tenant(caller: Caller): Tenant {
    return new Tenant(caller, this.kernels, this.quota);
  }
}

/**
 * The token a request presents: `Authorization: token <t>` / `Bearer <t>`, `?token=<t>`, HTTP Basic
 * with the token as the password, or Judge0's authentication header `X-Auth-Token: <t>` (also as
 * `?X-Auth-Token=<t>`, as Judge0 takes it). Basic is how a client that takes only a server URL
 * authenticates (piston-client, `http://user:<token>@host:port`); the user name is not looked at. With
 * X-Auth-Token Judge0's clients authenticate unchanged with an API key or the admin token.
 */
export function presentedToken(headers: IncomingHttpHeaders, url: URL): string | undefined {
  const header = headers.authorization;
  if (typeof header === 'string') {
    const match = /^(?:token|bearer)\s+(.+)$/i.exec(header.trim());
    if (match) return match[1];
    const basic = /^basic\s+([A-Za-z0-9+/]+={0,2})$/i.exec(header.trim());
    if (basic) {
      const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon >= 0 && colon < decoded.length - 1) return decoded.slice(colon + 1);
    }
  }
  const judge0 = headers[JUDGE0_AUTHN_HEADER];
  if (typeof judge0 === 'string' && judge0.trim() !== '') return judge0.trim();
  return url.searchParams.get('token') ?? url.searchParams.get('X-Auth-Token') ?? undefined;
}

/** Judge0's default AUTHN_HEADER (lower case, as Node names headers). */
const JUDGE0_AUTHN_HEADER = 'x-auth-token';

function rateLimitReached(keyId: string, rate: RateDecision): DomainError {
  return rateLimited(`rate limit of key "${keyId}" reached (${rate.limit} requests per ${rate.windowS} s); retry in ${rate.resetS} s`);
}

/** Headers of a rate decision, as Backend.AI sends them (Reset and Window in seconds). */
function rateHeaders(rate: RateDecision): Record<string, string> {
  const headers: Record<string, string> = {
    'X-RateLimit-Limit': String(rate.limit),
    'X-RateLimit-Remaining': String(rate.remaining),
    'X-RateLimit-Reset': String(rate.resetS),
    'X-RateLimit-Window': String(rate.windowS),
  };
  if (!rate.allowed) headers['Retry-After'] = String(rate.resetS);
  return headers;
}

function sameSecret(expected: string, presented: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}

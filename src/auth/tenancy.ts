/**
 * One service's authentication state: the admin token, the API keys, their rate-limit counters and
 * kernel quotas. Resolving a caller is the same for HTTP requests (auth middleware) and the channels
 * WebSocket handshake (channel bridge), which both get it through `Tenancy.of(config, …)`: one instance
 * per service configuration, so the two share keys and counters.
 */
import { timingSafeEqual } from 'node:crypto';
import type { Config } from '../config/index.js';
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
type TenancyKernels = Pick<KernelManager, 'get' | 'create' | 'list' | 'resolveLimits' | 'removedKernel' | 'liveKernel'>;

export type Resolution =
  | { ok: true; caller: Caller; rate?: RateDecision }
  | { ok: false; status: 401; message: string }
  | { ok: false; status: 429; message: string; rate: RateDecision };

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
  get open(): boolean {
    return !this.config.authToken && !this.keys;
  }

  /**
   * Who presents `token`. An unknown token is refused before any per-key state exists; a valid key's
   * request is counted against its rate limit (the admin is not limited, as Backend.AI's admin API).
   */
  resolve(token: string | undefined): Resolution {
    if (this.open) return { ok: true, caller: { kind: 'open' } };
    if (token !== undefined && this.config.authToken && sameSecret(this.config.authToken, token)) {
      return { ok: true, caller: { kind: 'admin' } };
    }
    const key = token === undefined ? undefined : this.keys?.lookup(token);
    if (!key) {
      const how = this.keys ? 'an API key' : 'the KG_AUTH_TOKEN';
      return { ok: false, status: 401, message: `authentication required: send "Authorization: token <${how}>" (or Bearer, or ?token=)` };
    }
    const rate = this.limiter.hit(key.id, key.policy.rateLimit);
    if (!rate.allowed) {
      return { ok: false, status: 429, rate, message: `rate limit of key "${key.id}" reached (${rate.limit} requests per ${rate.windowS} s); retry in ${rate.resetS} s` };
    }
    return { ok: true, caller: { kind: 'tenant', key }, rate };
  }

  /** Whether a caller resolved earlier is still valid (its key not revoked since). */
  stillValid(caller: Caller): boolean {
    return caller.kind !== 'tenant' || (this.keys?.isValid(caller.key) ?? false);
  }

  tenant(caller: Caller): Tenant {
    return new Tenant(caller, this.kernels, this.quota);
  }
}

/** Headers of a rate decision, as Backend.AI sends them (Reset and Window in seconds). */
export function rateHeaders(rate: RateDecision): Record<string, string> {
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

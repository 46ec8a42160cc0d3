/**
 * Callbacks (Judge0's callback_url): a PUT of a JSON body to a client's URL when its submission finishes.
 *
 * The service is a judge that strangers give URLs to, so a callback must not become a way into the
 * network it stands in (SSRF):
 * - only http and https; redirects are never followed (a 3xx is a failed try);
 * - where it may go is configured (POLYKERNEL_JUDGE0_CALLBACK_HOSTS): empty = public addresses only (no
 *   loopback, private, link-local, CGNAT, multicast, documentation or metadata address), else only the
 *   listed host names, addresses and CIDR ranges (`*` = anywhere, for a judge on a private network);
 * - the name is resolved once per try, every address it resolves to is checked, and the connection is made
 *   to the checked address (no second lookup that DNS rebinding could answer differently).
 * Each try has a timeout; a network error, a timeout or a non-2xx answer is retried with a doubling
 * backoff, a bounded number of times. At most MAX_IN_FLIGHT callbacks run at once and MAX_PENDING wait
 * (MAX_PENDING_BYTES of bodies); past that a callback is dropped (and logged) rather than held in memory
 * without bound.
 */
import { lookup } from 'node:dns/promises';
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import type { Config } from '../config/index.js';
import type { Logger } from '../logger.js';

export type CallbackConfig = Pick<Config, 'judge0CallbackHosts' | 'judge0CallbackMaxTries' | 'judge0CallbackTimeoutMs' | 'judge0CallbackBackoffMs'>;

const MAX_IN_FLIGHT = 32;
const MAX_PENDING = 1000;
/** Bodies waiting for a slot, in all: a result can be megabytes, so the count alone does not bound them. */
const MAX_PENDING_BYTES = 64 * 1024 * 1024;
export const MAX_CALLBACK_URL_LENGTH = 2048;

/** Addresses a callback may not reach unless an operator lists them. */
const NOT_PUBLIC = (() => {
  const list = new BlockList();
  for (const [net, prefix] of [
    ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
    ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24],
    ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
  ] as const) list.addSubnet(net, prefix, 'ipv4');
  for (const [net, prefix] of [
    // IPv4-mapped addresses (::ffff:0:0/96) are checked as the IPv4 address they map (see unmapped):
    // as a rule here BlockList would match every IPv4 address.
    ['::', 128], ['::1', 128], ['64:ff9b::', 96], ['64:ff9b:1::', 48], ['100::', 64], ['2001::', 23],
    ['2001:db8::', 32], ['2002::', 16], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8],
  ] as const) list.addSubnet(net, prefix, 'ipv6');
  return list;
})();

const familyOf = (address: string): 'ipv4' | 'ipv6' => (isIP(address) === 6 ? 'ipv6' : 'ipv4');

/** The IPv4 address inside an IPv4-mapped IPv6 one (::ffff:a.b.c.d), which reaches the IPv4 host. */
function unmapped(address: string): string {
  const dotted = /^(?:0{0,4}:){0,5}:?ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (dotted) return dotted[1]!;
  const hex = /^(?:0{0,4}:){0,5}:?ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
  if (!hex) return address;
  const high = parseInt(hex[1]!, 16);
  const low = parseInt(hex[2]!, 16);
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}

export function isPublicAddress(address: string): boolean {
  const plain = unmapped(address);
  return !NOT_PUBLIC.check(plain, familyOf(plain));
}

/** The operator's list, parsed: names, and addresses/ranges as a BlockList (used as an allow list). */
export class CallbackTargets {
  private readonly anywhere: boolean;
  private readonly names = new Set<string>();
  private readonly addresses = new BlockList();
  private readonly listed: boolean;

  constructor(entries: readonly string[]) {
    this.anywhere = entries.includes('*');
    this.listed = entries.length > 0;
    for (const entry of entries) {
      if (entry === '*') continue;
      const [net, prefix] = entry.split('/');
      const plain = unmapped(net!.replace(/^\[|\]$/g, ''));
      if (isIP(plain)) {
        if (prefix === undefined) this.addresses.addAddress(plain, familyOf(plain));
        else this.addresses.addSubnet(plain, Number(prefix), familyOf(plain));
      } else {
        this.names.add(entry.toLowerCase());
      }
    }
  }

  /** Whether a host name is listed by name (its addresses are then not checked: the operator named it). */
  namedHost(host: string): boolean {
    return this.anywhere || this.names.has(host.toLowerCase());
  }

  /** Whether a resolved address may be reached. */
  allowsAddress(address: string): boolean {
    if (this.anywhere) return true;
    const plain = unmapped(address);
    if (this.listed) return this.addresses.check(plain, familyOf(plain));
    return isPublicAddress(plain);
  }

  /** What the configuration allows, for messages. */
  describe(): string {
    if (this.anywhere) return 'any host';
    return this.listed ? 'only the hosts this server lists (POLYKERNEL_JUDGE0_CALLBACK_HOSTS)' : 'public addresses only';
  }
}

/**
 * Checks a callback URL when a submission comes in: what can be told without resolving the name. The
 * addresses are checked again at each try. Returns what is wrong, or undefined.
 */
export function callbackUrlProblem(raw: string, targets: CallbackTargets): string | undefined {
  if (raw.length > MAX_CALLBACK_URL_LENGTH) return `is too long (maximum is ${MAX_CALLBACK_URL_LENGTH} characters)`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'is not a valid URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be an http or https URL';
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const refused = `is not allowed: this server sends callbacks to ${targets.describe()}`;
  if (isIP(host)) return targets.allowsAddress(host) ? undefined : refused;
  // Names are resolved and checked at each try; loopback names can be refused now.
  if (!targets.namedHost(host) && /(^|\.)localhost\.?$/i.test(host) && !targets.allowsAddress('127.0.0.1')) return refused;
  return undefined;
}

export interface CallbackSenderDeps {
  config: CallbackConfig;
  log: Logger;
  sleep?: (ms: number) => Promise<void>;
}

export class CallbackSender {
  readonly targets: CallbackTargets;
  private inFlight = 0;
  private readonly pending: (() => void)[] = [];
  private pendingBytes = 0;
  private readonly sleep: (ms: number) => Promise<void>;
  private closed = false;

  constructor(private readonly deps: CallbackSenderDeps) {
    this.targets = new CallbackTargets(deps.config.judge0CallbackHosts);
    this.sleep = deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms).unref()));
  }

  /** Whether close() was called: a send that resolved false then was cut short, not given up. */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Sends in the background; resolves when delivered or given up (never rejects). `tries` are what is left
   * of POLYKERNEL_JUDGE0_CALLBACKS_MAX_TRIES (a callback resumed after a restart), `onFailedTry` hears
   * each failed try (so that the count survives a restart).
   */
  send(url: string, body: string, what: Record<string, unknown> = {}, tries?: number, onFailedTry?: () => void): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    const bytes = Buffer.byteLength(body);
    if (this.inFlight >= MAX_IN_FLIGHT && (this.pending.length >= MAX_PENDING || this.pendingBytes + bytes > MAX_PENDING_BYTES)) {
      this.deps.log.warn('Callback dropped: too many callbacks waiting', { ...what });
      return Promise.resolve(false);
    }
    return new Promise<boolean>((resolve) => {
      const go = () => {
        this.inFlight++;
        void this.deliver(url, body, what, tries, onFailedTry)
          .then(resolve)
          .finally(() => {
            this.inFlight--;
            this.pending.shift()?.();
          });
      };
      if (this.inFlight < MAX_IN_FLIGHT) go();
      else {
        this.pendingBytes += bytes;
        this.pending.push(() => {
          this.pendingBytes -= bytes;
          go();
        });
      }
    });
  }

  close(): void {
    this.closed = true;
    this.pending.length = 0;
  }

  private async deliver(url: string, body: string, what: Record<string, unknown>, triesLeft?: number, onFailedTry?: () => void): Promise<boolean> {
    const { judge0CallbackMaxTries: maxTries, judge0CallbackBackoffMs: backoff } = this.deps.config;
    const tries = Math.min(maxTries, triesLeft ?? maxTries);
    const done = maxTries - tries;
    for (let attempt = 1; attempt <= tries; attempt++) {
      if (this.closed) return false;
      const outcome = await this.tryOnce(url, body);
      if (outcome === 'ok') return true;
      onFailedTry?.();
      this.deps.log.warn('Callback try failed', { ...what, attempt: done + attempt, of: maxTries, reason: outcome });
      if (attempt < tries) await this.sleep(backoff * 2 ** (attempt - 1));
    }
    return false;
  }

  /** One PUT; 'ok' or why it failed. */
  async tryOnce(raw: string, body: string): Promise<'ok' | string> {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return 'not a valid URL';
    }
    const host = url.hostname.replace(/^\[|\]$/g, '');
    let address: string;
    try {
      const found = isIP(host) ? [{ address: host, family: isIP(host) }] : await lookup(host, { all: true, verbatim: true });
      if (found.length === 0) return `${host} does not resolve`;
      if (!this.targets.namedHost(host)) {
        const refused = found.find((a) => !this.targets.allowsAddress(a.address));
        if (refused) return `${host} resolves to ${refused.address}, which callbacks may not reach (${this.targets.describe()})`;
      }
      address = found[0]!.address;
    } catch (error) {
      return `cannot resolve ${host}: ${(error as Error).message}`;
    }
    // Connect to the address checked above, whatever a second lookup would say.
    const pinned: LookupFunction = (_name, options, callback) => {
      const family = isIP(address);
      if ((options as { all?: boolean }).all) (callback as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address, family }]);
      else callback(null, address, family);
    };
    const client = url.protocol === 'https:' ? https : http;
    const timeoutMs = this.deps.config.judge0CallbackTimeoutMs;
    return new Promise((resolve) => {
      let settled = false;
      const finish = (outcome: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(outcome);
      };
      const request = client.request(
        url,
        {
          method: 'PUT',
          lookup: pinned,
          headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'User-Agent': 'polykernel-judge0-callback' },
          agent: false,
        },
        (response) => {
          // The answer's body is not wanted: drained, never buffered.
          response.resume();
          const status = response.statusCode ?? 0;
          response.once('end', () => finish(status >= 200 && status < 300 ? 'ok' : `answered ${status}`));
          response.once('error', () => finish(`answered ${status}, then the connection failed`));
          if (status < 200 || status >= 300) finish(`answered ${status}`);
        },
      );
      const timer = setTimeout(() => {
        finish(`no answer within ${timeoutMs} ms`);
        request.destroy();
      }, timeoutMs);
      request.once('error', (error) => finish(error.message));
      request.end(body);
    });
  }
}

/**
 * Judge0's authorization (its `X-Auth-User` header, AUTHZ_TOKEN on its side): the calls it protects,
 * listing and deleting submissions, need it on top of authentication. Here they are allowed:
 * - to every submission, with `X-Auth-User` (or `?X-Auth-User=`) equal to POLYKERNEL_JUDGE0_AUTHZ_TOKEN,
 *   or to the admin token, or in the open mode while no Judge0 authorization token is configured;
 * - to its own submissions, to an API key (a tenant sees only what it created anyway).
 * Anything else is 403, as Judge0 answers.
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Config } from '../config/index.js';
import type { Tenant } from './tenant.js';

export type Judge0Authorization = 'all' | 'own' | 'none';

const JUDGE0_AUTHZ_HEADER = 'x-auth-user';

export function judge0Authorization(
  config: Pick<Config, 'judge0AuthzToken'>,
  tenant: Tenant,
  headers: IncomingHttpHeaders,
  url: URL,
): Judge0Authorization {
  const expected = config.judge0AuthzToken;
  const header = headers[JUDGE0_AUTHZ_HEADER];
  const presented = typeof header === 'string' ? header.trim() : (url.searchParams.get('X-Auth-User') ?? undefined);
  if (expected && presented !== undefined && sameSecret(expected, presented)) return 'all';
  switch (tenant.caller.kind) {
    case 'admin':
      return 'all';
    case 'open':
      return expected ? 'none' : 'all';
    case 'tenant':
      return 'own';
  }
}

function sameSecret(expected: string, presented: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}

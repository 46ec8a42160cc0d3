/**
 * The API keys of tenants (Backend.AI's keypairs, reduced to a bearer key): each key has an id, which
 * owns the kernels, sessions and executions made with it, and its own resource policy (kernels at once,
 * total memory, CPU credit) and rate limit.
 *
 * Keys come from a JSON file (POLYKERNEL_API_KEYS_FILE). The file is checked for a change at most every
 * POLYKERNEL_API_KEYS_RELOAD_MS, when a request needs a key, and re-read when it changed: keys are added
 * and revoked by editing the file, without a restart, and a revoked key is refused from the first request
 * after the check. A file that does not parse keeps the keys last read (and the error is logged): a typo
 * must not lock every tenant out, nor silently open the service.
 *
 * Secrets are held only as SHA-256 digests (the file may give `sha256` instead of `key`, so it need not
 * hold secrets either). A presented key is hashed and looked up by digest: the comparison never touches
 * the secret byte by byte, so its timing says nothing about it.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { Logger } from '../logger.js';

export interface KeyPolicy {
  /** Kernels the key may have at once; 0 = no limit. */
  maxKernels: number;
  /** Sum of the memory caps of the key's kernels, KB; 0 = no limit. */
  maxMemKB: number;
  /** CPU time the key's live kernels may have used together, ms; 0 = no limit. */
  maxCpuCreditMs: number;
  /** Requests per rate-limit window; 0 = no limit. */
  rateLimit: number;
}

export interface ApiKey {
  /** Owner id stamped on everything the key creates. */
  readonly id: string;
  readonly policy: KeyPolicy;
  /** SHA-256 of the secret, hex. */
  readonly digest: string;
}

const KEY_ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
const HEX_DIGEST = /^[0-9a-f]{64}$/;

export const digestOf = (secret: string): string => createHash('sha256').update(secret, 'utf8').digest('hex');

export class KeyFileError extends Error {}

/** Parses the keys file: `{"keys": [{"id", "key" | "sha256", "maxKernels"?, "maxMemKB"?, "maxCpuCreditMs"?, "rateLimit"?}]}`. */
export function parseKeyFile(text: string, defaults: KeyPolicy): Map<string, ApiKey> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw new KeyFileError(`not valid JSON: ${(error as Error).message}`);
  }
  const list = Array.isArray(doc) ? doc : (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(list)) throw new KeyFileError('expected {"keys": [...]}');
  const byDigest = new Map<string, ApiKey>();
  const ids = new Set<string>();
  list.forEach((entry: Record<string, unknown>, index) => {
    const where = `keys[${index}]`;
    if (!entry || typeof entry !== 'object') throw new KeyFileError(`${where} must be an object`);
    const { id, key, sha256 } = entry;
    if (typeof id !== 'string' || !KEY_ID_PATTERN.test(id)) throw new KeyFileError(`${where}.id must be 1-64 of A-Z a-z 0-9 _ . -`);
    if (ids.has(id)) throw new KeyFileError(`${where}.id "${id}" appears twice`);
    ids.add(id);
    let digest: string;
    if (typeof sha256 === 'string' && HEX_DIGEST.test(sha256.toLowerCase())) digest = sha256.toLowerCase();
    else if (typeof key === 'string' && key.length >= 16) digest = digestOf(key);
    else throw new KeyFileError(`${where} needs "key" (at least 16 characters) or "sha256" (64 hex digits)`);
    if (byDigest.has(digest)) throw new KeyFileError(`${where}: the same key is given twice`);
    const policy = { ...defaults };
    for (const field of ['maxKernels', 'maxMemKB', 'maxCpuCreditMs', 'rateLimit'] as const) {
      const value = entry[field];
      if (value === undefined) continue;
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
        throw new KeyFileError(`${where}.${field} must be a whole number >= 0 (0 = no limit)`);
      }
      policy[field] = value;
    }
    if (entry.disabled === true) return;
    byDigest.set(digest, Object.freeze({ id, digest, policy: Object.freeze(policy) }));
  });
  return byDigest;
}

export interface KeyRegistryOptions {
  file: string;
  reloadMs: number;
  defaults: KeyPolicy;
  log: Logger;
  clock?: () => number;
}

export class KeyRegistry {
  private keys = new Map<string, ApiKey>();
  private stamp = '';
  private checkedAt = 0;
  private readonly clock: () => number;
  /** Called with the ids that are no longer valid after a reload (per-key state is dropped). */
  onRevoked?: (ids: string[]) => void;

  /** Reads the file once: a missing or bad file at start stops the service with the reason. */
  constructor(private readonly options: KeyRegistryOptions) {
    this.clock = options.clock ?? Date.now;
    const error = this.reload();
    if (error) throw new KeyFileError(`POLYKERNEL_API_KEYS_FILE ${options.file}: ${error}`);
  }

  /** The key with this secret, or undefined. Re-reads the file first when it may have changed. */
  lookup(secret: string): ApiKey | undefined {
    this.refresh();
    return this.keys.get(digestOf(secret));
  }

  /** Whether this key is still valid (not revoked nor rotated since it was looked up). */
  isValid(key: ApiKey): boolean {
    this.refresh();
    return this.keys.get(key.digest)?.id === key.id;
  }

  get size(): number {
    return this.keys.size;
  }

  private refresh(): void {
    const now = this.clock();
    if (now - this.checkedAt < this.options.reloadMs) return;
    const error = this.reload();
    if (error) this.options.log.error('API keys file not reloaded; the keys read before stay in force', { file: this.options.file, error });
  }

  /** Re-reads the file when its identity, size or mtime changed; returns an error text or undefined. */
  private reload(): string | undefined {
    this.checkedAt = this.clock();
    let stamp: string;
    try {
      const st = statSync(this.options.file);
      stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch (error) {
      return `cannot read it (${(error as Error).message})`;
    }
    if (stamp === this.stamp) return undefined;
    let next: Map<string, ApiKey>;
    try {
      next = parseKeyFile(readFileSync(this.options.file, 'utf8'), this.options.defaults);
    } catch (error) {
      return error instanceof KeyFileError ? error.message : `cannot read it (${(error as Error).message})`;
    }
    const before = new Set([...this.keys.values()].map((key) => key.id));
    this.keys = next;
    this.stamp = stamp;
    for (const key of next.values()) before.delete(key.id);
    if (before.size > 0) this.onRevoked?.([...before]);
    this.options.log.info('API keys loaded', { file: this.options.file, keys: next.size });
    return undefined;
  }
}

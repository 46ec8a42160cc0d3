/**
 * Who is calling, and what they may see. Three kinds of caller:
 * - `admin`: the KG_AUTH_TOKEN; sees and manages everything, as the single token always did;
 * - `tenant`: an API key; sees only what it created (kernels, sessions, executions), and what it creates
 *   is stamped with its id and checked against its policy;
 * - `open`: no token and no keys configured, the single-user mode of a local server; sees everything.
 *
 * The API layers ask the request's Tenant (ctx.state.tenant) instead of the kernel manager directly, so
 * a foreign id answers exactly as an unknown one (404 with the same message): no existence oracle.
 */
import type { Context } from 'koa';
import { unknownKernel } from '../errors.js';
import type { CreateKernelRequest, CreateKernelResult, KernelManager } from '../kernels/kernel-manager.js';
import type { KernelRecord } from '../kernels/kernel-record.js';
import type { ApiKey } from './api-keys.js';
import type { KernelQuota } from './quota.js';

export type Caller = { kind: 'admin' } | { kind: 'open' } | { kind: 'tenant'; key: ApiKey };

/** What the session and execution managers need: whose records to show, and whose to stamp. */
export interface Visibility {
  /** Stamped on what this caller creates; undefined for admin and open mode. */
  readonly owner: string | undefined;
  sees(owner: string | undefined): boolean;
}

export const EVERYONE: Visibility = { owner: undefined, sees: () => true };

export class Tenant implements Visibility {
  readonly owner: string | undefined;

  constructor(
    readonly caller: Caller,
    private readonly kernels: Pick<KernelManager, 'get' | 'create' | 'removedKernel' | 'handle'>,
    private readonly quota: KernelQuota,
  ) {
    this.owner = caller.kind === 'tenant' ? caller.key.id : undefined;
  }

  sees(owner: string | undefined): boolean {
    return this.caller.kind !== 'tenant' || owner === this.caller.key.id;
  }

  /** The kernel's record when this caller may see it; otherwise the very 404 of an unknown id. */
  async kernel(id: string): Promise<KernelRecord> {
    let record: KernelRecord;
    try {
      record = await this.kernels.get(id);
    } catch (error) {
      // "gone (out of memory)" tells that the id existed: only its owner hears why.
      const removed = this.kernels.removedKernel(id);
      if (removed && !this.sees(removed.owner)) throw unknownKernel(id);
      throw error;
    }
    if (!this.sees(record.owner)) throw unknownKernel(id);
    return record;
  }

  /**
   * Whether this caller may execute on the kernel, from the live kernel alone: the execute path makes no
   * store round trip. A kernel already gone is its owner's still (a run that timed out took it along, and
   * its answer is due); the execution layer then says what became of it.
   */
  async mayExecute(id: string): Promise<void> {
    if (this.caller.kind !== 'tenant') return;
    const kernel = await this.kernels.handle(id).catch(() => undefined);
    const owner = kernel ? kernel.owner : this.kernels.removedKernel(id)?.owner;
    if ((kernel || this.kernels.removedKernel(id)) && this.sees(owner)) return;
    throw unknownKernel(id);
  }

  /** A kernel owned by this caller, within its key's policy. */
  createKernel(request: CreateKernelRequest): Promise<CreateKernelResult> {
    if (this.caller.kind === 'tenant') return this.quota.create(this.caller.key, request);
    return this.kernels.create({ ...request, owner: undefined });
  }
}

/** The request's tenant, set by the auth middleware. Fails closed: a route mounted without it is a fault. */
export function tenantOf(ctx: Context): Tenant {
  const tenant = (ctx.state as { tenant?: Tenant }).tenant;
  if (!tenant) throw new Error('no caller resolved for this request: the auth middleware is not mounted');
  return tenant;
}

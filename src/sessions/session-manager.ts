/**
 * Jupyter sessions: a named path (a notebook, a console) bound to a kernel, kept in the store's
 * 'sessions' namespace so that, with Redis, they outlive a restart of the service and are seen by every
 * replica. Semantics follow jupyter_server's SessionManager:
 * - creating a session for a path that already has one returns that session;
 * - a session whose kernel is gone (culled, died, deleted through another API) is removed when it is
 *   next read, and is then "not found";
 * - switching a session to a new kernel by name shuts its old kernel down; deleting a session shuts its
 *   kernel down.
 */
import { randomUUID } from 'node:crypto';
import { DomainError, invalidInput, notFound, notImplemented } from '../errors.js';
import type { Visibility } from '../auth/tenant.js';
import type { CreateKernelRequest, CreateKernelResult, KernelManager } from '../kernels/kernel-manager.js';
import type { KernelRecord } from '../kernels/kernel-record.js';
import type { Store } from '../store/store.js';

export interface SessionRecord {
  id: string;
  path: string;
  name: string;
  type: string;
  kernelId: string;
  /** The API key that created the session; absent for the admin token and the open mode. */
  owner?: string;
}

/**
 * Whose sessions a call sees and on whose behalf it starts kernels (the request's Tenant). A session
 * or kernel of another owner is treated exactly as one that does not exist.
 */
export interface SessionScope extends Visibility {
  createKernel(request: CreateKernelRequest): Promise<CreateKernelResult>;
}

export interface SessionView {
  session: SessionRecord;
  kernel: KernelRecord;
}

/** Which kernel a session should have: an existing one by id, or a new one of a kernelspec. */
export interface KernelChoice {
  id?: string;
  name?: string;
}

export interface CreateSessionRequest {
  path: string;
  type: string;
  name?: string;
  kernel?: KernelChoice;
}

export interface UpdateSessionRequest {
  path?: string;
  name?: string;
  type?: string;
  kernel?: KernelChoice;
}

/** The kernelspec a session asked for does not exist: jupyter_server's sessions API answers 501 with these words. */
function noSuchKernelSpec(kernelName: string, available: string[]): DomainError {
  return notImplemented(
    `The '${kernelName}' kernel is not available. Please pick another suitable kernel instead, or install that kernel. ` +
      `Available: ${available.join(', ') || 'none'}`,
    { shortMessage: `${kernelName} not found` },
  );
}

/**
 * A session pointed at a kernel id that names no live kernel (of this caller): jupyter_server answers 400
 * "No such kernel", a bad request rather than the 404 of `unknownKernel`, since the session exists.
 */
export const noSuchKernel = (id: string) => invalidInput(`No such kernel: ${id}`);

type SessionKernels = Pick<KernelManager, 'get' | 'list' | 'create' | 'delete' | 'specs'>;

export class SessionManager {
  /** Creates per path in this process, so two concurrent creates for one notebook share a session. */
  private readonly creating = new Map<string, Promise<{ view: SessionView; created: boolean }>>();

  constructor(
    private readonly store: Store,
    private readonly kernels: SessionKernels,
    private readonly newId: () => string = randomUUID,
  ) {}

  /** Everything, kernels started without an owner: callers that are not a request (and the tests). */
  private get everyone(): SessionScope {
    return { owner: undefined, sees: () => true, createKernel: (request) => this.kernels.create(request) };
  }

  async list(scope: SessionScope = this.everyone): Promise<SessionView[]> {
    const [sessions, kernels] = await Promise.all([this.store.list<SessionRecord>('sessions'), this.kernels.list()]);
    const byId = new Map(kernels.map((kernel) => [kernel.id, kernel]));
    const views: SessionView[] = [];
    for (const session of sessions) {
      if (!scope.sees(session.owner)) continue;
      const kernel = byId.get(session.kernelId);
      if (kernel && kernel.state !== 'dead') views.push({ session, kernel });
      else await this.store.delete('sessions', session.id);
    }
    return views.sort((a, b) => a.session.path.localeCompare(b.session.path));
  }

  async get(id: string, scope: SessionScope = this.everyone): Promise<SessionView> {
    const session = await this.store.get<SessionRecord>('sessions', id);
    if (!session || !scope.sees(session.owner)) throw notFound(`Session not found: session_id='${id}'`);
    const kernel = await this.liveKernel(session.kernelId, scope);
    if (!kernel) {
      await this.store.delete('sessions', id);
      throw notFound(
        `Session not found: kernel '${session.kernelId}' appears to have been culled or died unexpectedly, ` +
          `invalidating session '${id}'. The session has been removed.`,
      );
    }
    return { session, kernel };
  }

  create(request: CreateSessionRequest, scope: SessionScope = this.everyone): Promise<{ view: SessionView; created: boolean }> {
    // Paths are per owner: two tenants' "notebook.ipynb" are two sessions.
    const key = `${scope.owner ?? ''}\n${request.path}`;
    const pending = this.creating.get(key);
    if (pending) return pending.then(({ view }) => ({ view, created: false }));
    const creation = this.createNow(request, scope).finally(() => this.creating.delete(key));
    this.creating.set(key, creation);
    return creation;
  }

  private async createNow(request: CreateSessionRequest, scope: SessionScope): Promise<{ view: SessionView; created: boolean }> {
    const existing = (await this.list(scope)).find((view) => view.session.path === request.path && view.session.owner === scope.owner);
    if (existing) return { view: existing, created: false };
    const requested = request.kernel?.id ? await this.liveKernel(request.kernel.id, scope) : undefined;
    // As jupyter_server: a kernel id that names no live kernel (or one of another owner) starts a new kernel instead.
    const kernel = requested ?? (await this.startKernel(request.kernel?.name, scope));
    const session: SessionRecord = {
      id: this.newId(),
      path: request.path,
      name: request.name ?? '',
      type: request.type,
      kernelId: kernel.id,
      owner: scope.owner,
    };
    try {
      await this.store.put('sessions', session.id, session);
    } catch (error) {
      if (!requested) await this.kernels.delete(kernel.id).catch(() => undefined);
      throw error;
    }
    return { view: { session, kernel }, created: true };
  }

  async update(id: string, request: UpdateSessionRequest, scope: SessionScope = this.everyone): Promise<SessionView> {
    const before = await this.get(id, scope);
    const patch: Partial<SessionRecord> = {};
    if (request.path !== undefined) patch.path = request.path;
    if (request.name !== undefined) patch.name = request.name;
    if (request.type !== undefined) patch.type = request.type;
    let started: KernelRecord | undefined;
    if (request.kernel?.id !== undefined) {
      const kernel = await this.liveKernel(request.kernel.id, scope);
      if (!kernel) throw noSuchKernel(request.kernel.id);
      patch.kernelId = kernel.id;
    } else if (request.kernel?.name !== undefined) {
      started = await this.startKernel(request.kernel.name, scope);
      patch.kernelId = started.id;
    }
    if (!(await this.store.update<SessionRecord>('sessions', id, patch))) {
      if (started) await this.kernels.delete(started.id).catch(() => undefined);
      throw notFound(`Session not found: session_id='${id}'`);
    }
    if (patch.kernelId !== undefined && patch.kernelId !== before.kernel.id) {
      await this.deleteKernel(before.kernel.id);
    }
    return this.get(id, scope);
  }

  async delete(id: string, scope: SessionScope = this.everyone): Promise<void> {
    const { session } = await this.get(id, scope);
    await this.deleteKernel(session.kernelId);
    await this.store.delete('sessions', id);
  }

  private async startKernel(name: string | undefined, scope: SessionScope): Promise<KernelRecord> {
    if (name !== undefined && !(await this.kernels.specs.resolve(name))) {
      throw noSuchKernelSpec(name, await this.kernels.specs.names());
    }
    return (await scope.createKernel({ lang: name })).record;
  }

  /** The kernel's record, or undefined when no live kernel the scope may see has this id. */
  private async liveKernel(id: string, scope: SessionScope): Promise<KernelRecord | undefined> {
    try {
      const kernel = await this.kernels.get(id);
      return kernel.state === 'dead' || !scope.sees(kernel.owner) ? undefined : kernel;
    } catch (error) {
      if (error instanceof DomainError && error.code === 'not_found') return undefined;
      throw error;
    }
  }

  private async deleteKernel(id: string): Promise<void> {
    try {
      await this.kernels.delete(id);
    } catch (error) {
      if (!(error instanceof DomainError && error.code === 'not_found')) throw error;
    }
  }
}

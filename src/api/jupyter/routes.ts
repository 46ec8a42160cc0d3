/**
 * The Jupyter REST APIs (Kernel Gateway's jupyter-websocket mode, jupyter_server's kernels, kernelspecs
 * and sessions), over the same kernels as /v1. Thin handlers: validate, one manager call, status + JSON.
 * Errors render as `{message, reason}` (api/http.ts picks that style for every non-/v1 path).
 *
 * The channels WebSocket of a kernel lives in src/channels/: an upgrade request never reaches koa.
 */
import { readFileSync } from 'node:fs';
import Router from '@koa/router';
import type { Context } from 'koa';
import type { Config } from '../../config/index.js';
import { forbidden, invalidInput, notFound, unknownKernel } from '../../errors.js';
import type { KernelManager } from '../../kernels/kernel-manager.js';
import type { KernelRecord } from '../../kernels/kernel-record.js';
import { noSuchKernel, type SessionManager } from '../../sessions/session-manager.js';
import { tenantOf } from '../../auth/tenant.js';
import { readJsonBody } from '../http.js';
import { UUID_PATTERN, validateObject, type ObjectSchema } from '../validate.js';
import { kernelModel, kernelSpecModel, sessionModel } from './models.js';

export interface JupyterDeps {
  config: Config;
  kernels: KernelManager;
  sessions: SessionManager;
  /** Open WebSockets of a kernel in this process (the channels bridge); undefined when it has none here. */
  connectionCount?: (kernelId: string) => number | undefined;
}

const VERSION = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const START_KERNEL_SCHEMA: ObjectSchema = {
  name: { type: 'string', minLength: 1, maxLength: 128 },
  env: { type: 'record', values: { type: 'string', maxLength: 32_768 }, maxKeys: 256 },
  // jupyter_server's API accepts the notebook's path (the kernel's cwd); a sandbox has its own.
  path: { type: 'string', maxLength: 4096 },
};

const KERNEL_CHOICE: ObjectSchema = {
  id: { type: 'string', maxLength: 64 },
  name: { type: 'string', minLength: 1, maxLength: 128 },
};

const SESSION_FIELDS: ObjectSchema = {
  path: { type: 'string', maxLength: 4096 },
  name: { type: 'string', maxLength: 4096 },
  type: { type: 'string', maxLength: 64 },
  // Clients hand whole kernel models around (JupyterLab's changeKernel takes a Partial<Kernel.IModel>):
  // only id and name matter here, the rest of a model is ignored, as jupyter_server does.
  kernel: { type: 'object', fields: KERNEL_CHOICE, allowExtra: true },
  // The deprecated form of path (notebook clients before jupyter_server's sessions API change).
  notebook: { type: 'object', fields: { path: { type: 'string', maxLength: 4096 }, name: { type: 'string', maxLength: 4096 } } },
};

/** PATCH bodies from JupyterLab carry the session's id next to the changes. */
const PATCH_SESSION_SCHEMA: ObjectSchema = { ...SESSION_FIELDS, id: { type: 'string', maxLength: 64 } };

interface SessionBody {
  path?: string;
  name?: string;
  type?: string;
  kernel?: { id?: string; name?: string };
  notebook?: { path?: string; name?: string };
  id?: string;
}

/** Kernel and session ids are UUIDs; like jupyter_server's URL patterns, anything else names nothing. */
function kernelIdParam(raw: string): string {
  if (!UUID_PATTERN.test(raw)) throw unknownKernel(raw.slice(0, 60));
  return raw.toLowerCase();
}

function sessionIdParam(raw: string): string {
  if (!UUID_PATTERN.test(raw)) throw notFound(`no session with id ${raw.slice(0, 60)}`);
  return raw.toLowerCase();
}

/** Only KERNEL_* variables and those KG_ENV_WHITELIST names reach the kernel, as in Kernel Gateway. */
function kernelEnv(env: Record<string, string> | undefined, whitelist: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env ?? {})) {
    if (!ENV_NAME.test(name)) throw invalidInput(`env.${name.slice(0, 60)} is not a valid environment variable name`);
    if (name.startsWith('KERNEL_') || whitelist.includes(name)) out[name] = value;
  }
  return out;
}

/** The deprecated `notebook: {path}` form means a notebook session at that path. */
function normaliseSession(body: SessionBody): SessionBody {
  if (body.notebook?.path === undefined) return body;
  return { ...body, path: body.notebook.path, type: 'notebook' };
}

async function jsonBody(ctx: Context, config: Config): Promise<unknown> {
  const body = await readJsonBody(ctx, config.maxBodyBytes);
  // Clients (jupyter_server among them) may send a literal null for "no options".
  return body === null ? {} : body;
}

export function jupyterRouter(deps: JupyterDeps): Router {
  const { config, kernels, sessions } = deps;
  const router = new Router();
  const model = (record: KernelRecord) => kernelModel(record, deps.connectionCount?.(record.id) ?? record.connections);

  router.get('/api', (ctx) => {
    ctx.body = { version: VERSION };
  });

  // jupyter_server's status document, plus this service's warm pools (ready kernels per language).
  const started = new Date().toISOString();
  router.get('/api/status', async (ctx) => {
    const tenant = tenantOf(ctx);
    // A tenant's status counts its own kernels only; the warm pools are the service's, shown to all.
    let live = kernels.liveKernels();
    if (tenant.owner !== undefined) {
      const own = new Set((await kernels.list()).filter((record) => tenant.sees(record.owner)).map((record) => record.id));
      live = live.filter((kernel) => own.has(kernel.id));
    }
    const lastActivity = live.reduce((latest, kernel) => Math.max(latest, kernel.lastActivity), 0);
    ctx.body = {
      started,
      last_activity: lastActivity ? new Date(lastActivity).toISOString() : started,
      kernels: live.length,
      connections: live.reduce((sum, kernel) => sum + (deps.connectionCount?.(kernel.id) ?? 0), 0),
      pools: kernels.pool.status(),
    };
  });

  // --- kernelspecs ---------------------------------------------------------------------------------

  router.get('/api/kernelspecs', async (ctx) => {
    const entries = await kernels.specs.list();
    ctx.body = {
      default: config.defaultKernelName,
      kernelspecs: Object.fromEntries(entries.map((entry) => [entry.name, kernelSpecModel(entry)])),
    };
  });

  router.get('/api/kernelspecs/:name', async (ctx) => {
    const entry = await kernels.specs.resolve(ctx.params.name!);
    if (!entry) throw notFound(`Kernel spec ${ctx.params.name!.slice(0, 128)} not found`);
    ctx.body = kernelSpecModel(entry);
  });

  router.get('/kernelspecs/:name/:resource', async (ctx) => {
    const { name, resource } = ctx.params as { name: string; resource: string };
    const data = await kernels.specs.readResource(name, resource);
    if (!data) throw notFound(`kernelspec ${name.slice(0, 128)} has no resource ${resource.slice(0, 128)}`);
    // By extension (png, svg, js, css); koa falls back to application/octet-stream.
    ctx.type = resource;
    ctx.set('Cache-Control', 'max-age=3600');
    ctx.body = data;
  });

  // --- kernels -------------------------------------------------------------------------------------

  router.get('/api/kernels', async (ctx) => {
    if (!config.listKernels) throw forbidden('listing kernels is disabled on this server (KG_LIST_KERNELS=false)');
    const tenant = tenantOf(ctx);
    const records = (await kernels.list()).filter((record) => tenant.sees(record.owner));
    ctx.body = records.sort((a, b) => a.createdAt - b.createdAt).map(model);
  });

  router.post('/api/kernels', async (ctx) => {
    const body = validateObject<{ name?: string; env?: Record<string, string> }>(START_KERNEL_SCHEMA, await jsonBody(ctx, config));
    const { record } = await tenantOf(ctx).createKernel({ lang: body.name, env: kernelEnv(body.env, config.envWhitelist) });
    ctx.status = 201;
    ctx.set('Location', `/api/kernels/${record.id}`);
    ctx.body = model(record);
  });

  router.get('/api/kernels/:id', async (ctx) => {
    ctx.body = model(await tenantOf(ctx).kernel(kernelIdParam(ctx.params.id!)));
  });

  router.delete('/api/kernels/:id', async (ctx) => {
    await kernels.delete((await tenantOf(ctx).kernel(kernelIdParam(ctx.params.id!))).id);
    ctx.status = 204;
  });

  router.post('/api/kernels/:id/interrupt', async (ctx) => {
    await kernels.interrupt((await tenantOf(ctx).kernel(kernelIdParam(ctx.params.id!))).id);
    ctx.status = 204;
  });

  router.post('/api/kernels/:id/restart', async (ctx) => {
    ctx.body = model(await kernels.restart((await tenantOf(ctx).kernel(kernelIdParam(ctx.params.id!))).id));
  });

  // A plain GET of the channels URL (no Upgrade header): what jupyter_server answers, in our style.
  router.get('/api/kernels/:id/channels', async (ctx) => {
    await tenantOf(ctx).kernel(kernelIdParam(ctx.params.id!));
    throw invalidInput('this endpoint is a WebSocket: send "Connection: Upgrade" and "Upgrade: websocket"');
  });

  // --- sessions ------------------------------------------------------------------------------------

  const sessionOut = (view: Parameters<typeof sessionModel>[0]) => sessionModel(view, deps.connectionCount?.(view.kernel.id));

  router.get('/api/sessions', async (ctx) => {
    ctx.body = (await sessions.list(tenantOf(ctx))).map(sessionOut);
  });

  router.post('/api/sessions', async (ctx) => {
    const body = normaliseSession(validateObject<SessionBody>(SESSION_FIELDS, await readJsonBody(ctx, config.maxBodyBytes)));
    if (body.path === undefined) throw invalidInput('Missing field in JSON data: path');
    if (body.type === undefined) throw invalidInput('Missing field in JSON data: type');
    const { view } = await sessions.create({ path: body.path, type: body.type, name: body.name, kernel: body.kernel }, tenantOf(ctx));
    ctx.status = 201;
    ctx.set('Location', `/api/sessions/${view.session.id}`);
    ctx.body = sessionOut(view);
  });

  router.get('/api/sessions/:id', async (ctx) => {
    ctx.body = sessionOut(await sessions.get(sessionIdParam(ctx.params.id!), tenantOf(ctx)));
  });

  router.patch('/api/sessions/:id', async (ctx) => {
    const id = sessionIdParam(ctx.params.id!);
    const body = normaliseSession(validateObject<SessionBody>(PATCH_SESSION_SCHEMA, await readJsonBody(ctx, config.maxBodyBytes)));
    if (body.kernel?.id !== undefined && !UUID_PATTERN.test(body.kernel.id)) throw noSuchKernel(body.kernel.id.slice(0, 64));
    ctx.body = sessionOut(
      await sessions.update(id, {
        path: body.path,
        name: body.name,
        type: body.type,
        kernel: body.kernel && { id: body.kernel.id?.toLowerCase(), name: body.kernel.name },
      }, tenantOf(ctx)),
    );
  });

  router.delete('/api/sessions/:id', async (ctx) => {
    await sessions.delete(sessionIdParam(ctx.params.id!), tenantOf(ctx));
    ctx.status = 204;
  });

  return router;
}

/**
 * The v1 kernel API (Backend.AI's kernel management and execute calls). Thin handlers: validate,
 * one service call, status + JSON.
 */
import Router from '@koa/router';
import type { Config } from '../../config/index.js';
import type { KernelManager } from '../../kernels/kernel-manager.js';
import type { BatchOptions } from '../../runs/batch.js';
import { checkBatchFiles, MAX_BATCH_FILES, MAX_FILE_NAME_BYTES } from '../../runs/batch-files.js';
import type { KernelRecord } from '../../kernels/kernel-record.js';
import type { ExecuteRequest, QueryService } from '../../runs/query-service.js';
import { invalidInput } from '../../errors.js';
import { tenantOf } from '../../auth/tenant.js';
import { readJsonBody } from '../http.js';
import { parseCompleteBody } from './complete-body.js';
import { mountFileRoutes } from './files.js';
import { assertKernelId, validateObject, type ObjectSchema } from '../validate.js';

export interface V1Deps {
  config: Config;
  kernels: KernelManager;
  queries: QueryService;
  clock?: () => number;
}

const CREATE_SCHEMA: ObjectSchema = {
  lang: { type: 'string', required: true, minLength: 1, maxLength: 64 },
  clientSessionToken: { type: 'string', minLength: 1, maxLength: 256 },
  resourceLimits: {
    type: 'object',
    fields: {
      maxMem: { type: 'integer', min: 1 },
      timeout: { type: 'integer', min: 1 },
    },
  },
};

interface CreateBody {
  lang: string;
  clientSessionToken?: string;
  resourceLimits?: { maxMem?: number; timeout?: number };
}

export const EXECUTE_SCHEMA: ObjectSchema = {
  mode: { type: 'string', required: true, enum: ['query', 'batch', 'continue', 'input'] },
  code: { type: 'string' },
  runId: { type: 'string', minLength: 1, maxLength: 64, pattern: /^[A-Za-z0-9_.:-]+$/ },
  options: { type: 'object', fields: {}, allowExtra: true },
};

interface ExecuteBody {
  mode: 'query' | 'batch' | 'continue' | 'input';
  code?: string;
  runId?: string;
  options?: Record<string, unknown>;
}

const COMMAND = { type: 'string', maxLength: 65536 } as const;

/** Batch mode's options; query mode ignores its options, as Backend.AI does. */
const BATCH_OPTIONS_SCHEMA: ObjectSchema = {
  files: {
    type: 'array',
    maxItems: MAX_BATCH_FILES,
    items: {
      type: 'object',
      fields: {
        name: { type: 'string', required: true, maxLength: MAX_FILE_NAME_BYTES },
        content: { type: 'string', required: true },
      },
    },
  },
  build: COMMAND,
  exec: COMMAND,
  clean: COMMAND,
  stdin: { type: 'string' },
};

/** Batch mode's options, checked (also on the streaming socket, stream-frames.ts). */
export function toBatchOptions(options: Record<string, unknown> | undefined, maxBodyBytes: number): BatchOptions {
  const parsed = validateObject<Omit<BatchOptions, 'files'> & { files?: BatchOptions['files'] }>(BATCH_OPTIONS_SCHEMA, options ?? {}, 'options');
  return { ...parsed, files: checkBatchFiles(parsed.files ?? [], maxBodyBytes) };
}

function toExecuteRequest(body: ExecuteBody, maxBodyBytes: number): ExecuteRequest {
  const need = (field: 'code' | 'runId') => {
    const value = body[field];
    if (value === undefined) throw invalidInput(`${field} is required in mode "${body.mode}"`);
    return value;
  };
  switch (body.mode) {
    case 'query':
      return { mode: 'query', code: need('code'), runId: body.runId };
    case 'batch':
      // `code` is ignored: a batch run is its files and commands.
      return { mode: 'batch', options: toBatchOptions(body.options, maxBodyBytes), runId: body.runId };
    case 'continue':
      return { mode: 'continue', runId: need('runId') };
    case 'input':
      return { mode: 'input', runId: need('runId'), code: need('code') };
  }
}

/** The info fields of the seed (ages in ms, memory in KB, CPU in ms), plus the kernel's state. */
export function kernelInfo(record: KernelRecord, now: number) {
  return {
    lang: record.lang,
    age: Math.max(0, now - record.createdAt),
    idle: Math.max(0, now - record.lastActivity),
    queryTimeout: record.limits.timeoutMs,
    idleTimeout: record.limits.idleTimeoutMs,
    maxCpuCredit: record.limits.maxCpuCreditMs,
    numQueriesExecuted: record.numQueriesExecuted,
    memoryUsed: record.memoryUsedKB,
    cpuCreditUsed: record.cpuCreditUsedMs,
    state: record.state,
  };
}

export function v1Router(deps: V1Deps): Router {
  const clock = deps.clock ?? Date.now;
  const router = new Router({ prefix: '/v1/kernel' });

  router.post('/create', async (ctx) => {
    const body = validateObject<CreateBody>(CREATE_SCHEMA, await readJsonBody(ctx, deps.config.maxBodyBytes));
    const { record, created } = await tenantOf(ctx).createKernel({
      lang: body.lang,
      clientSessionToken: body.clientSessionToken,
      limits: { maxMemKB: body.resourceLimits?.maxMem, timeoutMs: body.resourceLimits?.timeout },
    });
    ctx.status = created ? 201 : 200;
    ctx.body = { kernelId: record.id };
  });

  router.get('/:id', async (ctx) => {
    const record = await tenantOf(ctx).kernel(assertKernelId(ctx.params.id!));
    ctx.body = kernelInfo(record, clock());
  });

  router.delete('/:id', async (ctx) => {
    const { id } = await tenantOf(ctx).kernel(assertKernelId(ctx.params.id!));
    await deps.kernels.delete(id);
    ctx.status = 204;
  });

  router.patch('/:id', async (ctx) => {
    const { id } = await tenantOf(ctx).kernel(assertKernelId(ctx.params.id!));
    await deps.kernels.restart(id);
    ctx.status = 204;
  });

  router.post('/:id/complete', async (ctx) => {
    const kernelId = assertKernelId(ctx.params.id!);
    const request = parseCompleteBody(await readJsonBody(ctx, deps.config.maxBodyBytes));
    await tenantOf(ctx).mayExecute(kernelId);
    const { matches, cursorStart, cursorEnd } = await deps.queries.complete(kernelId, request);
    ctx.body = { result: matches, cursorStart, cursorEnd };
  });

  router.post('/:id/interrupt', async (ctx) => {
    const { id } = await tenantOf(ctx).kernel(assertKernelId(ctx.params.id!));
    await deps.queries.interrupt(id);
    ctx.status = 204;
  });

  mountFileRoutes(router, deps);

  router.post('/:id', async (ctx) => {
    const kernelId = assertKernelId(ctx.params.id!);
    const body = validateObject<ExecuteBody>(EXECUTE_SCHEMA, await readJsonBody(ctx, deps.config.maxBodyBytes));
    const request = toExecuteRequest(body, deps.config.maxBodyBytes);
    await tenantOf(ctx).mayExecute(kernelId);
    const result = await deps.queries.execute(kernelId, request);
    ctx.body = { result };
  });

  return router;
}

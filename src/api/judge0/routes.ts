/**
 * Judge0's API (its config/routes.rb and docs/api), on the judge engine: thin handlers that parse, call the
 * submission queue, and render as Judge0 does (./render.ts). Errors are Judge0's `{"error": ...}`
 * (src/api/http.ts picks the dialect by path), and a submission with wrong fields is its 422 body.
 *
 * Authentication is the service's (src/auth: a token, an API key, or Judge0's X-Auth-Token header);
 * listing and deleting need Judge0's authorization on top (src/auth/judge0-authorization.ts).
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import Router from '@koa/router';
import type { Context } from 'koa';
import type { Config } from '../../config/index.js';
import { forbidden, invalidInput, notFound, rateLimited, unavailable, unprocessable } from '../../errors.js';
import { judge0Authorization } from '../../auth/judge0-authorization.js';
import { tenantOf } from '../../auth/tenant.js';
import type { JobRecord } from '../../judge/submission-queue.js';
import type { Judge0Runtime } from './runtime.js';
import { UUID_PATTERN } from '../validate.js';
import { readJsonBody } from '../http.js';
import { LanguageCatalog, type Judge0Language } from './languages.js';
import { fieldsFor, NotUtf8, parseFields, renderSubmission, type Field } from './render.js';
import { listedStatuses } from './statuses.js';
import { parseSubmission, type Judge0Meta } from './submission.js';
import type { JudgeEngine } from '../../judge/model.js';

export interface Judge0Deps {
  config: Config;
  judge: Pick<JudgeEngine, 'languages'>;
  judge0: Judge0Runtime;
}

const VERSION = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();

const NOT_UTF8 = 'some attributes for this submission cannot be converted to UTF-8, use base64_encoded=true query parameter';
const NOT_UTF8_MANY = 'some attributes for one or more submissions cannot be converted to UTF-8, use base64_encoded=true query parameter';
/** Judge0 pages by 20 and does not bound per_page; here a page holds at most this many. */
const MAX_PER_PAGE = 100;

const query = (ctx: Context, name: string): string | undefined => {
  const value = ctx.query[name];
  return Array.isArray(value) ? value[value.length - 1] : value;
};

/** Rails' String#to_i: leading digits, else 0. */
const toI = (raw: string): number => {
  const match = /^\s*([+-]?\d+)/.exec(raw);
  return match ? Number(match[1]) : 0;
};

/** Whose share of the queue a create takes: its API key's, else (open mode, the admin token) its address's. */
const clientOf = (ctx: Context): string => {
  const owner = tenantOf(ctx).owner;
  return owner !== undefined ? `key:${owner}` : `address:${ctx.request.ip}`;
};

const clientQueueFull = (config: Config) =>
  rateLimited(
    `this client already has ${config.judge0MaxQueuePerClient} submissions waiting in the queue (POLYKERNEL_JUDGE0_MAX_QUEUE_PER_CLIENT); wait for some to be judged before sending more`,
  );

export function judge0Router(deps: Judge0Deps): Router {
  const { config } = deps;
  const { submissions } = deps.judge0;
  const languages = new LanguageCatalog(deps.judge);
  const router = new Router();
  const statusIds = config.judge0StatusIds;

  const base64Of = (ctx: Context) => query(ctx, 'base64_encoded') === 'true';
  const fieldsOf = (ctx: Context): { fields: Field[]; explicit: boolean } => {
    const raw = query(ctx, 'fields');
    const parsed = parseFields(raw);
    if ('invalid' in parsed) throw invalidInput(`invalid fields: [${parsed.invalid.map((f) => f.slice(0, 60)).join(', ')}]`);
    return { fields: parsed.fields, explicit: raw !== undefined && raw !== '' };
  };
  const render = (record: JobRecord<Judge0Meta>, fields: { fields: Field[]; explicit: boolean }, base64: boolean, langs: Judge0Language[]) =>
    renderSubmission(record, { fields: fieldsFor(record, fields.fields, fields.explicit), base64, statusIds, languages: langs });

  /** The record when this caller may see it; otherwise Judge0's 404 for an unknown token. */
  const visible = async (ctx: Context, token: string): Promise<JobRecord<Judge0Meta>> => {
    const record = UUID_PATTERN.test(token) ? await submissions.get(token.toLowerCase()) : undefined;
    if (!record || !tenantOf(ctx).sees(record.owner)) throw notFound(`submission with token ${token.slice(0, 60)} doesn't exist`);
    return record;
  };

  const parseContext = async (ctx: Context) => ({
    base64: base64Of(ctx),
    config,
    languages: await languages.list(),
    callbackTargets: deps.judge0.callbackTargets,
  });

  router.post('/submissions', async (ctx) => {
    const wait = query(ctx, 'wait') === 'true';
    if (wait && !config.judge0EnableWait) throw invalidInput('wait not allowed');
    // The room is held before the body is read: a full queue costs a refused request nothing.
    const client = clientOf(ctx);
    if (!submissions.clientHasRoomFor(client, 1)) throw clientQueueFull(config);
    const release = submissions.reserve(client);
    if (!release) throw unavailable('queue is full');
    let record: JobRecord<Judge0Meta> | undefined;
    let fields: ReturnType<typeof fieldsOf>;
    let context: Awaited<ReturnType<typeof parseContext>>;
    try {
      fields = fieldsOf(ctx);
      const body = await readJsonBody(ctx, config.maxBodyBytes);
      context = await parseContext(ctx);
      const parsed = parseSubmission(body, context);
      if (!parsed.ok) throw unprocessable(parsed.errors);
      [record] = await submissions.submit([{ submission: parsed.submission, meta: parsed.meta, owner: tenantOf(ctx).owner }], 1, client);
    } finally {
      release();
    }
    ctx.status = 201;
    if (!wait) {
      ctx.body = { token: record!.token };
      return;
    }
    const done = (await submissions.waitFor(record!.token, config.judge0WaitTimeoutMs)) ?? record!;
    try {
      ctx.body = render(done, fields, context.base64, context.languages);
    } catch (error) {
      if (!(error instanceof NotUtf8)) throw error;
      ctx.body = { token: record!.token, error: NOT_UTF8 };
    }
  });

  router.post('/submissions/batch', async (ctx) => {
    const body = (await readJsonBody(ctx, config.maxBodyBytes)) as { submissions?: unknown } | null;
    const list = body && typeof body === 'object' ? body.submissions : undefined;
    if (list !== undefined && !Array.isArray(list)) throw invalidInput('submissions must be an array of submissions');
    const count = Array.isArray(list) ? list.length : 0;
    if (count > config.judge0MaxBatchSize) throw invalidInput(`number of submissions in a batch should be less than or equal to ${config.judge0MaxBatchSize}`);
    if (count === 0) throw invalidInput('there should be at least one submission in a batch');
    const client = clientOf(ctx);
    if (!submissions.clientHasRoomFor(client, count)) throw clientQueueFull(config);
    if (!submissions.hasRoomFor(count)) throw unavailable('queue is full');
    const context = await parseContext(ctx);
    const parsed = (list as unknown[]).map((item) => parseSubmission(item, context));
    const owner = tenantOf(ctx).owner;
    const valid = parsed.flatMap((p) => (p.ok ? [{ submission: p.submission, meta: p.meta, owner }] : []));
    const records = valid.length ? await submissions.submit(valid, 0, client) : [];
    let next = 0;
    ctx.status = valid.length ? 201 : 422;
    ctx.body = parsed.map((p) => (p.ok ? { token: records[next++]!.token } : p.errors));
  });

  router.get('/submissions/batch', async (ctx) => {
    const fields = fieldsOf(ctx);
    const header = ctx.get('tokens');
    const tokens = (header || query(ctx, 'tokens') || '').trim().split(',').filter((t) => t !== '');
    if (tokens.length > config.judge0MaxBatchSize) throw invalidInput(`number of submissions in a batch should be less than or equal to ${config.judge0MaxBatchSize}`);
    if (tokens.length === 0) throw invalidInput('there should be at least one submission in a batch');
    const base64 = base64Of(ctx);
    const langs = await languages.list();
    const tenant = tenantOf(ctx);
    const records = await submissions.getMany(tokens.map((t) => (UUID_PATTERN.test(t) ? t.toLowerCase() : '')));
    try {
      ctx.body = { submissions: records.map((r) => (r && tenant.sees(r.owner) ? render(r, fields, base64, langs) : null)) };
    } catch (error) {
      if (!(error instanceof NotUtf8)) throw error;
      throw invalidInput(NOT_UTF8_MANY);
    }
  });

  router.get('/submissions', async (ctx) => {
    const tenant = tenantOf(ctx);
    const authorization = judge0Authorization(config, tenant, ctx.headers, ctx.URL);
    if (authorization === 'none') throw forbidden('listing submissions needs authorization: send the X-Auth-User header');
    const fields = fieldsOf(ctx);
    const pageRaw = query(ctx, 'page');
    const perPageRaw = query(ctx, 'per_page');
    const page = pageRaw === undefined ? 1 : toI(pageRaw);
    const perPage = perPageRaw === undefined ? 20 : toI(perPageRaw);
    if (page <= 0) throw invalidInput(`invalid page: ${page}`);
    if (perPage < 0) throw invalidInput(`invalid per_page: ${perPage}`);
    if (perPage > MAX_PER_PAGE) throw invalidInput(`invalid per_page: ${perPage} (at most ${MAX_PER_PAGE} here)`);
    const sees = authorization === 'all' ? () => true : (owner: string | undefined) => tenant.sees(owner);
    const { records, total } = await submissions.page(sees, page, perPage);
    const base64 = base64Of(ctx);
    const langs = await languages.list();
    const totalPages = perPage === 0 ? 0 : Math.ceil(total / perPage);
    let rendered: Record<string, unknown>[];
    try {
      rendered = records.map((r) => render(r, fields, base64, langs));
    } catch (error) {
      if (!(error instanceof NotUtf8)) throw error;
      throw invalidInput(NOT_UTF8_MANY);
    }
    ctx.body = {
      submissions: rendered,
      meta: {
        current_page: page,
        next_page: page < totalPages ? page + 1 : null,
        prev_page: page > 1 ? page - 1 : null,
        total_pages: totalPages,
        total_count: total,
      },
    };
  });

  router.get('/submissions/:token', async (ctx) => {
    const fields = fieldsOf(ctx);
    const record = await visible(ctx, ctx.params.token!);
    try {
      ctx.body = render(record, fields, base64Of(ctx), await languages.list());
    } catch (error) {
      if (!(error instanceof NotUtf8)) throw error;
      throw invalidInput(NOT_UTF8);
    }
  });

  router.delete('/submissions/:token', async (ctx) => {
    const tenant = tenantOf(ctx);
    if (judge0Authorization(config, tenant, ctx.headers, ctx.URL) === 'none') throw forbidden('deleting a submission needs authorization: send the X-Auth-User header');
    if (!config.judge0EnableSubmissionDelete) throw invalidInput('delete not allowed');
    const fields = fieldsOf(ctx);
    const record = await visible(ctx, ctx.params.token!);
    if (record.state !== 'finished') {
      const status = record.state === 'queued' ? '1 (In Queue)' : '2 (Processing)';
      throw invalidInput(`submission cannot be deleted because its status is ${status}`);
    }
    await submissions.delete(record.token);
    // As Judge0: always Base64, so that whatever the submission holds can be sent back.
    ctx.body = render(record, fields, true, await languages.list());
  });

  router.get('/languages', async (ctx) => {
    ctx.body = (await languages.list()).map(({ id, name }) => ({ id, name }));
  });

  router.get('/languages/all', async (ctx) => {
    ctx.body = (await languages.list()).map(({ id, name, is_archived }) => ({ id, name, is_archived }));
  });

  router.get('/languages/:id', async (ctx) => {
    const raw = ctx.params.id!;
    const language = /^\d{1,9}$/.test(raw) ? await languages.byId(Number(raw)) : undefined;
    if (!language) throw notFound(`language with id ${raw.slice(0, 40)} doesn't exist`);
    const { id, name, is_archived, source_file, compile_cmd, run_cmd } = language;
    ctx.body = { id, name, is_archived, source_file, compile_cmd, run_cmd };
  });

  router.get('/statuses', (ctx) => {
    ctx.body = listedStatuses(statusIds);
  });

  router.get('/config_info', (ctx) => {
    ctx.body = configInfo(config);
  });

  router.get('/system_info', (ctx) => {
    ctx.body = systemInfo();
  });

  router.get('/about', (ctx) => {
    ctx.body = {
      version: VERSION,
      homepage: null,
      source_code: null,
      maintainer: null,
      // Which API this is: Judge0's, served by polykernel's judge engine.
      compatible_with: 'Judge0 CE 1.13',
    };
  });

  router.get('/version', (ctx) => {
    ctx.type = 'text/plain';
    ctx.body = VERSION;
  });

  router.get('/workers', (ctx) => {
    const stats = submissions.stats();
    ctx.body = [
      {
        queue: 'polykernel',
        size: stats.waiting,
        available: stats.workers,
        idle: Math.max(0, stats.workers - stats.running),
        working: stats.running,
        paused: 0,
        failed: 0,
      },
    ];
  });

  router.post('/authenticate', (ctx) => {
    // The auth middleware has let the request through: its token is valid, or none is needed.
    ctx.status = 200;
    ctx.body = '';
  });

  router.post('/authorize', (ctx) => {
    if (judge0Authorization(config, tenantOf(ctx), ctx.headers, ctx.URL) !== 'all') throw forbidden('not authorized: send the X-Auth-User token');
    ctx.status = 200;
    ctx.body = '';
  });

  return router;
}

/** Judge0's /config_info, with this server's values (seconds and KB, as Judge0's units). */
export function configInfo(config: Config): Record<string, unknown> {
  const d = config.judgeLimits;
  const c = config.judgeLimitCaps;
  return {
    maintenance_mode: false,
    enable_wait_result: config.judge0EnableWait,
    enable_compiler_options: true,
    allowed_languages_for_compile_options: [],
    enable_command_line_arguments: true,
    enable_submission_delete: config.judge0EnableSubmissionDelete,
    enable_callbacks: config.judge0EnableCallbacks,
    callbacks_max_tries: config.judge0CallbackMaxTries,
    callbacks_timeout: config.judge0CallbackTimeoutMs / 1000,
    enable_additional_files: config.judge0EnableAdditionalFiles,
    max_queue_size: config.judge0MaxQueueSize,
    cpu_time_limit: d.cpuTimeMs / 1000,
    max_cpu_time_limit: c.cpuTimeMs / 1000,
    cpu_extra_time: d.extraCpuTimeMs / 1000,
    max_cpu_extra_time: c.extraCpuTimeMs / 1000,
    wall_time_limit: d.wallTimeMs / 1000,
    max_wall_time_limit: c.wallTimeMs / 1000,
    memory_limit: d.memoryKB,
    max_memory_limit: c.memoryKB,
    stack_limit: d.stackKB,
    max_stack_limit: c.stackKB,
    max_processes_and_or_threads: d.maxProcesses,
    max_max_processes_and_or_threads: c.maxProcesses,
    enable_per_process_and_thread_time_limit: false,
    allow_enable_per_process_and_thread_time_limit: false,
    enable_per_process_and_thread_memory_limit: false,
    allow_enable_per_process_and_thread_memory_limit: false,
    max_file_size: d.maxFileSizeKB,
    max_max_file_size: c.maxFileSizeKB,
    number_of_runs: 1,
    max_number_of_runs: config.judgeMaxRunsPerTest,
    redirect_stderr_to_stdout: false,
    max_extract_size: config.judge0MaxExtractSizeKB,
    enable_batched_submissions: true,
    max_submission_batch_size: config.judge0MaxBatchSize,
    submission_cache_duration: 0,
    use_docs_as_homepage: false,
    allow_enable_network: false,
    enable_network: false,
    // Beyond Judge0.
    max_output_size: d.maxOutputBytes,
    max_max_output_size: c.maxOutputBytes,
    max_test_cases: config.judgeMaxTests,
  };
}

/** Judge0 answers `lscpu` and `free -h` as key/value pairs; the same keys, from the OS. */
function systemInfo(): Record<string, string> {
  const cpus = os.cpus();
  const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(1)}Gi`;
  return {
    Architecture: os.machine(),
    'Byte Order': os.endianness() === 'LE' ? 'Little Endian' : 'Big Endian',
    'CPU(s)': String(cpus.length),
    'Model name': cpus[0]?.model ?? 'unknown',
    'CPU MHz': String(cpus[0]?.speed ?? 0),
    Mem: gib(os.totalmem()),
    Kernel: `${os.type()} ${os.release()}`,
  };
}

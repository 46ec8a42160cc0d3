/**
 * The v1 files routes (Backend.AI's session upload, list_files and download, under /v1/kernel/:id): thin
 * handlers over src/files/work-dir-files.ts. Where this differs from Backend.AI: `files` in a listing is
 * an array (Backend.AI sends a JSON string), download is GET as well as POST and answers one file as its
 * bytes and several as one tar archive (Backend.AI: a multipart answer of tar archives), and the caps are
 * options rather than Backend.AI's fixed 20 files of 1 MiB.
 */
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { Config } from '../../config/index.js';
import { DomainError, invalidInput } from '../../errors.js';
import type { KernelManager } from '../../kernels/kernel-manager.js';
import { tenantOf } from '../../auth/tenant.js';
import { WorkDirFiles, type UploadPart } from '../../files/work-dir-files.js';
import { MultipartReader, multipartBoundary } from '../multipart.js';
import { assertKernelId } from '../validate.js';

export interface FileRoutesDeps {
  config: Config;
  kernels: Pick<KernelManager, 'handle'>;
}

function uploadTooLarge(limit: number): DomainError {
  return new DomainError('payload_too_large', `the upload request is larger than ${limit} bytes (POLYKERNEL_UPLOAD_MAX_BYTES); nothing was written`);
}

/** The request body, refused (413) past `limit` bytes as it arrives. */
async function* capped(req: AsyncIterable<Buffer>, limit: number): AsyncGenerator<Buffer> {
  let size = 0;
  const chunks = req[Symbol.asyncIterator]();
  for (;;) {
    let next: IteratorResult<Buffer>;
    try {
      next = await chunks.next();
    } catch {
      // The client went away mid-body: nobody reads the answer, and it is not a fault of the service.
      throw invalidInput('the upload was cut short; nothing was written');
    }
    if (next.done) return;
    size += next.value.length;
    if (size > limit) throw uploadTooLarge(limit);
    yield next.value;
  }
}

/** The values of a repeated query parameter. */
function queryValues(ctx: Context, ...names: string[]): string[] {
  return names.flatMap((name) => {
    const value = ctx.query[name];
    return value === undefined ? [] : Array.isArray(value) ? value : [value];
  });
}

/** RFC 6266: an ASCII fallback and the UTF-8 name. */
function attachment(name: string): string {
  const base = name.slice(name.lastIndexOf('/') + 1);
  const ascii = base.replace(/[^\x20-\x7e]|["\\%]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(base)}`;
}

export function mountFileRoutes(router: Router, deps: FileRoutesDeps): void {
  const files = new WorkDirFiles(deps.config);
  const kernelOf = async (ctx: Context) => {
    const kernelId = assertKernelId(ctx.params.id!);
    await tenantOf(ctx).mayExecute(kernelId);
    return deps.kernels.handle(kernelId);
  };
  /**
   * A transfer that failed because its kernel was deleted meanwhile (its container killed under the helper,
   * the engine's exec refused while the container is being removed) answers what any later request does:
   * the kernel's 404. The kernel is unregistered before its container goes, so once the transfer has failed
   * `handle` already says so; a kernel still there keeps the transfer's own error.
   */
  const unlessKernelGone = async <T>(ctx: Context, transfer: () => Promise<T>): Promise<T> => {
    try {
      return await transfer();
    } catch (error) {
      await deps.kernels.handle(ctx.params.id!);
      throw error;
    }
  };

  router.post('/:id/upload', async (ctx) => {
    const kernel = await kernelOf(ctx);
    const boundary = multipartBoundary(ctx.get('content-type'));
    const limit = deps.config.uploadMaxBytes;
    try {
      if (Number(ctx.get('content-length') || 0) > limit) throw uploadTooLarge(limit);
      const reader = new MultipartReader(capped(ctx.req, limit), boundary);
      async function* parts(): AsyncGenerator<UploadPart> {
        for (let index = 0; ; index++) {
          const part = await reader.next();
          if (!part) return;
          if (part.filename === undefined) {
            throw invalidInput(`part ${index}${part.field ? ` ("${part.field.slice(0, 40)}")` : ''} has no filename: every part is a file, named by its filename (curl -F "file=@local.txt;filename=dir/name.txt")`);
          }
          yield { name: part.filename, data: reader.body() };
        }
      }
      await unlessKernelGone(ctx, () => files.upload(kernel, parts()));
    } catch (error) {
      // Answered before the whole body was read: the connection closes after the answer, which the client
      // reads instead of a reset while it is still sending.
      if (!ctx.req.readableEnded) {
        ctx.set('Connection', 'close');
        ctx.req.pause();
      }
      throw error;
    }
    ctx.status = 204;
  });

  router.get('/:id/files', async (ctx) => {
    const kernel = await kernelOf(ctx);
    const path = queryValues(ctx, 'path');
    if (path.length > 1) throw invalidInput('path is given more than once');
    ctx.body = await unlessKernelGone(ctx, () => files.list(kernel, path[0] ?? ''));
  });

  // GET as a browser link would, POST as Backend.AI's client sends it; `files` is Backend.AI's name.
  const download = async (ctx: Context) => {
    const kernel = await kernelOf(ctx);
    const names = queryValues(ctx, 'file', 'files');
    const result = await unlessKernelGone(ctx, () => files.download(kernel, names));
    ctx.status = 200;
    if (result.kind === 'file') {
      ctx.type = 'application/octet-stream';
      ctx.set('Content-Disposition', attachment(names[0]!));
    } else {
      ctx.type = 'application/x-tar';
      ctx.set('Content-Disposition', attachment('files.tar'));
    }
    // Koa destroys a stream body when the answer ends (a HEAD request's at once, a client gone mid-way),
    // and that stops the helper.
    ctx.body = result.body;
    ctx.length = result.length;
  };
  router.get('/:id/download', download);
  router.post('/:id/download', download);
}

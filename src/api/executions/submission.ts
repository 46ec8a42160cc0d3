/**
 * The edge of /api/executions: request bodies (URL-encoded form as nbexec documents it, or JSON) into flat
 * string fields, and POST /api/executions' fields into an ExecutionRequest. Every field that is not one of
 * nbexec's own is a notebook parameter, kept as a string.
 */
import type { Context } from 'koa';
import { invalidInput, unsupportedMediaType } from '../../errors.js';
import type { ExecutionRequest } from '../../executions/model.js';
import { readRawBody } from '../http.js';

const RESERVED = ['notebook', 'output_path', 'overwrite', 'jupyter_kernel', 'cell_timeout'] as const;
const MAX_PARAMS = 1000;


function scalar(name: string, value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw invalidInput(`${name.slice(0, 64)} must be a string, number or boolean`);
}

/** Parses a body into fields: a form (the documented way), JSON, or nothing at all. */
export function parseFields(raw: string, contentType: string | undefined): Record<string, string> {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  const looksJson = raw.trimStart().startsWith('{');
  if (type === 'application/json' || type.endsWith('+json') || (type === '' && looksJson)) {
    let body: unknown;
    try {
      body = raw.trim() === '' ? {} : JSON.parse(raw);
    } catch (error) {
      throw invalidInput(`request body is not valid JSON: ${(error as Error).message}`);
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw invalidInput('request body must be a JSON object');
    const entries = Object.entries(body).filter(([, value]) => value !== null && value !== undefined);
    return Object.fromEntries(entries.map(([name, value]) => [name, scalar(name, value)]));
  }
  if (type === 'application/x-www-form-urlencoded' || type === '' || type === 'text/plain') {
    // A repeated field keeps its last value, as tornado's get_argument does.
    return Object.fromEntries(new URLSearchParams(raw));
  }
  throw unsupportedMediaType(`send application/x-www-form-urlencoded or application/json, not ${type.slice(0, 80)}`);
}

export async function readFields(ctx: Context, limit: number): Promise<Record<string, string>> {
  return parseFields(await readRawBody(ctx, limit), ctx.get('content-type') || undefined);
}

function parseBoolean(name: string, raw: string): boolean {
  if (/^(true|1|yes|on)$/i.test(raw)) return true;
  if (/^(false|0|no|off|)$/i.test(raw)) return false;
  throw invalidInput(`${name} must be true or false, got "${raw.slice(0, 40)}"`);
}

export function toExecutionRequest(fields: Record<string, string>): ExecutionRequest {
  const notebook = fields.notebook;
  if (notebook === undefined || notebook === '') throw invalidInput('notebook is required');
  let cellTimeoutS: number | undefined;
  if (fields.cell_timeout !== undefined && fields.cell_timeout !== '') {
    cellTimeoutS = Number(fields.cell_timeout);
    if (!/^\s*\d+\s*$/.test(fields.cell_timeout) || !Number.isSafeInteger(cellTimeoutS) || cellTimeoutS < 1) {
      throw invalidInput(`cell_timeout must be a whole number of seconds >= 1, got "${fields.cell_timeout.slice(0, 40)}"`);
    }
  }
  const jupyterKernel = fields.jupyter_kernel || undefined;
  if (jupyterKernel !== undefined && jupyterKernel.length > 64) throw invalidInput('jupyter_kernel is too long');
  const params = Object.fromEntries(Object.entries(fields).filter(([name]) => !(RESERVED as readonly string[]).includes(name)));
  if (Object.keys(params).length > MAX_PARAMS) throw invalidInput(`too many notebook parameters (at most ${MAX_PARAMS})`);
  return {
    notebook,
    outputPath: fields.output_path || undefined,
    overwrite: fields.overwrite === undefined ? false : parseBoolean('overwrite', fields.overwrite),
    jupyterKernel,
    cellTimeoutS,
    params,
  };
}

/**
 * The v1 (Backend.AI) kernel API as the tests drive it: create a kernel, and run a query or batch request
 * to its end by answering "continued" and "build-finished" with "continue". Works over any client with
 * the shape of `Call` (`TestService.call` of the in-process service, or `HttpClient.call` of a service process).
 */
import type { Call } from './http-client.js';
import { eventually, sleep } from './wait.js';

export interface V1Result {
  runId: string;
  status: string;
  exitCode: number | null;
  console: [string, unknown][];
}

export interface RunOutcome {
  /** The final status: finished, exec-timeout, or an HTTP error as `http <status>`. */
  status: string;
  exitCode: number | null;
  /** The console items of every answer, in order. */
  console: [string, unknown][];
  /** stdout and stderr items joined, in order. */
  text: string;
  /** Every answer's result, the "continued" and "build-finished" ones included. */
  results: V1Result[];
}

/** Creates a new kernel (201) and returns its id; anything else is thrown, with the answer. */
export async function createKernel(call: Call, body: Record<string, unknown> = { lang: 'python3' }): Promise<string> {
  const { status, body: created } = await call('POST', '/v1/kernel/create', body);
  if (status !== 201) throw new Error(`create ${JSON.stringify(body)} answered ${status}: ${JSON.stringify(created)}`);
  return created.kernelId as string;
}

/**
 * Runs a v1 query or batch request to its end, continuing at most `maxCalls` times in all (the outcome is
 * then the last "continued" answer). An HTTP error ends the run as `http <status>` with its body as text.
 */
export async function runToEnd(call: Call, kernelId: string, body: Record<string, unknown>, maxCalls = 200): Promise<RunOutcome> {
  const results: V1Result[] = [];
  const items: [string, unknown][] = [];
  let response = await call('POST', `/v1/kernel/${kernelId}`, body);
  for (let calls = 1; ; calls++) {
    if (response.status !== 200) {
      return { status: `http ${response.status}`, exitCode: null, console: items, text: JSON.stringify(response.body), results };
    }
    const result = response.body.result as V1Result;
    results.push(result);
    items.push(...result.console);
    if ((result.status !== 'continued' && result.status !== 'build-finished') || calls >= maxCalls) {
      const text = items.filter(([kind]) => kind === 'stdout' || kind === 'stderr').map(([, value]) => value).join('');
      return { status: result.status, exitCode: result.exitCode, console: items, text, results };
    }
    response = await call('POST', `/v1/kernel/${kernelId}`, { mode: 'continue', runId: result.runId });
  }
}

/** A run that every call of must be answered 200, continued for as long as it takes; an HTTP error is thrown. */
export async function runOrThrow(call: Call, kernelId: string, body: Record<string, unknown>): Promise<RunOutcome> {
  const outcome = await runToEnd(call, kernelId, body, Infinity);
  if (outcome.status.startsWith('http ')) throw new Error(`${body.mode} on ${kernelId} answered ${outcome.status}: ${outcome.text}`);
  return outcome;
}

export const query = (call: Call, kernelId: string, code: string) => runToEnd(call, kernelId, { mode: 'query', code });

/** The output of a query that must finish (set-up cells of a test); anything else is thrown. */
export async function queryText(call: Call, kernelId: string, code: string): Promise<string> {
  const outcome = await query(call, kernelId, code);
  if (outcome.status !== 'finished') throw new Error(`query ${outcome.status}: ${outcome.text}`);
  return outcome.text;
}
export const batch = (call: Call, kernelId: string, exec: string) => runToEnd(call, kernelId, { mode: 'batch', options: { exec } });

/** Polls GET /v1/kernel/:id until the kernel says it is busy, for about 5 s at the most (then it just returns). */
export async function whenBusy(call: Call, kernelId: string): Promise<void> {
  for (let i = 0; i < 100 && (await call('GET', `/v1/kernel/${kernelId}`)).body?.state !== 'busy'; i++) await sleep(50);
}

/** Polls GET /v1/kernel/:id until it answers 404 or `timeoutMs` passes; returns whether it did. */
export async function kernelGone(call: Call, kernelId: string, timeoutMs: number, everyMs?: number): Promise<boolean> {
  return eventually(async () => (await call('GET', `/v1/kernel/${kernelId}`)).status === 404, timeoutMs, everyMs);
}

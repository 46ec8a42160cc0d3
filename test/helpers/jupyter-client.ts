/**
 * The Jupyter REST API as the tests drive it: start a kernel, and the address of its channels WebSocket.
 * Works over any `Call` (`TestService.call`, `HttpClient.call`, or a client with a key of its own).
 */
import type { Call } from './http-client.js';

/** Starts a kernel through POST /api/kernels (201) and returns its id; anything else is thrown, with the answer. */
export async function startKernel(call: Call, body: Record<string, unknown> = { name: 'python3' }, headers?: Record<string, string>): Promise<string> {
  const { status, body: model } = await call('POST', '/api/kernels', body, headers);
  if (status !== 201) throw new Error(`POST /api/kernels ${JSON.stringify(body)} answered ${status}: ${JSON.stringify(model)}`);
  return model.id as string;
}

/** The channels WebSocket of a kernel on the server at `httpUrl` (http://host:port). */
export const channelsUrl = (httpUrl: string, kernelId: string) => `${httpUrl.replace('http', 'ws')}/api/kernels/${kernelId}/channels`;

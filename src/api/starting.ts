/**
 * What the service answers between listening and being ready: every request a 503 in its API's dialect
 * that says what the start waits for (Redis, most often: the service waits for it instead of exiting), and
 * every WebSocket handshake a plain 503. Nothing else is looked at, so nothing is told but the wait.
 */
import type { Duplex } from 'node:stream';
import Koa from 'koa';
import { unavailable } from '../errors.js';
import { jupyterErrorBody } from './error-bodies.js';
import { errorBoundary } from './http.js';
import type { Logger } from '../logger.js';

/** `waitingFor()` names what the start waits for, e.g. "the state store (Redis) to answer". */
export function startingApp(log: Logger, waitingFor: () => string): Koa {
  const app = new Koa();
  app.silent = true;
  app.use(errorBoundary(log));
  app.use(async (ctx) => {
    ctx.set('Retry-After', '2');
    throw unavailable(`polykernel is starting: waiting for ${waitingFor()}; try again shortly`);
  });
  return app;
}

export function refuseUpgradeWhileStarting(socket: Duplex, waitingFor: string): void {
  const body = JSON.stringify(jupyterErrorBody({ status: 503, message: `polykernel is starting: waiting for ${waitingFor}; try again shortly` }));
  socket.end(
    `HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nRetry-After: 2\r\nConnection: close\r\n\r\n${body}`,
  );
}

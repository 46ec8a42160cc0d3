/**
 * The end of a WebSocket client's handshake: resolves once the socket is open; a refused handshake rejects
 * with an error carrying the HTTP status and body the service answered (tests assert on both).
 */
import type WebSocket from 'ws';

export function handshake(ws: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c));
      res.on('end', () => reject(Object.assign(new Error(`handshake answered ${res.statusCode}: ${body}`), { status: res.statusCode, body })));
    });
    ws.once('error', reject);
  });
}

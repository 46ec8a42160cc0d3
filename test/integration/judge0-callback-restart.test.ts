/**
 * A Judge0 callback that had not got through when the service stopped is delivered after its next start:
 * a real service process with a Redis store judges a submission with callback_url, the receiver refuses the
 * first try, the service is stopped (SIGTERM) during the backoff, the receiver then accepts, and the
 * service started again with the same instance delivers the callback exactly once.
 */
import test from 'ava';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { redisUrl } from '../helpers/service.js';
import { startServiceProcess, type ServiceProcess } from '../helpers/service-process.js';
import { eventually, sleep } from '../helpers/wait.js';
import { removeSubmissions } from './judge0-cleanup.js';
import { PYTHON } from './judge0-helpers.js';

let accepting = false;
const refused: string[] = [];
const delivered: { token: string; stdout: string }[] = [];
let receiver: http.Server;
let second: ServiceProcess | undefined;
let instance = '';

test.before(async () => {
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
      if (!accepting) {
        refused.push(body.token);
        res.writeHead(503).end();
        return;
      }
      delivered.push({ token: body.token, stdout: Buffer.from(body.stdout ?? '', 'base64').toString() });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
});

test.after.always(async () => {
  await second?.stop();
  await removeSubmissions(redisUrl, instance);
  receiver?.close();
});

test('a callback refused before a stop is delivered once after the next start', async (t) => {
  t.timeout(240_000);
  const env = {
    REDIS_URL: redisUrl,
    POLYKERNEL_JUDGE0_CALLBACK_HOSTS: '127.0.0.1',
    POLYKERNEL_JUDGE0_CALLBACKS_MAX_TRIES: '5',
    // Long enough that the stop comes during the backoff, before the second try.
    POLYKERNEL_JUDGE0_CALLBACKS_BACKOFF_MS: '20000',
  };
  const first = await startServiceProcess({ label: 'judge0-callback', env });
  instance = first.instance;
  const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  const created = await first.http.call('POST', '/submissions', { language_id: PYTHON, source_code: 'print("called back")', callback_url: url });
  t.is(created.status, 201, JSON.stringify(created.body));
  const token = created.body.token as string;
  t.true(await eventually(() => refused.includes(token), 120_000, 100), 'the first try reached the receiver and was refused');
  await first.stop();
  t.deepEqual(delivered, [], 'nothing was delivered before the stop');

  accepting = true;
  second = await startServiceProcess({ label: 'judge0-callback', instance, env });
  t.true(await eventually(() => delivered.length > 0, 60_000, 100), 'the callback was delivered after the restart');
  // A second delivery (the entry not cleared, or sent twice) would come within this.
  await sleep(5000);
  t.deepEqual(delivered, [{ token, stdout: 'called back\n' }]);
  t.log(`refused tries before the stop: ${refused.length}; deliveries after the restart: ${delivered.length}`);
});

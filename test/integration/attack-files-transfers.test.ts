/**
 * Attacks on v1 file transfers while they run: a download of a file the kernel's code grows and shrinks
 * as it is read (the answer is exactly its Content-Length, never more, never a hang), and an upload that
 * never finishes (slowloris multipart: it is cut at POLYKERNEL_REQUEST_TIMEOUT_MS, its helper ends, and
 * nothing of it lands in the work directory).
 */
import test from 'ava';
import net from 'node:net';
import { startTestService, type TestService } from '../helpers/service.js';
import { createKernel, queryText } from '../helpers/v1-client.js';
import { sleep } from '../helpers/wait.js';

let svc: TestService;

test.before(async () => {
  svc = await startTestService({ flushWindowMs: 20_000, requestTimeoutMs: 4000, headersTimeoutMs: 4000, filesTimeoutMs: 8000 });
});

test.after.always(async () => {
  await svc?.stop();
});

const py = (id: string, code: string) => queryText(svc.call, id, code);

test('a file the kernel grows and truncates while it is downloaded: every answer is exactly its Content-Length, or a clear error', async (t) => {
  t.timeout(120_000);
  const id = await createKernel(svc.call);
  // A background process of the kernel's user rewrites the file between 0 and 3 MiB, over and over.
  await py(
    id,
    [
      'import subprocess, sys',
      'loop = "import os, time\\nend = time.time() + 40\\nwhile time.time() < end:\\n    with open(\'churn.bin\', \'r+b\' if os.path.exists(\'churn.bin\') else \'wb\') as f:\\n        f.truncate(0)\\n        for i in range(48): f.write(b\'g\' * 65536)\\n"',
      'subprocess.Popen([sys.executable, "-c", loop], start_new_session=True)',
      'import time; time.sleep(0.5)',
    ].join('\n'),
  );
  const outcomes = new Map<string, number>();
  for (let i = 0; i < 30; i++) {
    const response = await fetch(`${svc.url}/v1/kernel/${id}/download?file=churn.bin`, { signal: AbortSignal.timeout(30_000) });
    const declared = response.headers.get('content-length');
    let key: string;
    try {
      const bytes = Buffer.from(await response.arrayBuffer());
      if (response.status !== 200) key = `${response.status}`;
      else if (String(bytes.length) !== declared) key = `length ${bytes.length} != ${declared}`;
      else if (bytes.some((b) => b !== 0x67 && b !== 0)) key = 'foreign bytes';
      else key = 'whole';
    } catch (error) {
      // The answer cut short is how a broken transfer shows once the bytes have begun; never a hang.
      key = `cut: ${(error as Error).message.slice(0, 60)}`;
    }
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  }
  t.log(`outcomes: ${JSON.stringify([...outcomes])}`);
  t.true((outcomes.get('whole') ?? 0) >= 25, 'the downloads come out at their announced length');
  t.false([...outcomes.keys()].some((key) => key.startsWith('length') || key === 'foreign bytes' || key === '500'));
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

test('an upload that never finishes is cut at the request timeout; its helper ends and nothing is written', async (t) => {
  t.timeout(90_000);
  const id = await createKernel(svc.call);
  const port = Number(new URL(svc.url).port);
  const boundary = 'slowloris-boundary';
  const sockets: net.Socket[] = [];
  const closed: Promise<number>[] = [];
  for (let i = 0; i < 5; i++) {
    const socket = net.connect(port, '127.0.0.1');
    sockets.push(socket);
    const started = Date.now();
    closed.push(new Promise((resolve) => socket.once('close', () => resolve(Date.now() - started))));
    socket.on('error', () => undefined);
    socket.write(
      `POST /v1/kernel/${id}/upload HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: 10000000\r\n\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow-${i}.txt"\r\n\r\n`,
    );
  }
  // A byte now and then: the body never ends.
  const drip = setInterval(() => {
    for (const socket of sockets) if (!socket.destroyed) socket.write('x');
  }, 500);
  const times = await Promise.all(closed.map((p) => Promise.race([p, sleep(30_000).then(() => -1)])));
  clearInterval(drip);
  t.log(`connections closed after ${times.join(', ')} ms`);
  t.true(times.every((ms) => ms > 0), 'every slow upload is cut by the service');
  await sleep(1000);
  const left = await py(
    id,
    'import os\nhelpers = sum(1 for p in os.listdir("/proc") if p.isdigit() and open(f"/proc/{p}/cmdline","rb").read().startswith(b"/opt/polykernel/files"))\nprint(helpers, sorted(os.listdir(".")))',
  );
  t.is(left, '0 []\n', 'no helper runs on, and no file (staged or named) is left');
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

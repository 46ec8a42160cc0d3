/**
 * Attack: kernel code sends the service one ZMQ message of many frames, each under the per-frame limit
 * (60 frames of 15 MB = 900 MB), on iopub and on shell, again and again. The service must drop such a
 * message without ever holding it whole: its RSS (its own process) stays bounded, and the kernel keeps
 * working afterwards.
 */
import test from 'ava';
import { startServiceProcess, type ServiceProcess } from '../helpers/service-process.js';
import { runOrThrow } from '../helpers/v1-client.js';
import { sleep } from '../helpers/wait.js';

/** 900 MB per message, three times on each channel; a dropped message costs at most the message bound. */
const MAX_RSS_GROWTH_KB = 200 * 1024;

let svc: ServiceProcess;

test.before(async () => {
  svc = await startServiceProcess({ label: 'attack-zmq' });
});

test.after.always(async () => {
  await svc?.stop();
});

/** A query continued to its end; an HTTP error on any call is thrown. */
const run = (kernelId: string, code: string) => runOrThrow((method, route, body) => svc.http.call(method, route, body), kernelId, { mode: 'query', code });

for (const channel of ['iopub', 'shell'] as const) {
  test.serial(`kernel code sends 3 messages of 60 frames x 15 MB on ${channel}: the service stays bounded and the kernel usable`, async (t) => {
    t.timeout(120_000);
    const { kernelId } = await svc.http.ok('POST', '/v1/kernel/create', { lang: 'python3', resourceLimits: { maxMem: 1024 * 1024, timeout: 60_000 } });
    t.deepEqual((await run(kernelId, 'print(1)')).console, [['stdout', '1\n']]);
    const baseline = svc.rssKB();
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, svc.rssKB())), 50);
    // The frames share one buffer (copy=False): the kernel itself holds 15 MB, the message is 900 MB.
    // On shell the kernel's ROUTER needs the service's routing id: the one its execute_request came from.
    const sock = channel === 'iopub' ? 'k.iopub_socket' : 'k.shell_stream.socket';
    const prefix = channel === 'iopub' ? '[]' : 'list(k._parent_ident["shell"])';
    const code = [
      'import time',
      'k = get_ipython().kernel',
      'big = b"x" * 15_000_000',
      `sock = ${sock}`,
      `ident = ${prefix}`,
      'for i in range(3):',
      '    sock.send_multipart(ident + [b"<IDS|MSG>", b"sig", b"{}", b"{}", b"{}", b"{}"] + [big] * 54, copy=False)',
      '    time.sleep(1.5)',
      'print("sent")',
    ].join('\n');
    let outcome: any;
    try {
      outcome = await run(kernelId, code);
      await sleep(2000);
    } finally {
      clearInterval(sampler);
    }
    const growth = peak - baseline;
    t.log(`${channel}: outcome ${outcome.status} ${JSON.stringify(outcome.console).slice(0, 200)}`);
    t.log(`${channel}: service RSS baseline ${baseline} KB, peak ${peak} KB, growth ${growth} KB, now ${svc.rssKB()} KB`);
    t.true(growth < MAX_RSS_GROWTH_KB, `the service's RSS grew ${growth} KB`);
    // The kernel is reachable again (the service reconnected after dropping the message).
    const after = await run(kernelId, 'print(6 * 7)');
    t.is(after.status, 'finished');
    t.deepEqual(after.console, [['stdout', '42\n']]);
  });
}

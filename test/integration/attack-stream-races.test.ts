/**
 * Attacks on the v1 streaming socket (src/api/v1/execute-stream.ts) from a client: disconnects timed
 * around the end of a run (the interrupt a departed client causes must not reach the next run, sent after
 * it; and a SIGINT landing between the run's code and its execute_reply, which ipykernel then never sends,
 * must not leave the run pending until its time limit removes the kernel), input frames with no input
 * asked for, and hundreds of sockets on one kernel.
 */
import test from 'ava';
import { startTestService, type TestService } from '../helpers/service.js';
import { createKernel, query } from '../helpers/v1-client.js';
import { StreamClient, streamUrl, textOf } from '../helpers/v1-stream.js';
import { sleep } from '../helpers/wait.js';

let svc: TestService;

test.before(async () => {
  svc = await startTestService({ flushWindowMs: 20_000, wsPingIntervalMs: 0 });
});

test.after.always(async () => {
  await svc?.stop();
});

test.serial('a client that leaves just as its run ends: the run sent right after it is never interrupted', async (t) => {
  t.timeout(120_000);
  const id = await createKernel(svc.call);
  t.is((await query(svc.call, id, 'import time\nprint("warm")')).text, 'warm\n');
  const failures: string[] = [];
  const ROUNDS = 24;
  for (let round = 0; round < ROUNDS; round++) {
    const client = await StreamClient.open(streamUrl(svc.url, id));
    client.send({ mode: 'query', code: 'time.sleep(0.3)' });
    // Around the run's end: a little before, at, or just after the kernel finishes it.
    await sleep(200 + (round % 8) * 25);
    client.close();
    // The next run, sent once the client is gone, on a new socket as a reconnecting REPL does.
    const next = await StreamClient.open(streamUrl(svc.url, id));
    const frames = await next.run({ mode: 'query', code: 'time.sleep(0.4)\nprint("next ran")' });
    next.close();
    const text = textOf(frames);
    if (text !== 'next ran\n') failures.push(`round ${round}: ${JSON.stringify(frames.map((f) => [f.status, f.console, f.msg])).slice(0, 300)}`);
  }
  for (const failure of failures) t.log(failure);
  t.deepEqual(failures, [], `the run sent after the departed client is not interrupted (${failures.length} of ${ROUNDS} were)`);
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

test.serial('input frames with no input asked for: each is an error frame, and none is kept for a later input()', async (t) => {
  t.timeout(60_000);
  const id = await createKernel(svc.call);
  const client = await StreamClient.open(streamUrl(svc.url, id));
  // No run at all.
  const none = await client.error({ mode: 'input', code: 'stray' });
  t.is(none.error?.status, 400);
  // A run that does not ask for input (yet): the stray lines must not answer the input() that comes later.
  client.send({ mode: 'query', code: 'import time\ntime.sleep(0.5)\nprint("got", input("? "))' });
  await sleep(100);
  for (let i = 0; i < 5; i++) client.send({ mode: 'input', code: `stray ${i}` });
  const asked = await client.next((f) => f.status === 'waiting-input', 20_000, 'the input request');
  const strays = client.frames.filter((f) => f.status === 'error').length;
  t.log(`error frames for the stray inputs: ${strays - 1} of 5`);
  client.send({ mode: 'input', code: 'real', runId: asked.runId });
  const end = await client.next((f) => f.status === 'finished', 20_000, 'the end of the run');
  t.regex(textOf(client.frames.slice(client.frames.indexOf(asked))), /got real/, 'input() gets the answer sent after it asked');
  t.truthy(end);
  client.close();
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

test.serial('two hundred sockets on one kernel, each running: a run ends with its output or an error frame saying it was discarded (never an empty finished), and the kernel stays usable', async (t) => {
  t.timeout(120_000);
  const id = await createKernel(svc.call);
  const clients = await Promise.all(Array.from({ length: 200 }, () => StreamClient.open(streamUrl(svc.url, id))));
  const results = await Promise.all(clients.map((client, i) => client.run({ mode: 'query', code: `print(${i})` }, 100_000).catch((error: Error) => error)));
  // Past POLYKERNEL_MAX_RUNS_PER_KERNEL (16) runs held for one kernel, the least recently called is
  // discarded: a socket whose run is waiting in the kernel's queue then hears why, in an error frame.
  const ran = results.filter((frames, i) => !(frames instanceof Error) && textOf(frames) === `${i}\n`).length;
  const errors = new Map<string, number>();
  for (const frames of results) {
    const key = frames instanceof Error ? `no end: ${frames.message.slice(0, 120)}` : textOf(frames) === '' ? `${frames.at(-1)?.status}: ${frames.at(-1)?.msg?.replace(/[0-9a-f-]{36}/g, '<id>')}` : 'ran';
    errors.set(key, (errors.get(key) ?? 0) + 1);
  }
  t.log(`outcomes: ${JSON.stringify([...errors])}`);
  t.true(ran >= 16, 'at least the runs the kernel keeps ran and printed their own number');
  for (const key of errors.keys()) t.regex(key, /^ran$|^error: run <id> was discarded: .*POLYKERNEL_MAX_RUNS_PER_KERNEL/, 'every other socket hears that its run was discarded, and why');
  for (const client of clients) client.close();
  await sleep(500);
  t.is((await query(svc.call, id, 'print("still here")')).text, 'still here\n');
  await svc.call('DELETE', `/v1/kernel/${id}`);
});

/**
 * Stream output of the runner: coalesced, in order across stdout and stderr, an unfinished stdout line held
 * back to become an input prompt, and writers told to pause while a backlog is in flight.
 */
import test from 'ava';
import { StreamPublisher } from '../../src/runner/output.js';

type Sent = [string, string][];
const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('writes within the window become one message per run of a stream, in order', async (t) => {
  const sent: Sent = [];
  const publisher = new StreamPublisher((name, text) => sent.push([name, text]), () => 0, { flushMs: 10 });
  publisher.write('stdout', 'a\n');
  publisher.write('stdout', 'b\n');
  publisher.write('stderr', 'oops\n');
  publisher.write('stdout', 'c\n');
  t.deepEqual(sent, [], 'nothing before the window closes');
  await wait(30);
  t.deepEqual(sent, [['stdout', 'a\nb\n'], ['stderr', 'oops\n'], ['stdout', 'c\n']]);
  publisher.close();
});

test('a large write goes out at once', (t) => {
  const sent: Sent = [];
  const publisher = new StreamPublisher((name, text) => sent.push([name, text]), () => 0, { chunkBytes: 8 });
  publisher.write('stdout', '0123456789\n');
  t.deepEqual(sent, [['stdout', '0123456789\n']]);
  publisher.close();
});

test('an unfinished stdout line waits to become the prompt of an input request', async (t) => {
  const sent: Sent = [];
  const publisher = new StreamPublisher((name, text) => sent.push([name, text]), () => 0, { flushMs: 5, promptHoldMs: 200 });
  publisher.write('stdout', 'intro\nname? ');
  await wait(30);
  t.deepEqual(sent, [['stdout', 'intro\n']]);
  t.is(publisher.takePrompt(), 'name? ');
  publisher.flush();
  t.deepEqual(sent, [['stdout', 'intro\n']], 'the prompt is not sent as output too');
  publisher.close();
});

test('an unfinished line that no read follows is sent after the hold time', async (t) => {
  const sent: Sent = [];
  const publisher = new StreamPublisher((name, text) => sent.push([name, text]), () => 0, { flushMs: 5, promptHoldMs: 40 });
  publisher.write('stdout', 'progress 50%');
  await wait(100);
  t.deepEqual(sent, [['stdout', 'progress 50%']]);
  publisher.close();
});

test('a backlog in flight pauses writers until it drains', async (t) => {
  let inFlight = 100;
  const publisher = new StreamPublisher(() => undefined, () => inFlight, { highWaterBytes: 50, lowWaterBytes: 10 });
  t.false(publisher.write('stdout', 'x'));
  let drained = false;
  publisher.onDrain(() => (drained = true));
  await wait(20);
  t.false(drained);
  inFlight = 0;
  await wait(20);
  t.true(drained);
  publisher.close();
});

/**
 * The link relay's window (src/cluster/link-guard.ts). First what it is for, on real zeromq sockets:
 * libzmq's ZMQ_MAXMSGSIZE bounds each frame, not a multipart message, and CurveZMQ hides the MORE flag
 * from the wire. Then the window byte by byte, and a CurveZMQ DEALER behind a LinkDialer: a message past
 * the bounds is never assembled and its connection is cut; traffic within them passes and is counted to 0.
 */
import test from 'ava';
import net from 'node:net';
import * as zmq from 'zeromq';
import { CURVE_MESSAGE_OVERHEAD, CurveFrameWindow, LinkDialer, payloadBytes } from '../../src/cluster/link-guard.js';
import { LINK_MAX_FRAMES, LINK_MESSAGE_BOUNDS } from '../../src/cluster/link-protocol.js';
import { freePort } from '../helpers/free-port.js';

const within = <T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> =>
  Promise.race([promise, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), ms))]);

test('libzmq ZMQ_MAXMSGSIZE bounds each frame, not a multipart message: three frames of 900 pass a 1000-byte bound', async (t) => {
  const port = await freePort();
  const router = new zmq.Router({ linger: 0, maxMessageSize: 1000 });
  await router.bind(`tcp://127.0.0.1:${port}`);
  const dealer = new zmq.Dealer({ linger: 0 });
  dealer.connect(`tcp://127.0.0.1:${port}`);
  try {
    await dealer.send([Buffer.alloc(900), Buffer.alloc(900), Buffer.alloc(900)]);
    const got = await within(router.receive(), 3000);
    t.not(got, 'timeout');
    t.deepEqual((got as Buffer[]).slice(1).map((f) => f.length), [900, 900, 900], 'a 2,700-byte message passed a 1,000-byte ZMQ_MAXMSGSIZE');
    await dealer.send([Buffer.alloc(1100)]);
    t.is(await within(router.receive(), 1000), 'timeout', 'one frame past it is refused');
  } finally {
    router.close();
    dealer.close();
  }
});

test('CurveZMQ hides where a message ends: every frame is a MESSAGE command without a MORE flag on the wire', async (t) => {
  const port = await freePort();
  const sniffPort = await freePort();
  const server = zmq.curveKeyPair();
  const client = zmq.curveKeyPair();
  const router = new zmq.Router({ linger: 0, curveServer: true, curveSecretKey: server.secretKey, curvePublicKey: server.publicKey });
  await router.bind(`tcp://127.0.0.1:${port}`);
  const seen: Buffer[] = [];
  const sniffer = net.createServer((c) => {
    const up = net.connect(port, '127.0.0.1');
    c.on('data', (d: Buffer) => (seen.push(d), up.write(d)));
    up.pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  await new Promise<void>((resolve) => sniffer.listen(sniffPort, '127.0.0.1', resolve));
  const dealer = new zmq.Dealer({ linger: 0, curveServerKey: server.publicKey, curvePublicKey: client.publicKey, curveSecretKey: client.secretKey });
  dealer.connect(`tcp://127.0.0.1:${sniffPort}`);
  try {
    await dealer.send(['hello']);
    await router.receive();
    const before = Buffer.concat(seen).length;
    await dealer.send([Buffer.alloc(1), Buffer.alloc(300), Buffer.alloc(1)]);
    await router.receive();
    const wire = Buffer.concat(seen).subarray(before);
    const frames: Array<{ flags: number; size: number }> = [];
    for (let at = 0; at < wire.length; ) {
      const long = (wire[at]! & 2) !== 0;
      const size = long ? Number(wire.readBigUInt64BE(at + 1)) : wire[at + 1]!;
      frames.push({ flags: wire[at]! & ~2, size });
      at += (long ? 9 : 2) + size;
    }
    t.deepEqual(frames, [1, 300, 1].map((n) => ({ flags: 0, size: n + CURVE_MESSAGE_OVERHEAD })));
  } finally {
    router.close();
    dealer.close();
    sniffer.close();
  }
});

const greeting = () => {
  const g = Buffer.alloc(64);
  g[0] = 0xff;
  g[9] = 0x7f;
  g[10] = 3;
  g.write('CURVE', 12);
  return g;
};
/** A CurveZMQ MESSAGE frame carrying `payload` bytes (its body is noise to the window). */
const curveFrame = (payload: number) => {
  const size = payload + CURVE_MESSAGE_OVERHEAD;
  const header = size > 255 ? Buffer.alloc(9) : Buffer.alloc(2);
  if (size > 255) {
    header[0] = 2;
    header.writeBigUInt64BE(BigInt(size), 1);
  } else header[1] = size;
  return Buffer.concat([header, Buffer.alloc(size, 7)]);
};
const command = (body: string) => Buffer.concat([Buffer.from([4, body.length]), Buffer.from(body)]);

/** Feeds `data` in chunks, re-feeding what waits; returns the bytes forwarded. */
const feed = (window: CurveFrameWindow, data: Buffer, chunk: number) => {
  let forwarded = 0;
  let rest = Buffer.alloc(0);
  for (let at = 0; at < data.length || rest.length > 0; ) {
    const next = rest.length > 0 ? rest : data.subarray(at, at + chunk);
    if (rest.length === 0) at += next.length;
    const n = window.accept(next);
    forwarded += n;
    if (window.violation || n < next.length) return { forwarded, waiting: Buffer.concat([next.subarray(n), data.subarray(at)]) };
    rest = Buffer.alloc(0);
  }
  return { forwarded, waiting: Buffer.alloc(0) };
};

test('the window lets frames go while they fit one message, withholds the one that passes it at its last header byte, and lets it go once taken', (t) => {
  for (const chunk of [1, 5, 64, 100_000]) {
    const window = new CurveFrameWindow({ maxFrames: 4, maxBytes: 1000 });
    const head = Buffer.concat([greeting(), command('HELLO'), curveFrame(10), curveFrame(500), curveFrame(400)]);
    const big = curveFrame(200);
    const stream = Buffer.concat([head, big]);
    const first = feed(window, stream, chunk);
    t.is(first.forwarded, head.length + 1, `chunk ${chunk}: all but the size byte of the frame that passes the bounds`);
    t.is(first.waiting.length, stream.length - first.forwarded);
    t.deepEqual({ frames: window.inFlightFrames, bytes: window.inFlightBytes }, { frames: 3, bytes: 910 });
    t.is(window.violation, undefined);
    window.consumed(3, 910);
    t.is(window.accept(first.waiting), first.waiting.length, 'taken: the rest goes');
    t.deepEqual({ frames: window.inFlightFrames, bytes: window.inFlightBytes }, { frames: 1, bytes: 200 });
  }
});

test('the window refuses a frame larger than a message, a frame too small for a MESSAGE box and a peer that does not speak ZMTP 3', (t) => {
  const huge = new CurveFrameWindow({ maxFrames: 4, maxBytes: 1000 });
  t.is(feed(huge, Buffer.concat([greeting(), curveFrame(1001)]), 7).forwarded < 64 + 9, true);
  t.regex(huge.violation ?? '', /a frame of 1001 bytes/);
  const tiny = new CurveFrameWindow({ maxFrames: 4, maxBytes: 1000 });
  feed(tiny, Buffer.concat([greeting(), Buffer.from([0, 3, 1, 2, 3])]), 64);
  t.regex(tiny.violation ?? '', /no CurveZMQ MESSAGE/);
  const garbage = new CurveFrameWindow(LINK_MESSAGE_BOUNDS);
  t.is(garbage.accept(Buffer.from('GET / HTTP/1.1\r\n\r\n')), 0);
  t.regex(garbage.violation ?? '', /ZMTP 3/);
});

/** A CurveZMQ ROUTER on TCP (the agent) and a DEALER reaching it through a LinkDialer (the gateway). */
async function linkedPair(bounds = LINK_MESSAGE_BOUNDS) {
  const port = await freePort();
  const server = zmq.curveKeyPair();
  const router = new zmq.Router({ linger: 0, handover: true, curveServer: true, curveSecretKey: server.secretKey, curvePublicKey: server.publicKey });
  await router.bind(`tcp://127.0.0.1:${port}`);
  const cuts: string[] = [];
  const dialer = new LinkDialer(`127.0.0.1:${port}`, { bounds, idleMs: 60_000, onCut: (why) => cuts.push(why) });
  const dealer = new zmq.Dealer({ linger: 0, routingId: 'gateway-1', reconnectInterval: 100, curveServerKey: server.publicKey, curvePublicKey: server.publicKey, curveSecretKey: server.secretKey });
  dealer.connect(dialer.endpoint);
  await dealer.send(['hello']);
  const [routing] = await router.receive();
  // One reader (zeromq allows one receive at a time), as AgentLink's: each message counted as taken.
  const inbox: Buffer[][] = [];
  let wake: (() => void) | undefined;
  void (async () => {
    try {
      for await (const frames of dealer) {
        dialer.consumed(frames.length, payloadBytes(frames));
        inbox.push(frames);
        wake?.();
      }
    } catch {
      // Closed.
    }
  })();
  const receive = async (): Promise<Buffer[]> => {
    while (inbox.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    return inbox.shift()!;
  };
  return {
    router,
    routing: routing!,
    dialer,
    cuts,
    receive,
    close: () => {
      dealer.close();
      router.close();
      dialer.close();
    },
  };
}

test('through the relay: a thousand messages within the bounds arrive whole and the window counts back to 0', async (t) => {
  const link = await linkedPair({ maxFrames: LINK_MAX_FRAMES, maxBytes: 64 * 1024 });
  try {
    const sending = (async () => {
      for (let i = 0; i < 1000; i++) await link.router.send([link.routing, 'k', String(i), Buffer.alloc(i % 7 === 0 ? 60_000 : 100), 'x', 'y']);
    })();
    for (let i = 0; i < 1000; i++) {
      const frames = await link.receive();
      t.is(frames[1]!.toString(), String(i));
      if (i % 7 === 0) t.is(frames[2]!.length, 60_000);
    }
    await sending;
    t.deepEqual((link.dialer as unknown as { current: { inFlight: unknown } }).current.inFlight, { frames: 0, bytes: 0 });
    t.deepEqual(link.cuts, []);
  } finally {
    link.close();
  }
});

test('without the relay (as the link was): a DEALER with the link\'s per-frame bound assembles a message of 3 frames of 6 MiB', async (t) => {
  const port = await freePort();
  const router = new zmq.Router({ linger: 0 });
  await router.bind(`tcp://127.0.0.1:${port}`);
  const dealer = new zmq.Dealer({ linger: 0, maxMessageSize: LINK_MESSAGE_BOUNDS.maxBytes });
  dealer.connect(`tcp://127.0.0.1:${port}`);
  try {
    await dealer.send(['hello']);
    const [routing] = await router.receive();
    await router.send([routing!, Buffer.alloc(6 << 20), Buffer.alloc(6 << 20), Buffer.alloc(6 << 20)]);
    const got = await within(dealer.receive(), 5000);
    t.not(got, 'timeout');
    t.is(payloadBytes(got as Buffer[]), 18 << 20, 'all 18 MiB assembled: the bound the relay adds is not libzmq\'s');
  } finally {
    router.close();
    dealer.close();
  }
});

for (const [name, frames] of [
  [`${LINK_MAX_FRAMES + 1} frames of 1 byte`, Array.from({ length: LINK_MAX_FRAMES + 1 }, () => Buffer.alloc(1))],
  ['3 frames of 6 MiB (18 MiB, each frame within the per-frame bound)', [Buffer.alloc(6 << 20), Buffer.alloc(6 << 20), Buffer.alloc(6 << 20)]],
] as const) {
  test(`through the relay: a message of ${name} is never assembled; the connection is cut and the next one works`, async (t) => {
    t.timeout(30_000);
    const link = await linkedPair();
    try {
      await link.router.send([link.routing, ...frames]);
      const got = await within(link.receive(), 7000);
      t.is(got, 'timeout', 'the DEALER never got the message');
      t.true(link.cuts.some((why) => /a link message of more than/.test(why)), JSON.stringify(link.cuts));
      // The DEALER reconnects through a fresh relay connection; the ROUTER hears it again.
      await link.router.send([link.routing, 'after']).catch(() => undefined);
      const again = await within(
        (async () => {
          for (;;) {
            await link.router.send([link.routing, 'after']).catch(() => undefined);
            const answer = await within(link.receive(), 300);
            if (answer !== 'timeout') return answer;
          }
        })(),
        10_000,
      );
      t.not(again, 'timeout');
    } finally {
      link.close();
    }
  });
}

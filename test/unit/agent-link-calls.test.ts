/**
 * A real AgentLink and AgentServer over loopback (each through its link relay, one ROUTER per link
 * connection), the agent's provisioner a fake that answers `list` slowly: calls cross and come back, a
 * call's arguments past 1 MiB are refused (400), and past 16 MiB in flight the agent answers 503 instead
 * of holding more.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import * as zmq from 'zeromq';
import { AgentLink } from '../../src/cluster/agent-link.js';
import { AgentServer } from '../../src/cluster/agent-server.js';
import { parseClusterKey } from '../../src/cluster/cluster-key.js';
import { MAX_CALL_ARGS_BYTES, MAX_CALL_BYTES_IN_FLIGHT } from '../../src/cluster/link-protocol.js';
import { DomainError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { freePort } from '../helpers/free-port.js';

async function linked() {
  const key = parseClusterKey(randomBytes(32).toString('base64'));
  const port = await freePort();
  let release: () => void = () => undefined;
  const slow = new Promise<void>((resolve) => (release = resolve));
  const provisioner = {
    list: async () => [],
    ping: async () => {
      await slow;
      return true;
    },
  };
  const server = new AgentServer(
    { id: 'n1', listen: `127.0.0.1:${port}`, key, kernelsDir: '/nonexistent', maxConnectionsPerPeer: 8, peerTimeoutMs: 10_000, memoryBudgetBytes: 0 },
    provisioner as never,
    { listKernelImages: async () => [], readImageFile: async () => undefined },
    {} as never,
    'x/',
    silentLogger,
  );
  await server.start();
  const link = new AgentLink({ node: 'n1', address: `127.0.0.1:${port}`, key, callTimeoutMs: 20_000, peerTimeoutMs: 10_000 }, silentLogger);
  return {
    server,
    link,
    release,
    // The ZAP handler's inproc endpoint is one per process and libzmq unbinds it asynchronously: the next
    // test's agent binds it again only once it is free.
    close: async () => {
      link.close();
      server.close();
      await new Promise((resolve) => setTimeout(resolve, 500));
    },
  };
}

test.serial('calls cross the relays both ways; arguments past 1 MiB are refused and past 16 MiB in flight are 503', async (t) => {
  const { server, link, release, close } = await linked();
  try {
    t.deepEqual(await link.call('list', []), []);
    const tooLarge = await link.call('list', ['x'.repeat(MAX_CALL_ARGS_BYTES)]).catch((error: Error) => error);
    t.true(tooLarge instanceof DomainError && tooLarge.code === 'invalid_input', String(tooLarge));
    // Calls that wait (ping waits for `release`), each with arguments just under 1 MiB.
    const pad = 'x'.repeat(MAX_CALL_ARGS_BYTES - 64);
    const waiting = Array.from({ length: 20 }, () => link.call('ping', [pad]).then(() => 'ok', (error: Error) => (error instanceof DomainError ? error.code : error.message)));
    const early = await Promise.race([Promise.all(waiting.slice(16)), new Promise((resolve) => setTimeout(() => resolve('waiting'), 5000))]);
    t.deepEqual(early, ['unavailable', 'unavailable', 'unavailable', 'unavailable'], `past ${MAX_CALL_BYTES_IN_FLIGHT} bytes in flight`);
    t.is(server.linked.calls, 16, 'the agent holds 16 calls of about 1 MiB');
    release();
    const settled = await Promise.all(waiting.slice(0, 16));
    t.deepEqual(settled, Array.from({ length: 16 }, () => 'ok'));
    t.deepEqual(await link.call('list', []), [], 'room again once they ended');
  } finally {
    await close();
  }
});

test.serial('garbage, a plain ZMQ peer and a Curve peer with a key of its own get nothing from the relayed agent; the link still works', async (t) => {
  const { server, link, close } = await linked();
  const port = Number((link.options.address.split(':')[1]));
  try {
    await new Promise<void>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
      socket.on('connect', () => {
        for (let i = 0; i < 32; i++) socket.write(randomBytes(1024 * 1024));
        socket.end();
      });
    });
    const plain = new zmq.Dealer({ linger: 0, sendTimeout: 500 });
    plain.connect(`tcp://127.0.0.1:${port}`);
    await plain.send(['C', '1', 'list', '[]']).catch(() => undefined);
    const stranger = zmq.curveKeyPair();
    const curve = new zmq.Dealer({ linger: 0, sendTimeout: 500, curveServerKey: link.options.key.publicKey, curvePublicKey: stranger.publicKey, curveSecretKey: stranger.secretKey });
    curve.connect(`tcp://127.0.0.1:${port}`);
    await curve.send(['C', '1', 'list', '[]']).catch(() => undefined);
    const answered = await Promise.race([Promise.any([plain.receive(), curve.receive()]).then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 2000))]);
    plain.close();
    curve.close();
    t.false(answered);
    t.true(server.refusedPeers >= 2, `refused ${server.refusedPeers}`);
    t.deepEqual(await link.call('list', []), []);
  } finally {
    await close();
  }
});

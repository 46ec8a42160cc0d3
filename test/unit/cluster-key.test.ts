import test from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as zmq from 'zeromq';
import { ClusterKeyError, parseClusterKey, readClusterKey } from '../../src/cluster/cluster-key.js';
import { z85Decode, z85Encode } from '../../src/cluster/z85.js';
import { ConfigError, loadConfig } from '../../src/config/index.js';

test('Z85 encodes the RFC 32 test vector and decodes it back', (t) => {
  const bytes = Buffer.from([0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b]);
  t.is(z85Encode(bytes), 'HelloWorld');
  t.deepEqual(z85Decode('HelloWorld'), bytes);
  t.is(z85Decode('Hello~orld'), undefined);
});

test('the public key derived from a secret is the one libzmq pairs with it', (t) => {
  for (let i = 0; i < 5; i++) {
    const pair = zmq.curveKeyPair();
    const key = parseClusterKey(pair.secretKey);
    t.is(key.secretKey, pair.secretKey);
    t.is(key.publicKey, pair.publicKey);
    t.deepEqual(key.publicKeyBytes, z85Decode(pair.publicKey));
  }
});

test('a base64 key file is read; short, weak and unreadable ones are refused with a clear error', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pk-key-'));
  const good = path.join(dir, 'good');
  const secret = randomBytes(32);
  writeFileSync(good, `${secret.toString('base64')}\n`);
  t.is(readClusterKey(good).secretKey, z85Encode(secret));
  const short = path.join(dir, 'short');
  writeFileSync(short, randomBytes(16).toString('base64'));
  t.throws(() => readClusterKey(short), { instanceOf: ClusterKeyError, message: /32 random bytes/ });
  const weak = path.join(dir, 'weak');
  writeFileSync(weak, Buffer.alloc(32, 7).toString('base64'));
  t.throws(() => readClusterKey(weak), { instanceOf: ClusterKeyError, message: /too weak/ });
  t.throws(() => readClusterKey(path.join(dir, 'absent')), { instanceOf: ClusterKeyError, message: /cannot be read/ });
});

test('a gateway or agent without the cluster key file, or without Redis, refuses to start saying so', (t) => {
  t.throws(() => loadConfig({ POLYKERNEL_ROLE: 'gateway', REDIS_URL: 'redis://127.0.0.1:6379' }), { instanceOf: ConfigError, message: /POLYKERNEL_ROLE=gateway needs POLYKERNEL_CLUSTER_KEY_FILE/ });
  t.throws(() => loadConfig({ POLYKERNEL_ROLE: 'agent', POLYKERNEL_CLUSTER_KEY_FILE: '/k' }), { instanceOf: ConfigError, message: /needs REDIS_URL/ });
  t.throws(() => loadConfig({ POLYKERNEL_ROLE: 'agent', POLYKERNEL_CLUSTER_KEY_FILE: '/k', REDIS_URL: 'redis://x' }), { instanceOf: ConfigError, message: /POLYKERNEL_AGENT_LISTEN/ });
  t.throws(() => loadConfig({ POLYKERNEL_AGENT_LISTEN: 'nohost' }), { instanceOf: ConfigError, message: /host:port/ });
  // A Swarm task's DNS name, as deploy/swarm/stack.yml advertises it.
  t.is(loadConfig({ POLYKERNEL_AGENT_ADVERTISE: 'polykernel_agent.x3ti0erg11rjpg64m75kej2mz.wo41w8hg8qanxwjwsg4kxpprj:7700' }).agentAdvertise, 'polykernel_agent.x3ti0erg11rjpg64m75kej2mz.wo41w8hg8qanxwjwsg4kxpprj:7700');
  t.throws(() => loadConfig({ POLYKERNEL_AGENT_ADVERTISE: 'a b:7700' }), { instanceOf: ConfigError, message: /host:port/ });
  t.throws(() => loadConfig({ POLYKERNEL_ROLE: 'edge' }), { instanceOf: ConfigError, message: /all, gateway, agent/ });
  t.is(loadConfig({}).role, 'all');
});

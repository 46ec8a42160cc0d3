/**
 * What one link peer may make a node agent hold, on the real engine: a gateway (here also a raw CurveZMQ
 * DEALER holding the cluster key, speaking link-protocol.ts as AgentLink does) that aborts a command has
 * its process in the container killed and nothing left on the agent; one killed mid-command and
 * mid-connection loses both within the peer timeout; one flooding stdin chunks and calls with large
 * arguments does not grow the agent's memory.
 */
import test from 'ava';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as zmq from 'zeromq';
import { parseClusterKey } from '../../src/cluster/cluster-key.js';
import { containersOfInstance, docker } from '../helpers/docker.js';
import { freePort } from '../helpers/free-port.js';
import { startServiceProcess, type ServiceProcess } from '../helpers/service-process.js';
import { createKernel, runToEnd } from '../helpers/v1-client.js';
import { eventually, sleep } from '../helpers/wait.js';

const keyDir = mkdtempSync(path.join(os.tmpdir(), 'pk-link-bounds-'));
const keyFile = path.join(keyDir, 'cluster.key');
writeFileSync(keyFile, `${randomBytes(32).toString('base64')}\n`);
const clusterPrefix = `pk-link-bounds-${randomUUID().slice(0, 8)}:`;
const PEER_TIMEOUT_MS = 3000;

let agent: ServiceProcess;
let gateway: ServiceProcess;
let linkPort: number;

test.before(async () => {
  linkPort = await freePort();
  agent = await startServiceProcess({
    label: 'bounds-agent',
    env: {
      POLYKERNEL_ROLE: 'agent',
      POLYKERNEL_CLUSTER_KEY_FILE: keyFile,
      POLYKERNEL_AGENT_LISTEN: `127.0.0.1:${linkPort}`,
      POLYKERNEL_AGENT_ID: 'node-b',
      POLYKERNEL_REDIS_PREFIX: clusterPrefix,
      POLYKERNEL_LINK_PEER_TIMEOUT_MS: String(PEER_TIMEOUT_MS),
    },
  });
  gateway = await startServiceProcess({
    label: 'bounds-gateway',
    env: { POLYKERNEL_ROLE: 'gateway', POLYKERNEL_CLUSTER_KEY_FILE: keyFile, POLYKERNEL_REDIS_PREFIX: clusterPrefix, POLYKERNEL_LINK_CALL_TIMEOUT_MS: '30000' },
  });
});

test.after.always(async () => {
  await gateway?.stop();
  await agent?.stop();
});

interface AgentStatus {
  peers: number;
  connections: number;
  commands: number;
  calls: number;
}
const status = async () => (await agent.http.ok('GET', '/api')) as AgentStatus;

/** A peer with the cluster key on the agent's link port: what a gateway's AgentLink is, without its manners. */
function rawPeer() {
  const key = parseClusterKey(readFileSync(keyFile, 'utf8'));
  const dealer = new zmq.Dealer({ linger: 0, routingId: randomUUID(), curveServerKey: key.publicKey, curvePublicKey: key.publicKey, curveSecretKey: key.secretKey, sendTimeout: 10_000 });
  dealer.connect(`tcp://127.0.0.1:${linkPort}`);
  const inbox: string[][] = [];
  void (async () => {
    try {
      for await (const frames of dealer) inbox.push(frames.map((f) => f.toString('utf8').slice(0, 200)));
    } catch {
      // Closed.
    }
  })();
  const beat = setInterval(() => void dealer.send(['H']).catch(() => undefined), 1000);
  return {
    send: (frames: Array<string | Buffer>) => dealer.send(frames),
    inbox,
    close: () => {
      clearInterval(beat);
      dealer.close();
    },
  };
}

/** The kernel's full container id (the agent checks refs against its own, full ids). */
const containerOf = () => docker('inspect', '--format', '{{.Id}}', containersOfInstance(agent.instance)[0]!);
const processesOf = (container: string) => docker('top', container, '-eo', 'pid,args');
const query = (id: string, code: string) => runToEnd(gateway.http.call.bind(gateway.http), id, { mode: 'query', code });

test.serial('a command the gateway aborts is killed in the container and the agent holds nothing of it', async (t) => {
  const id = await createKernel(gateway.http.call.bind(gateway.http), { lang: 'python3' });
  const container = containerOf();
  const peer = rawPeer();
  try {
    await peer.send(['X', '1', JSON.stringify({ ref: { id, containerId: container }, cmd: ['sleep', '3117'] })]);
    t.true(await eventually(() => /sleep 3117/.test(processesOf(container)), 15_000), 'the command runs in the container');
    t.true(await eventually(async () => (await status()).commands === 1, 5000));
    await peer.send(['Z', '1']);
    t.true(await eventually(() => !/sleep 3117/.test(processesOf(container)), 10_000), `still running after the abort:\n${processesOf(container)}`);
    t.true(await eventually(async () => (await status()).commands === 0, 5000), JSON.stringify(await status()));
    t.true(await eventually(() => peer.inbox.some((m) => m[0] === 'E' && m[1] === '1'), 5000), 'the aborted command is answered with an error');
  } finally {
    peer.close();
    await gateway.http.call('DELETE', `/api/kernels/${id}`);
  }
});

test.serial('a gateway killed mid-command and mid-connection loses both on the agent within the peer timeout; the command is killed', async (t) => {
  const doomed = await startServiceProcess({
    label: 'bounds-doomed',
    env: { POLYKERNEL_ROLE: 'gateway', POLYKERNEL_CLUSTER_KEY_FILE: keyFile, POLYKERNEL_REDIS_PREFIX: clusterPrefix },
  });
  let id: string | undefined;
  try {
    const call = doomed.http.call.bind(doomed.http);
    id = await createKernel(call, { lang: 'python3' });
    t.is((await runToEnd(call, id, { mode: 'query', code: 'print("up")' })).text.trim(), 'up');
    const container = containerOf();
    // A batch step is a command beside the kernel (an exec over the link); it never ends by itself.
    void call('POST', `/v1/kernel/${id}`, { mode: 'batch', options: { exec: 'sleep 3119' } }).catch(() => undefined);
    t.true(await eventually(() => /sleep 3119/.test(processesOf(container)), 15_000), 'the batch step runs');
    const held = await status();
    t.true(held.connections >= 1 && held.commands >= 1, JSON.stringify(held));
    const killedAt = Date.now();
    doomed.signal('SIGKILL');
    t.true(await eventually(async () => (await status()).commands === 0 && (await status()).connections < held.connections, PEER_TIMEOUT_MS + 8000), JSON.stringify(await status()));
    t.true(await eventually(() => !/sleep 3119/.test(processesOf(container)), 10_000), `still running:\n${processesOf(container)}`);
    t.log(`freed ${Date.now() - killedAt} ms after the kill (peer timeout ${PEER_TIMEOUT_MS} ms)`);
  } finally {
    await doomed.stop();
    if (id) for (const container of containersOfInstance(agent.instance)) docker('rm', '-f', container);
  }
});

test.serial('a peer flooding stdin chunks of 4 MiB and calls with 2 MiB arguments does not grow the agent; it still serves', async (t) => {
  t.timeout(180_000);
  const id = await createKernel(gateway.http.call.bind(gateway.http), { lang: 'python3' });
  const container = containerOf();
  const peer = rawPeer();
  const base = agent.rssKB();
  let peak = base;
  const sampler = setInterval(() => (peak = Math.max(peak, agent.rssKB())), 50);
  try {
    // 16 commands (the most a peer may run) that never read their stdin, each sent its whole window of 8
    // chunks: each chunk 64 times what AgentLink ever sends.
    const chunk = Buffer.alloc(4 << 20, 120);
    for (let i = 0; i < 16; i++) await peer.send(['X', `s${i}`, JSON.stringify({ ref: { id, containerId: container }, cmd: ['sleep', '3121'], stdin: true })]);
    await sleep(1500);
    for (let round = 0; round < 8; round++) for (let i = 0; i < 16; i++) await peer.send(['I', `s${i}`, chunk]);
    // Then calls whose arguments are large, as fast as the socket takes them.
    const args = JSON.stringify([{ pad: 'x'.repeat(2 << 20) }]);
    for (let i = 0; i < 200; i++) await peer.send(['C', `c${i}`, 'list', args]);
    await sleep(3000);
  } finally {
    clearInterval(sampler);
    peer.close();
  }
  const grownKB = peak - base;
  t.log(`agent RSS ${base} KB -> peak ${peak} KB (+${grownKB} KB); it was sent 512 MiB of stdin and 400 MiB of call arguments`);
  t.true(grownKB < 200 * 1024, `the agent grew ${grownKB} KB`);
  t.true(await eventually(() => !/sleep 3121/.test(processesOf(container)), 15_000), 'the cut commands are killed');
  t.true(await eventually(async () => (await status()).commands === 0, 10_000));
  t.is((await query(id, 'print(6 * 7)')).text.trim(), '42', 'the agent still serves the real gateway');
  await gateway.http.call('DELETE', `/api/kernels/${id}`);
});

/** As limits-memory.test.ts, through the link: the count that ends a query comes with the kernel's messages. */
const ALLOCATE_512MB = 'x = b"\\x01" * (512 * 2**20)\nprint("still here")';
const stderrOf = (console: [string, unknown][]) => console.filter(([kind]) => kind === 'stderr').map(([, text]) => text).join('');

test.serial('through the link: a subprocess past maxMem is killed, the kernel lives on and the query says out of memory; a batch step too', async (t) => {
  const call = gateway.http.call.bind(gateway.http);
  const id = await createKernel(call, { lang: 'python3', resourceLimits: { maxMem: 192 * 1024 } });
  try {
    t.is((await query(id, 'print("warm")')).text.trim(), 'warm');
    const outcome = await query(id, `import subprocess\nr = subprocess.run(["python3", "-c", ${JSON.stringify(ALLOCATE_512MB)}])\nprint("child exit", r.returncode)`);
    t.is(outcome.status, 'finished');
    t.regex(outcome.text, /child exit -9/);
    t.regex(stderrOf(outcome.console), /\[out of memory: a process of this kernel was killed by its memory cap \(maxMem 196608 KB\)\]/);
    const next = await query(id, 'print("alive")');
    t.is(next.text, 'alive\n');
    t.notRegex(stderrOf(next.console), /out of memory/, 'the same kill is reported once');
    const stepped = await runToEnd(call, id, { mode: 'batch', options: { exec: 'head -c 600M /dev/zero | tail -c 600M > /dev/null' } });
    t.regex(stderrOf(stepped.console), /\[out of memory: a process of this kernel was killed/);
  } finally {
    await call('DELETE', `/api/kernels/${id}`);
  }
});

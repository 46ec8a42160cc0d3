/**
 * A gateway and a node agent, each its own process (POLYKERNEL_ROLE=gateway / agent), on loopback with
 * the real Docker engine and Redis: a kernel created through the gateway runs on the agent's engine and is
 * driven over the CurveZMQ link (v1 queries, the Jupyter channels WebSocket, file transfers through exec
 * with stdin, interrupt, restart, delete). Then the link's door: a gateway with a wrong key, a plain ZMQ
 * peer and a TCP client sending garbage get nothing done, and the agent neither grows nor stops serving.
 */
import test from 'ava';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as zmq from 'zeromq';
import { parseClusterKey } from '../../src/cluster/cluster-key.js';
import { instanceConnectionDirs } from '../../src/kernels/conn-dir.js';
import { containersOfInstance, docker } from '../helpers/docker.js';
import { freePort } from '../helpers/free-port.js';
import { channelsUrl } from '../helpers/jupyter-client.js';
import { JupyterWs } from '../helpers/jupyter-ws.js';
import { startServiceProcess, type ServiceProcess } from '../helpers/service-process.js';
import { createKernel, runToEnd } from '../helpers/v1-client.js';
import { eventually } from '../helpers/wait.js';

const keyDir = mkdtempSync(path.join(os.tmpdir(), 'pk-cluster-'));
const keyFile = path.join(keyDir, 'cluster.key');
writeFileSync(keyFile, `${randomBytes(32).toString('base64')}\n`);
const wrongKeyFile = path.join(keyDir, 'wrong.key');
writeFileSync(wrongKeyFile, randomBytes(32).toString('base64'));
/** Membership is read under the Redis prefix: the gateways and the agent of one cluster share it. */
const clusterPrefix = `pk-link-${randomUUID().slice(0, 8)}:`;

let agent: ServiceProcess;
let gateway: ServiceProcess;
let linkPort: number;

test.before(async () => {
  linkPort = await freePort();
  agent = await startServiceProcess({
    label: 'agent',
    env: {
      POLYKERNEL_ROLE: 'agent',
      POLYKERNEL_CLUSTER_KEY_FILE: keyFile,
      POLYKERNEL_AGENT_LISTEN: `127.0.0.1:${linkPort}`,
      POLYKERNEL_AGENT_ID: 'node-a',
      POLYKERNEL_REDIS_PREFIX: clusterPrefix,
      // Short, so that the test of a gateway that dies does not wait long.
      POLYKERNEL_LINK_PEER_TIMEOUT_MS: '3000',
    },
  });
  gateway = await startServiceProcess({
    label: 'gateway',
    env: { POLYKERNEL_ROLE: 'gateway', POLYKERNEL_CLUSTER_KEY_FILE: keyFile, POLYKERNEL_REDIS_PREFIX: clusterPrefix, POLYKERNEL_LINK_CALL_TIMEOUT_MS: '30000' },
  });
});

test.after.always(async () => {
  await gateway?.stop();
  await agent?.stop();
});

const query = (svc: ServiceProcess, id: string, code: string) => runToEnd(svc.http.call.bind(svc.http), id, { mode: 'query', code });

test.serial('a kernel created through the gateway runs on the agent and answers v1 queries and the channels WebSocket', async (t) => {
  const call = gateway.http.call.bind(gateway.http);
  const id = await createKernel(call, { lang: 'python3' });
  t.is(containersOfInstance(agent.instance).length, 1, 'the kernel container is the agent\'s');
  t.is(containersOfInstance(gateway.instance).length, 0);
  const outcome = await query(gateway, id, 'print(6 * 7)');
  t.is(outcome.status, 'finished');
  t.is(outcome.text.trim(), '42');

  const ws = await JupyterWs.open(channelsUrl(gateway.url, id));
  try {
    const { stdout, reply } = await ws.execute('import os; print("on", len(os.listdir("/conn")) >= 0, 2 ** 10)');
    t.is(reply.content.status, 'ok');
    t.regex(stdout, /on True 1024/);
  } finally {
    ws.ws.close();
  }

  // Files: an upload is an exec with stdin, a download an exec with streamed output, both over the link.
  const payload = randomBytes(300 * 1024);
  const boundary = 'pk-link-boundary';
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="blob.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`),
    payload,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  const uploaded = await fetch(`${gateway.url}/v1/kernel/${id}/upload`, { method: 'POST', headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }, body });
  t.is(uploaded.status, 204, await uploaded.text());
  const seen = await query(gateway, id, 'import hashlib; print(hashlib.sha256(open("blob.bin","rb").read()).hexdigest())');
  t.is(seen.text.trim(), (await import('node:crypto')).createHash('sha256').update(payload).digest('hex'));
  const downloaded = await fetch(`${gateway.url}/v1/kernel/${id}/download?file=blob.bin`);
  t.is(downloaded.status, 200);
  const bytes = Buffer.from(await downloaded.arrayBuffer());
  t.true(bytes.includes(payload.subarray(0, 4096)) && bytes.length >= payload.length, `downloaded ${bytes.length} bytes`);

  // Interrupt: SIGINT through the agent ends a sleeping cell with KeyboardInterrupt.
  const ws2 = await JupyterWs.open(channelsUrl(gateway.url, id));
  try {
    const running = ws2.send('shell', 'execute_request', { code: 'import time; time.sleep(60)', silent: false, store_history: false, user_expressions: {}, allow_stdin: false, stop_on_error: true });
    await ws2.next((m) => m.parent_header.msg_id === running && m.header.msg_type === 'status' && m.content.execution_state === 'busy');
    await new Promise((resolve) => setTimeout(resolve, 300));
    t.is((await gateway.http.call('POST', `/api/kernels/${id}/interrupt`)).status, 204);
    const reply = await ws2.reply(running, 'execute_reply');
    t.is(reply.content.ename, 'KeyboardInterrupt');
  } finally {
    ws2.ws.close();
  }

  // Restart in place on the agent: the kernel forgets its variables and answers again.
  await query(gateway, id, 'x = 5');
  const restarted = await gateway.http.call('POST', `/api/kernels/${id}/restart`);
  t.is(restarted.status, 200, JSON.stringify(restarted.body));
  const after = await query(gateway, id, 'print("x" in dir())');
  t.is(after.text.trim(), 'False');

  t.is((await gateway.http.call('DELETE', `/api/kernels/${id}`)).status, 204);
  await eventually(() => containersOfInstance(agent.instance).length === 0, 20_000);
  t.deepEqual(containersOfInstance(agent.instance), []);
  const dirs = instanceConnectionDirs(agent.stateDir, agent.instance);
  t.deepEqual(existsSync(dirs) ? readdirSync(dirs) : [], [], 'no socket directory is left on the agent');
});

test.serial('a gateway serves no judging and no notebook executions: 503 saying why', async (t) => {
  const piston = await gateway.http.call('POST', '/api/v2/execute', { language: 'python', version: '*', files: [{ content: 'print(1)' }] });
  t.is(piston.status, 503);
  t.regex(JSON.stringify(piston.body), /judging needs a node's Docker engine; not available on a gateway yet/);
  const judge0 = await gateway.http.call('POST', '/submissions', { source_code: 'print(1)', language_id: 71 });
  t.is(judge0.status, 503);
  const executions = await gateway.http.call('POST', '/api/executions', { path: 'x.ipynb' });
  t.is(executions.status, 503);
  t.regex(JSON.stringify(executions.body), /notebook executions/);
});

test.serial('a gateway with a wrong key gets nothing done; the agent logs the refusal and keeps serving', async (t) => {
  const intruder = await startServiceProcess({
    label: 'intruder',
    env: { POLYKERNEL_ROLE: 'gateway', POLYKERNEL_CLUSTER_KEY_FILE: wrongKeyFile, POLYKERNEL_REDIS_PREFIX: clusterPrefix, POLYKERNEL_LINK_CALL_TIMEOUT_MS: '3000' },
  });
  try {
    const created = await intruder.http.call('POST', '/v1/kernel/create', { lang: 'python3' });
    t.not(created.status, 201, JSON.stringify(created.body));
    t.true(created.status >= 400 && created.status < 600);
    const specs = await intruder.http.call('GET', '/api/kernelspecs');
    t.deepEqual(Object.keys(specs.body?.kernelspecs ?? {}), [], 'no kernelspec crosses the link');
    t.deepEqual(containersOfInstance(agent.instance), []);
    await eventually(() => /Refused a link peer/.test(agent.stderr()), 10_000);
    t.regex(agent.stderr(), /Refused a link peer: its CurveZMQ handshake failed/);
  } finally {
    await intruder.stop();
  }
  const id = await createKernel(gateway.http.call.bind(gateway.http), { lang: 'python3' });
  t.is((await query(gateway, id, 'print("still here")')).text.trim(), 'still here');
  t.is((await gateway.http.call('DELETE', `/api/kernels/${id}`)).status, 204);
});

test.serial('garbage on the link port and plain ZMQ peers make the agent do nothing and not grow', async (t) => {
  const before = agent.rssKB();
  // A TCP client sending 32 MB of garbage, ten times over.
  for (let i = 0; i < 10; i++) {
    await new Promise<void>((resolve) => {
      const socket = net.connect(linkPort, '127.0.0.1');
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
      socket.on('connect', () => {
        const chunk = randomBytes(1024 * 1024);
        let sent = 0;
        const pump = () => {
          while (sent < 32 && socket.write(chunk)) sent++;
          if (sent >= 32) socket.end();
          else socket.once('drain', pump);
        };
        pump();
      });
      setTimeout(() => (socket.destroy(), resolve()), 5000).unref();
    });
  }
  // A plain (NULL mechanism) ZMQ DEALER sending calls: the Curve server never completes its handshake.
  const plain = new zmq.Dealer({ linger: 0, sendTimeout: 500 });
  plain.connect(`tcp://127.0.0.1:${linkPort}`);
  let sent = 0;
  for (let i = 0; i < 50; i++) {
    try {
      await plain.send(['C', String(i), 'list', '[]']);
      sent++;
    } catch {
      break;
    }
  }
  const answered = await Promise.race([plain.receive().then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 2000))]);
  plain.close();
  t.false(answered, `a plain ZMQ peer got an answer (sent ${sent})`);
  // A Curve client that knows the agent's public key (it is no secret) but has a keypair of its own: the
  // handshake completes, the ZAP handler refuses it, and its calls get no answer.
  const serverKey = parseClusterKey(readFileSync(keyFile, 'utf8')).publicKey;
  const stranger = zmq.curveKeyPair();
  const curve = new zmq.Dealer({ linger: 0, sendTimeout: 500, curveServerKey: serverKey, curvePublicKey: stranger.publicKey, curveSecretKey: stranger.secretKey });
  curve.connect(`tcp://127.0.0.1:${linkPort}`);
  await curve.send(['C', '1', 'list', '[]']).catch(() => undefined);
  const curveAnswered = await Promise.race([curve.receive().then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 2000))]);
  curve.close();
  t.false(curveAnswered, 'a Curve client with a key of its own got an answer');
  await eventually(() => /Refused a link peer: its key is not the cluster key/.test(agent.stderr()), 10_000);
  t.regex(agent.stderr(), /Refused a link peer: its key is not the cluster key/);
  const grownKB = agent.rssKB() - before;
  t.true(grownKB < 64 * 1024, `the agent grew by ${grownKB} KB`);
  // And it still serves the real gateway.
  const id = await createKernel(gateway.http.call.bind(gateway.http), { lang: 'python3' });
  t.is((await query(gateway, id, 'print(1 + 1)')).text.trim(), '2');
  t.is((await gateway.http.call('DELETE', `/api/kernels/${id}`)).status, 204);
  t.deepEqual((await agent.http.ok('GET', '/api')).role, 'agent');
});

test.serial('a gateway that dies without a word loses its kernel connections on the agent after the peer timeout', async (t) => {
  const doomed = await startServiceProcess({
    label: 'doomed',
    env: { POLYKERNEL_ROLE: 'gateway', POLYKERNEL_CLUSTER_KEY_FILE: keyFile, POLYKERNEL_REDIS_PREFIX: clusterPrefix },
  });
  let id: string | undefined;
  try {
    id = await createKernel(doomed.http.call.bind(doomed.http), { lang: 'python3' });
    t.is((await query(doomed, id, 'print("up")')).text.trim(), 'up');
    const held = (await agent.http.ok('GET', '/api')) as { connections: number; peers: number };
    t.true(held.connections >= 1, JSON.stringify(held));
    doomed.signal('SIGKILL');
    t.true(await eventually(async () => ((await agent.http.ok('GET', '/api')) as { connections: number }).connections < held.connections, 15_000));
    t.true(await eventually(async () => ((await agent.http.ok('GET', '/api')) as { peers: number }).peers < held.peers, 15_000));
  } finally {
    await doomed.stop();
    // Its kernel stays on the agent (a kernel outlives its gateway; serving it from another gateway is not
    // this test's business): removed here, as its own.
    if (id) for (const container of containersOfInstance(agent.instance)) docker('rm', '-f', container);
    t.deepEqual(containersOfInstance(agent.instance), []);
  }
});

test.serial('a kernel flooding iopub with 900 MB messages is cut at the agent: agent and gateway stay bounded, the kernel usable', async (t) => {
  t.timeout(120_000);
  const call = gateway.http.call.bind(gateway.http);
  const id = await createKernel(call, { lang: 'python3', resourceLimits: { maxMem: 1024 * 1024, timeout: 60_000 } });
  t.is((await query(gateway, id, 'print(1)')).text.trim(), '1');
  const base = { agent: agent.rssKB(), gateway: gateway.rssKB() };
  const peak = { ...base };
  const sampler = setInterval(() => {
    peak.agent = Math.max(peak.agent, agent.rssKB());
    peak.gateway = Math.max(peak.gateway, gateway.rssKB());
  }, 50);
  try {
    const code = [
      'import time',
      'k = get_ipython().kernel',
      'big = b"x" * 15_000_000',
      'for i in range(3):',
      '    k.iopub_socket.send_multipart([b"<IDS|MSG>", b"sig", b"{}", b"{}", b"{}", b"{}"] + [big] * 54, copy=False)',
      '    time.sleep(1.5)',
      'print("sent")',
    ].join('\n');
    await query(gateway, id, code);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  } finally {
    clearInterval(sampler);
  }
  t.log(`RSS growth: agent ${peak.agent - base.agent} KB, gateway ${peak.gateway - base.gateway} KB`);
  t.true(peak.agent - base.agent < 200 * 1024, `the agent grew ${peak.agent - base.agent} KB`);
  t.true(peak.gateway - base.gateway < 200 * 1024, `the gateway grew ${peak.gateway - base.gateway} KB`);
  t.true(/kernel sent something|message of more than|Dropped a bad frame/.test(gateway.stderr()), 'the gateway heard of the cut');
  t.is((await query(gateway, id, 'print(6 * 7)')).text.trim(), '42');
  t.is((await call('DELETE', `/api/kernels/${id}`)).status, 204);
});

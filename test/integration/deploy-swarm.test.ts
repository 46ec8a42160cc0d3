/**
 * The Swarm stack (deploy/swarm/stack.yml) as an operator deploys it, on a Swarm of three hosts simulated
 * on this machine (scripts/sim-swarm.sh: one dockerd per network, UTS and mount namespace, each with its own
 * docker.sock and /var/lib/polykernel): the nodes labelled (Redis on node 0, kernels on nodes 1 and 2), the
 * cluster key made with `npm run cluster-key` and given as a Docker secret, `docker stack deploy`. A kernel
 * created through a gateway runs code, and its container is on a kernel node's own engine (no network).
 * A gateway's container is killed: Swarm replaces it, and the same kernel, variables and all, is served
 * through the new gateway and the other. Then the kernel is deleted, the stack removed and the simulation
 * taken down, leaving no node, namespace, cgroup, directory or container behind.
 *
 * This kernel has no IPVS, so the stack's two switches for such hosts are on: the gateways publish their
 * port in host mode (each on its own node's address) and use DNS round robin instead of a virtual IP.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import { DOCKER, docker } from '../helpers/docker.js';
import type { Answer } from '../helpers/http-client.js';
import { runToEnd } from '../helpers/v1-client.js';
import { eventually, sleep } from '../helpers/wait.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const SIM = path.join(ROOT, 'scripts/sim-swarm.sh');
const STACK_FILE = path.join(ROOT, 'deploy/swarm/stack.yml');
/** sim-swarm.sh's own default, set explicitly: the test reads the nodes' sockets and state there. */
const SIM_DIR = '/var/lib/polykernel-sim';
const NODES = 3;
const KERNEL_NODES = ['pk-n1', 'pk-n2'];
const REDIS_NODE = 'pk-n0';
const PREFIX = process.env.POLYKERNEL_IMAGE_PREFIX || 'polykernel/';
const IMAGES = ['base', 'python', 'service', 'redis'].map((name) => `${PREFIX}${name}:latest`);
/** Short: an agent's advertised name is `<stack>_agent.<node id>.<task id>`. */
const STACK = 'pks';
const PORT = 8888;
const instance = `swarm-${randomUUID().slice(0, 8)}`;
const run = promisify(execFile);

/** Why this machine cannot simulate a Swarm, or undefined when it can (CI runs as root; so does this VM). */
function whyNoSimulation(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces and one dockerd per simulated node)';
  for (const tool of ['ip', 'nsenter', 'unshare', 'dockerd']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status !== 0) return `${tool} is not installed`;
  }
  if (spawnSync('unshare', ['--net', '--uts', '--mount', 'true'], { stdio: 'ignore' }).status !== 0) return 'this machine cannot make network, UTS and mount namespaces';
  return undefined;
}

const nodeName = (n: number) => `pk-n${n}`;
const nodeIndex = (name: string) => Number(/^pk-n(\d+)$/.exec(name)![1]);
const nodeSocket = (n: number) => `unix://${SIM_DIR}/pk-n${n}/run/docker.sock`;
const gatewayUrl = (node: string) => `http://10.77.0.${10 + nodeIndex(node)}:${PORT}`;

/** The environment `docker stack deploy` interpolates the stack file with: none of this process's own settings. */
function stackEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!/^(POLYKERNEL_|KG_)/.test(key)) env[key] = value;
  return {
    ...env,
    POLYKERNEL_PUBLISH_MODE: 'host',
    POLYKERNEL_GATEWAY_ENDPOINT_MODE: 'dnsrr',
    POLYKERNEL_PORT: String(PORT),
    POLYKERNEL_INSTANCE: instance,
    POLYKERNEL_IMAGE_PREFIX: PREFIX,
    POLYKERNEL_SERVICE_IMAGE: `${PREFIX}service:latest`,
    POLYKERNEL_REDIS_IMAGE: `${PREFIX}redis:latest`,
  };
}

async function sim(...args: string[]): Promise<string> {
  const { stdout } = await run('bash', [SIM, ...args], { env: { ...process.env, PK_SIM_DIR: SIM_DIR, PK_SIM_IMAGES: IMAGES.join(' ') }, timeout: 180_000 });
  return stdout;
}

/** `docker` against node n's engine (node 0 is the first manager). */
async function onNode(n: number, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  if (options.input === undefined) return (await run(DOCKER, ['-H', nodeSocket(n), ...args], { env: options.env, timeout: 60_000 })).stdout.trim();
  return execFileSync(DOCKER, ['-H', nodeSocket(n), ...args], { input: options.input, env: options.env, encoding: 'utf8', timeout: 60_000 }).trim();
}

interface Task {
  id: string;
  node: string;
}

/** A service's tasks that are running now. */
async function runningTasks(service: string): Promise<Task[]> {
  const out = await onNode(0, ['service', 'ps', `${STACK}_${service}`, '--no-trunc', '--filter', 'desired-state=running', '--format', '{{.ID}} {{.Node}} {{.CurrentState}}']);
  return out
    .split('\n')
    .map((line) => line.split(' '))
    .filter(([, , state]) => state === 'Running')
    .map(([id, node]) => ({ id: id!, node: node! }));
}

/** A JSON call to a gateway, bounded (a gateway that is going away holds no test). */
function callAt(url: string) {
  return async (method: string, route: string, body?: unknown): Promise<Answer> => {
    const response = await fetch(url + route, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // Not JSON: the assertion shows the text.
    }
    return { status: response.status, body: parsed };
  };
}

/** The gateway serves, and its agents are linked: python3 is among its kernelspecs. */
async function gatewayReady(node: string): Promise<boolean> {
  const answer = await callAt(gatewayUrl(node))('GET', '/api/kernelspecs').catch(() => undefined);
  return answer?.status === 200 && Boolean(answer.body?.kernelspecs?.python3);
}

/** Ids of the kernel's containers on node n's engine. */
async function kernelContainersOn(n: number, kernelId: string): Promise<string[]> {
  return (await onNode(n, ['ps', '-aq', '--filter', `label=org.polykernel.kernel-id=${kernelId}`])).split('\n').filter(Boolean);
}

/** The network namespaces sim-swarm.sh makes (the LAN's and one per node). */
const simNamespaces = () => (existsSync('/run/netns') ? readdirSync('/run/netns').filter((name) => /^pk-(n\d+|sw)$/.test(name)) : []);

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const cannot = whyNoSimulation();
let simulated = false;

test.after.always(async () => {
  if (simulated) await sim('down').catch((error: Error) => console.error(`deploy-swarm: sim-swarm.sh down failed: ${error.message}`));
});

(cannot ? test.skip : test.serial)(`swarm: the stack on three simulated nodes, a kernel on an agent's engine, a gateway killed and replaced, nothing left${cannot ? ` (skipped: ${cannot})` : ''}`, async (t) => {
  t.timeout(420_000);
  const leftover = simNamespaces();
  if (leftover.length || existsSync(SIM_DIR)) {
    return t.fail(`a simulated Swarm is already up (${leftover.join(', ') || SIM_DIR}): run \`bash scripts/sim-swarm.sh down\` first`);
  }
  const times: Record<string, string> = {};
  let started = Date.now();
  // The service images as the compose test builds them (no registry here: from the local Debian base).
  await run(process.execPath, [path.join(ROOT, 'scripts/build-service-images.mjs')], { cwd: ROOT, timeout: 600_000 });
  times.images = seconds(Date.now() - started);

  started = Date.now();
  simulated = true;
  await sim('up', String(NODES));
  times.simUp = seconds(Date.now() - started);
  const dockerdPids = Array.from({ length: NODES }, (_, n) => Number(readFileSync(`${SIM_DIR}/pk-n${n}/dockerd.pid`, 'utf8').trim()));

  // As README "Deploying on Docker Swarm" says: label the nodes, make the secret, deploy.
  started = Date.now();
  for (const node of KERNEL_NODES) await onNode(0, ['node', 'update', '--label-add', 'polykernel.kernels=true', node]);
  await onNode(0, ['node', 'update', '--label-add', 'polykernel.redis=true', REDIS_NODE]);
  const key = execFileSync(process.execPath, [path.join(ROOT, 'scripts/cluster-key.mjs')], { encoding: 'utf8' });
  await onNode(0, ['secret', 'create', 'polykernel-cluster-key', '-'], { input: key });
  await onNode(0, ['stack', 'deploy', '--resolve-image', 'never', '-c', STACK_FILE, STACK], { env: stackEnv() });

  let gateways: Task[] = [];
  const converged = await eventually(
    async () => {
      gateways = await runningTasks('gateway');
      if (gateways.length !== 2 || (await runningTasks('agent')).length !== KERNEL_NODES.length || (await runningTasks('redis')).length !== 1) return false;
      return (await Promise.all(gateways.map((g) => gatewayReady(g.node)))).every(Boolean);
    },
    120_000,
    1000,
  );
  if (!converged) t.log(await onNode(0, ['service', 'ls']), await onNode(0, ['stack', 'ps', STACK, '--no-trunc']));
  t.true(converged, 'two gateways serve, with the agents of both kernel nodes linked');
  times.deploy = seconds(Date.now() - started);
  t.deepEqual((await runningTasks('agent')).map((task) => task.node).sort(), KERNEL_NODES, 'one agent on each node labelled for kernels, none elsewhere');
  t.deepEqual((await runningTasks('redis')).map((task) => task.node), [REDIS_NODE], 'Redis on its labelled node');
  t.not(gateways[0]!.node, gateways[1]!.node, 'the gateways are on two nodes (host-mode port)');

  // A kernel through the first gateway.
  const [first, second] = gateways as [Task, Task];
  started = Date.now();
  const created = await callAt(gatewayUrl(first.node))('POST', '/v1/kernel/create', { lang: 'python3' });
  t.is(created.status, 201, JSON.stringify(created.body));
  const id = created.body.kernelId as string;
  const ran = await runToEnd(callAt(gatewayUrl(first.node)), id, { mode: 'query', code: 'kept = 41\nprint(kept + 1)' });
  t.is(ran.status, 'finished', ran.text);
  t.is(ran.text, '42\n');
  times.kernel = seconds(Date.now() - started);

  // Its container is on one kernel node's engine, with no network; on no other engine, the host's included.
  const where: Record<string, string[]> = {};
  for (let n = 0; n < NODES; n++) where[nodeName(n)] = await kernelContainersOn(n, id);
  const holders = Object.entries(where).filter(([, ids]) => ids.length > 0);
  t.is(holders.length, 1, `the kernel's containers by node: ${JSON.stringify(where)}`);
  const [kernelNode, [containerId]] = holders[0]! as [string, string[]];
  t.true(KERNEL_NODES.includes(kernelNode), `the kernel runs on a kernel node (${kernelNode})`);
  t.is(await onNode(nodeIndex(kernelNode), ['inspect', '--format', '{{.HostConfig.NetworkMode}} {{index .Config.Labels "org.polykernel.instance"}}', containerId!]), `none ${instance}`);
  t.is(docker('ps', '-aq', '--filter', `label=org.polykernel.kernel-id=${id}`), '', 'nothing of it on the host engine');

  // The first gateway's container is killed: Swarm starts another task, which serves the same kernel.
  const victim = (await onNode(nodeIndex(first.node), ['ps', '-q', '--filter', `label=com.docker.swarm.task.id=${first.id}`])).split('\n')[0]!;
  t.truthy(victim, "the gateway task's container");
  started = Date.now();
  await onNode(nodeIndex(first.node), ['kill', victim]);
  let replacement: Task | undefined;
  const replaced = await eventually(
    async () => {
      const now = await runningTasks('gateway');
      replacement = now.find((task) => task.id !== first.id && task.id !== second.id);
      return now.length === 2 && replacement !== undefined && (await gatewayReady(replacement.node));
    },
    90_000,
    250,
  );
  t.true(replaced, 'a new gateway task serves');
  times.replacement = seconds(Date.now() - started);
  t.log(`killed gateway on ${first.node}; its replacement runs on ${replacement?.node}`);

  for (const gateway of [replacement!, second]) {
    // The new gateway adopts the running kernels as it starts: until then it may answer 503.
    let again = await runToEnd(callAt(gatewayUrl(gateway.node)), id, { mode: 'query', code: 'print(kept)' });
    const deadline = Date.now() + 30_000;
    while (again.status === 'http 503' && Date.now() < deadline) {
      await sleep(500);
      again = await runToEnd(callAt(gatewayUrl(gateway.node)), id, { mode: 'query', code: 'print(kept)' });
    }
    t.is(again.status, 'finished', `through the gateway on ${gateway.node}: ${again.text}`);
    t.is(again.text, '41\n', `the same kernel, its variable kept, through the gateway on ${gateway.node}`);
  }
  t.deepEqual(await kernelContainersOn(nodeIndex(kernelNode), id), [containerId], 'still the one container');

  // Down: the kernel through a gateway, then the stack, then the simulated hosts.
  const deleted = await callAt(gatewayUrl(second.node))('DELETE', `/v1/kernel/${id}`);
  t.is(deleted.status, 204, JSON.stringify(deleted.body));
  t.true(await eventually(async () => (await kernelContainersOn(nodeIndex(kernelNode), id)).length === 0, 30_000), 'the kernel container is removed from its node');
  started = Date.now();
  await onNode(0, ['stack', 'rm', STACK]);
  const stackContainers = async () => (await Promise.all(Array.from({ length: NODES }, (_, n) => onNode(n, ['ps', '-aq', '--filter', `label=com.docker.stack.namespace=${STACK}`])))).join('');
  t.true(await eventually(async () => (await stackContainers()) === '', 60_000, 500), "the stack's containers are gone from every node");
  times.stackRm = seconds(Date.now() - started);
  started = Date.now();
  await sim('down');
  simulated = false;
  times.simDown = seconds(Date.now() - started);

  t.deepEqual(simNamespaces(), [], 'no namespace of the simulation is left');
  t.false(existsSync(SIM_DIR), 'no node directory is left');
  t.not(spawnSync('ip', ['link', 'show', 'pk-host'], { stdio: 'ignore' }).status, 0, "the root namespace's port on the LAN is gone");
  const cgroups = spawnSync('sh', ['-c', "find /sys/fs/cgroup -maxdepth 4 -type d -regex '.*/pk-n[0-9]+.*' 2>/dev/null"], { encoding: 'utf8' }).stdout.trim();
  t.is(cgroups, '', 'no cgroup of a node is left');
  const alive = dockerdPids.filter(isAlive);
  t.deepEqual(alive, [], "no node's dockerd runs");
  t.is(docker('ps', '-aq', '--filter', `label=org.polykernel.instance=${instance}`), '', 'no kernel container on the host engine');
  t.is(docker('ps', '-aq', '--filter', `label=com.docker.stack.namespace=${STACK}`), '', 'no container of the stack on the host engine');
  t.log(Object.entries(times).map(([step, took]) => `${step} ${took}`).join(', '));
});

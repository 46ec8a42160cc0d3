/**
 * The compose set-up as a user runs it: the service and Redis images built on this machine
 * (`npm run service-images`; no registry here, so from the local Debian base), `docker compose up -d`,
 * a kernel run through the published port, the service container restarted and the kernel re-adopted
 * with its variables, and `docker compose down -v --remove-orphans` leaving no container, volume or
 * network behind.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { docker } from '../helpers/docker.js';
import { freePort } from '../helpers/free-port.js';
import { jsonCall } from '../helpers/http-client.js';
import { eventually } from '../helpers/wait.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** `docker compose` (the plugin) where present, else Debian's docker-compose. */
function composeCommand(): string[] | undefined {
  if (spawnSync('docker', ['compose', 'version'], { stdio: 'ignore' }).status === 0) return ['docker', 'compose'];
  if (spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0) return ['docker-compose'];
  return undefined;
}

const compose = composeCommand();
const project = `pk-compose-${randomUUID().slice(0, 8)}`;
const instance = `compose-${randomUUID().slice(0, 8)}`;
const stateDir = `/tmp/${project}`;
let env: NodeJS.ProcessEnv;
let url: string;

function run(...args: string[]): string {
  const [command, ...rest] = compose!;
  return execFileSync(command!, [...rest, ...args], { cwd: ROOT, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
}

const labelled = (label: string) => docker('ps', '-aq', '--filter', `label=${label}`).split('\n').filter(Boolean);

/** Polls GET /api; each try is bounded (docker-proxy may hold a connection open while the service starts). */
async function ready(): Promise<boolean> {
  const answers = async () => (await fetch(`${url}/api`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined))?.status === 200;
  return eventually(answers, 60_000, 250);
}

test.before(() => {
  if (!compose) return;
  execFileSync(process.execPath, [path.join(ROOT, 'scripts/build-service-images.mjs')], { cwd: ROOT, stdio: 'pipe', timeout: 300_000 });
});

test.after.always(() => {
  if (!compose || !env) return;
  try {
    run('down', '-v', '--remove-orphans', '--timeout', '5');
  } catch {
    // Already down (the test's own last step), or never up.
  }
  for (const id of labelled(`org.polykernel.instance=${instance}`)) docker('rm', '-f', id);
  rmSync(stateDir, { recursive: true, force: true });
});

test.serial('compose: up, a kernel through the published port, restart re-adopts it, down leaves nothing', async (t) => {
  if (!compose) return t.fail('neither `docker compose` nor `docker-compose` is installed (scripts/host-setup.sh installs it)');
  t.timeout(240_000);
  const port = await freePort();
  env = {
    ...process.env,
    COMPOSE_PROJECT_NAME: project,
    POLYKERNEL_PORT: String(port),
    POLYKERNEL_INSTANCE: instance,
    POLYKERNEL_HOST_STATE_DIR: stateDir,
  };
  url = `http://127.0.0.1:${port}`;
  const call = jsonCall(url);
  run('up', '-d');
  t.true(await ready(), 'the service answers on the published port');

  const created = await call('POST', '/v1/kernel/create', { lang: 'python3' });
  t.is(created.status, 201, JSON.stringify(created.body));
  const id = created.body.kernelId as string;
  const first = await call('POST', `/v1/kernel/${id}`, { mode: 'query', code: 'kept = 41\nprint(kept + 1)' });
  t.deepEqual(first.body.result.console, [['stdout', '42\n']]);
  const kernelContainers = labelled(`org.polykernel.kernel-id=${id}`);
  t.is(kernelContainers.length, 1, 'the kernel runs as a sibling container on the host engine');
  t.is(docker('inspect', '--format', '{{index .Config.Labels "com.docker.compose.project"}}', kernelContainers[0]!), project, 'the kernel belongs to the project');

  run('restart', '--timeout', '10', 'polykernel');
  t.true(await ready(), 'the service is back after its restart');
  const again = await call('POST', `/v1/kernel/${id}`, { mode: 'query', code: 'print(kept)' });
  t.is(again.status, 200, JSON.stringify(again.body));
  t.deepEqual(again.body.result.console, [['stdout', '41\n']], 'the same kernel, adopted with its variables');

  run('down', '-v', '--remove-orphans', '--timeout', '10');
  const left = labelled(`com.docker.compose.project=${project}`);
  if (left.length) t.log(docker('inspect', '--format', '{{.Name}} {{.State.Status}} {{.Config.Image}} {{json .Config.Labels}}', ...left));
  t.deepEqual(left, [], 'no container of the project is left');
  t.deepEqual(labelled(`org.polykernel.instance=${instance}`), [], 'no kernel container is left');
  t.is(docker('volume', 'ls', '-q', '--filter', `label=com.docker.compose.project=${project}`), '', 'no volume is left');
  t.is(docker('network', 'ls', '-q', '--filter', `label=com.docker.compose.project=${project}`), '', 'no network is left');
});

/**
 * Debian's jupyter_server 1.23 started with --gateway-url pointing at the service: it is a Kernel Gateway
 * client this project did not write. Driven from here through jupyter_server's own REST API and its
 * WebSocket (legacy JSON framing, which is what its gateway proxy speaks to us).
 */
import test from 'ava';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startTestService, type TestService } from '../helpers/service.js';
import { JupyterWs } from '../helpers/jupyter-ws.js';
import { freePort } from '../helpers/free-port.js';
import { jsonCall } from '../helpers/http-client.js';
import { sleep } from '../helpers/wait.js';
import { channelsUrl } from '../helpers/jupyter-client.js';

const GATEWAY_TOKEN = 'gw-token';
const SERVER_TOKEN = 'js-token';
let svc: TestService;
let jupyter: ChildProcess | undefined;
let jupyterUrl: string;
let home: string;
let jupyterLog = '';

/** jupyter_server's REST API, with its token. */
const js = (method: string, route: string, body?: unknown) => jsonCall(jupyterUrl, { authorization: `token ${SERVER_TOKEN}` })(method, route, body);

test.before(async () => {
  svc = await startTestService({ authToken: GATEWAY_TOKEN });
  home = await mkdtemp(path.join(os.tmpdir(), 'pk-jupyter-'));
  const port = await freePort();
  jupyterUrl = `http://127.0.0.1:${port}`;
  jupyter = spawn(
    '/usr/bin/python3',
    [
      '-m', 'jupyter_server',
      `--gateway-url=${svc.url}`,
      `--GatewayClient.auth_token=${GATEWAY_TOKEN}`,
      `--ServerApp.token=${SERVER_TOKEN}`,
      `--ServerApp.port=${port}`,
      '--ServerApp.port_retries=0',
      '--ServerApp.ip=127.0.0.1',
      `--ServerApp.root_dir=${home}`,
      '--ServerApp.open_browser=False',
      '--allow-root',
    ],
    {
      env: {
        PATH: process.env.PATH,
        HOME: home,
        JUPYTER_CONFIG_DIR: path.join(home, 'config'),
        JUPYTER_DATA_DIR: path.join(home, 'data'),
        JUPYTER_RUNTIME_DIR: path.join(home, 'runtime'),
        // The gateway client forwards its KERNEL_* variables to every kernel it starts.
        KERNEL_FROM_JUPYTER_SERVER: 'yes',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  jupyter.stdout!.on('data', (chunk: Buffer) => (jupyterLog += chunk));
  jupyter.stderr!.on('data', (chunk: Buffer) => (jupyterLog += chunk));
  for (let i = 0; i < 150; i++) {
    if (jupyter.exitCode !== null) throw new Error(`jupyter_server exited:\n${jupyterLog}`);
    const up = await js('GET', '/api').catch(() => undefined);
    if (up?.status === 200) return;
    await sleep(200);
  }
  throw new Error(`jupyter_server did not start within 30 s:\n${jupyterLog}`);
});

test.after.always(async () => {
  if (jupyter && jupyter.exitCode === null) {
    const exited = new Promise((resolve) => jupyter!.once('exit', resolve));
    jupyter.kill('SIGTERM');
    await Promise.race([exited, sleep(5000)]);
    if (jupyter.exitCode === null) jupyter.kill('SIGKILL');
  }
  await svc?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

test.serial('jupyter_server in gateway mode lists our kernelspecs and serves their logo through us', async (t) => {
  const { status, body } = await js('GET', '/api/kernelspecs');
  t.is(status, 200, jupyterLog.slice(-2000));
  t.is(body.default, 'python3');
  t.is(body.kernelspecs.python3.spec.language, 'python');
  t.truthy(body.kernelspecs.python3.resources['logo-64x64']);
  const logo = await fetch(`${jupyterUrl}/kernelspecs/python3/logo-64x64.png?token=${SERVER_TOKEN}`);
  t.is(logo.status, 200);
  t.deepEqual([...new Uint8Array(await logo.arrayBuffer()).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], 'a PNG');
});

test.serial('jupyter_server starts a kernel here and executes a cell through its own WebSocket', async (t) => {
  const started = await js('POST', '/api/kernels', { name: 'python3' });
  t.is(started.status, 201, jupyterLog.slice(-2000));
  const kernelId = started.body.id;
  const ours = await svc.call('GET', `/api/kernels/${kernelId}`, undefined, { authorization: `token ${GATEWAY_TOKEN}` });
  t.is(ours.status, 200, 'the kernel jupyter_server started is one of ours');

  const container = execFileSync('/usr/bin/docker', ['ps', '-q', '--filter', `label=org.polykernel.kernel-id=${kernelId}`], { encoding: 'utf8' }).trim();
  const env: string[] = JSON.parse(execFileSync('/usr/bin/docker', ['inspect', '--format', '{{json .Config.Env}}', container], { encoding: 'utf8' }));
  t.true(env.includes('KERNEL_FROM_JUPYTER_SERVER=yes'), 'KERNEL_* variables of the gateway client reach the kernel');

  const client = await JupyterWs.open(`${channelsUrl(jupyterUrl, kernelId)}?token=${SERVER_TOKEN}`);
  await client.ready();
  const { reply, stdout } = await client.execute('import sys\nprint("via gateway", sys.version_info[0])');
  t.is(reply.content.status, 'ok');
  t.is(stdout, 'via gateway 3\n');
  const info = client.send('shell', 'kernel_info_request');
  t.is((await client.reply(info, 'kernel_info_reply')).content.language_info.name, 'python');
  const model = await svc.call('GET', `/api/kernels/${kernelId}`, undefined, { authorization: `token ${GATEWAY_TOKEN}` });
  t.is(model.body.connections, 1, 'jupyter_server\'s proxy is one connection here');
  await client.close();

  const listed = await js('GET', '/api/kernels');
  t.true(listed.body.some((k: { id: string }) => k.id === kernelId));
  t.is((await js('DELETE', `/api/kernels/${kernelId}`)).status, 204);
  t.is((await svc.call('GET', `/api/kernels/${kernelId}`, undefined, { authorization: `token ${GATEWAY_TOKEN}` })).status, 404);
});

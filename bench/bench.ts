/**
 * npm run bench: one run, one machine, every figure issue #7 asks for.
 *
 *  - the direct-ZMQ baseline: the same kernel (same image, same container) spoken to over its IPC sockets
 *  - this service's execute round trip through the channels WebSocket and through POST /v1/kernel/:id
 *  - kernel start until the first execute is answered, cold and from a warm pool
 *  - a one-shot snippet (create, run hello, delete) per language, from a warm pool
 *  - executions per second over 4 kernels at once
 *  - the service's own memory per idle kernel
 *  - and, when Debian's jupyter_server is installed, the same workload against it
 *
 * Prints a JSON document and a table with ratios. Options: --quick (fewer samples), --idle-kernels N,
 * --no-jupyter, --langs a,b. The service runs in this process (its own instance label and state dir).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config/index.js';
import { createLogger } from '../src/logger.js';
import { startService, type RunningService } from '../src/main.js';
import { containerConnectionInfo, hostConnectionInfo } from '../src/protocol/connection-file.js';
import { newMessage, parentMsgId, type JupyterMessage } from '../src/protocol/messages.js';
import { KernelConnection } from '../src/transport/kernel-connection.js';
import { HELLO } from './hello.js';
import { JupyterWsClient } from './jupyter-ws-client.js';
import { repeat, summarize, timeIt, type Summary } from './stats.js';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const option = (name: string, fallback: string) => {
  const at = args.indexOf(name);
  return at >= 0 && args[at + 1] ? args[at + 1]! : fallback;
};
const QUICK = flag('--quick');
const RTT_N = QUICK ? 50 : 200;
const START_N = QUICK ? 3 : 8;
const ONESHOT_N = QUICK ? 3 : 8;
const THROUGHPUT_PER_KERNEL = QUICK ? 50 : 150;
const IDLE_KERNELS = Number(option('--idle-kernels', QUICK ? '10' : '30'));
const JUPYTER_PYTHON = '/usr/bin/python3';

const results: Record<string, unknown> = {};
const log = (msg: string) => process.stderr.write(`bench: ${msg}\n`);

async function post(url: string, body: unknown): Promise<any> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await response.text();
  if (!response.ok) throw new Error(`${url} answered ${response.status}: ${text}`);
  return text ? JSON.parse(text) : undefined;
}

async function del(url: string): Promise<void> {
  await fetch(url, { method: 'DELETE' });
}

/** Execute round trip straight over ZMQ: execute_request until execute_reply and the idle status. */
function directExecutor(connection: KernelConnection): (code: string) => Promise<void> {
  const session = randomUUID();
  const waiters = new Map<string, (msg: JupyterMessage) => void>();
  connection.onMessage((_channel, msg) => {
    const parent = parentMsgId(msg);
    if (parent) waiters.get(parent)?.(msg);
  });
  return (code) =>
    new Promise((resolve) => {
      const request = newMessage('execute_request', { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true }, { session });
      let replied = false;
      let idle = false;
      waiters.set(request.header.msg_id, (msg) => {
        if (msg.channel === 'shell') replied = true;
        if (msg.header.msg_type === 'status' && (msg.content as any).execution_state === 'idle') idle = true;
        if (replied && idle) {
          waiters.delete(request.header.msg_id);
          resolve();
        }
      });
      void connection.send('shell', request);
    });
}

async function startBenchService(poolSizes: Record<string, number>): Promise<{ service: RunningService; url: string; stateDir: string }> {
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'pk-bench-'));
  const config = loadConfig(process.env, {
    port: 0,
    ip: '127.0.0.1',
    instance: `bench-${randomUUID().slice(0, 8)}`,
    stateDir,
    redisUrl: process.env.REDIS_URL ?? '',
    redisPrefix: `bench-${randomUUID().slice(0, 8)}:`,
    logLevel: 'warn',
    poolSizes,
    prespawnCount: 0,
    flushWindowMs: 30000,
  });
  const service = await startService(config, createLogger('warn'));
  const address = service.server.address() as { port: number };
  return { service, url: `http://127.0.0.1:${address.port}`, stateDir };
}

async function tryWs(url: string): Promise<JupyterWsClient | undefined> {
  try {
    return await JupyterWsClient.connect(url);
  } catch (error) {
    log(`WebSocket ${url} unavailable: ${(error as Error).message}`);
    return undefined;
  }
}

async function throughput(executors: ((code: string) => Promise<unknown>)[], perKernel: number): Promise<number> {
  const elapsed = await timeIt(() =>
    Promise.all(
      executors.map(async (execute) => {
        for (let i = 0; i < perKernel; i++) await execute('x = 1');
      }),
    ),
  );
  return Math.round((executors.length * perKernel * 1000) / elapsed);
}

async function benchService(langs: string[]): Promise<void> {
  const pools = Object.fromEntries(langs.map((lang) => [lang, lang === 'python3' ? 2 : 1]));
  const { service, url, stateDir } = await startBenchService(pools);
  try {
    const gc = (globalThis as { gc?: () => void }).gc;
    // Round trips on one live kernel: direct ZMQ (baseline), v1, WebSocket.
    const { kernelId } = await post(`${url}/v1/kernel/create`, { lang: 'python3' });
    const record = await service.kernels.get(kernelId);
    const direct = new KernelConnection(hostConnectionInfo(record.connDir, containerConnectionInfo(record.key, record.lang)));
    const directExecute = directExecutor(direct);
    results.zmq_direct_rtt_ms = summarize(await repeat(RTT_N, () => directExecute('x = 1')));
    log(`direct ZMQ ${JSON.stringify(results.zmq_direct_rtt_ms)}`);
    results.v1_rtt_ms = summarize(await repeat(RTT_N, () => post(`${url}/v1/kernel/${kernelId}`, { mode: 'query', code: 'x = 1' })));
    log(`v1 ${JSON.stringify(results.v1_rtt_ms)}`);
    const ws = await tryWs(`${url.replace('http', 'ws')}/api/kernels/${kernelId}/channels`);
    if (ws) {
      results.ws_rtt_ms = summarize(await repeat(RTT_N, () => ws.execute('x = 1')));
      log(`WebSocket ${JSON.stringify(results.ws_rtt_ms)}`);
      ws.close();
    }
    direct.close();
    await del(`${url}/v1/kernel/${kernelId}`);

    // Start until the first execute is answered.
    const startOnce = async (lang: string, code: string, at = url) => {
      const { kernelId: id } = await post(`${at}/v1/kernel/create`, { lang });
      const { result } = await post(`${at}/v1/kernel/${id}`, { mode: 'query', code });
      if (result.status !== 'finished') throw new Error(`${lang}: ${JSON.stringify(result)}`);
      return id as string;
    };
    const warmSamples: number[] = [];
    const warmIds: string[] = [];
    for (let i = 0; i < START_N; i++) {
      await service.kernels.pool.whenFull(60000);
      warmSamples.push(await timeIt(async () => warmIds.push(await startOnce('python3', 'print(1)'))));
    }
    results.start_warm_ms = summarize(warmSamples);
    await Promise.all(warmIds.map((id) => del(`${url}/v1/kernel/${id}`)));
    const coldSamples: number[] = [];
    // Cold: a second instance of the service without pools, on the same engine.
    const cold = await startBenchService({});
    try {
      for (let i = 0; i < START_N; i++) {
        let id = '';
        coldSamples.push(await timeIt(async () => (id = await startOnce('python3', 'print(1)', cold.url))));
        await del(`${cold.url}/v1/kernel/${id}`);
      }
    } finally {
      await cold.service.stop();
      await rm(cold.stateDir, { recursive: true, force: true });
    }
    results.start_cold_ms = summarize(coldSamples);
    log(`start warm ${JSON.stringify(results.start_warm_ms)} cold ${JSON.stringify(results.start_cold_ms)}`);

    // One-shot per language from a warm pool: create, run hello, delete.
    const oneShot: Record<string, Summary> = {};
    for (const lang of langs) {
      const code = HELLO[lang];
      if (!code) continue;
      const samples: number[] = [];
      for (let i = 0; i < ONESHOT_N; i++) {
        await service.kernels.pool.whenFull(60000);
        samples.push(await timeIt(async () => del(`${url}/v1/kernel/${await startOnce(lang, code)}`)));
      }
      oneShot[lang] = summarize(samples);
      log(`one-shot ${lang} ${JSON.stringify(oneShot[lang])}`);
    }
    results.oneshot_ms = oneShot;

    // Throughput over 4 kernels, through v1 and through the WebSocket.
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await post(`${url}/v1/kernel/create`, { lang: 'python3' })).kernelId);
    results.v1_exec_per_s_4_kernels = await throughput(
      ids.map((id) => (code: string) => post(`${url}/v1/kernel/${id}`, { mode: 'query', code })),
      THROUGHPUT_PER_KERNEL,
    );
    const sockets = (await Promise.all(ids.map((id) => tryWs(`${url.replace('http', 'ws')}/api/kernels/${id}/channels`)))).filter(
      (s): s is JupyterWsClient => s !== undefined,
    );
    if (sockets.length === 4) {
      results.ws_exec_per_s_4_kernels = await throughput(sockets.map((s) => (code: string) => s.execute(code)), THROUGHPUT_PER_KERNEL);
    }
    sockets.forEach((s) => s.close());
    await Promise.all(ids.map((id) => del(`${url}/v1/kernel/${id}`)));
    log(`throughput v1 ${results.v1_exec_per_s_4_kernels}/s ws ${results.ws_exec_per_s_4_kernels ?? '-'}/s`);

    // The service's own memory per idle kernel.
    await service.kernels.pool.drain();
    gc?.();
    const rssBefore = process.memoryUsage().rss;
    const heapBefore = process.memoryUsage().heapUsed;
    const idle: string[] = [];
    for (let i = 0; i < IDLE_KERNELS; i++) idle.push((await post(`${url}/v1/kernel/create`, { lang: 'python3' })).kernelId);
    gc?.();
    const rssAfter = process.memoryUsage().rss;
    const heapAfter = process.memoryUsage().heapUsed;
    results.idle_kernels = IDLE_KERNELS;
    results.service_rss_per_idle_kernel_kb = Math.round((rssAfter - rssBefore) / 1024 / IDLE_KERNELS);
    results.service_heap_per_idle_kernel_kb = Math.round((heapAfter - heapBefore) / 1024 / IDLE_KERNELS);
    results.gc_exposed = Boolean(gc);
    log(`memory per idle kernel: rss ${results.service_rss_per_idle_kernel_kb} KB heap ${results.service_heap_per_idle_kernel_kb} KB over ${IDLE_KERNELS}`);
    await Promise.all(idle.map((id) => del(`${url}/v1/kernel/${id}`)));
  } finally {
    await service.stop();
    await rm(stateDir, { recursive: true, force: true });
  }
}

async function benchJupyterServer(): Promise<void> {
  const probe = spawn(JUPYTER_PYTHON, ['-c', 'import jupyter_server, ipykernel'], { stdio: 'ignore' });
  const ok = await new Promise<boolean>((resolve) => probe.on('exit', (code) => resolve(code === 0)).on('error', () => resolve(false)));
  if (!ok) {
    log('Debian jupyter_server not installed: skipping the comparison');
    return;
  }
  const port = 20000 + Math.floor(Math.random() * 20000);
  const token = randomUUID();
  const root = await mkdtemp(path.join(os.tmpdir(), 'pk-jupyter-'));
  const server: ChildProcess = spawn(
    JUPYTER_PYTHON,
    ['-m', 'jupyter_server', '--no-browser', '--allow-root', `--port=${port}`, '--ip=127.0.0.1', `--ServerApp.token=${token}`, `--ServerApp.root_dir=${root}`],
    { stdio: 'ignore', env: { ...process.env, PATH: `/usr/bin:${process.env.PATH}` } },
  );
  const base = `http://127.0.0.1:${port}`;
  const headers = { authorization: `token ${token}`, 'content-type': 'application/json' };
  const call = async (method: string, route: string, body?: unknown) => {
    const response = await fetch(base + route, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    return text ? JSON.parse(text) : undefined;
  };
  try {
    for (let i = 0; i < 100; i++) {
      try {
        await call('GET', '/api');
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    const startSamples: number[] = [];
    for (let i = 0; i < START_N; i++) {
      let id = '';
      startSamples.push(
        await timeIt(async () => {
          id = (await call('POST', '/api/kernels', { name: 'python3' })).id;
          const ws = await JupyterWsClient.connect(`ws://127.0.0.1:${port}/api/kernels/${id}/channels?token=${token}`);
          await ws.request('kernel_info_request', {});
          await ws.execute('print(1)');
          ws.close();
        }),
      );
      await call('DELETE', `/api/kernels/${id}`);
    }
    results.jupyter_start_ms = summarize(startSamples);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await call('POST', '/api/kernels', { name: 'python3' })).id);
    const sockets = await Promise.all(ids.map((id) => JupyterWsClient.connect(`ws://127.0.0.1:${port}/api/kernels/${id}/channels?token=${token}`)));
    for (const ws of sockets) await ws.request('kernel_info_request', {});
    results.jupyter_ws_rtt_ms = summarize(await repeat(RTT_N, () => sockets[0]!.execute('x = 1')));
    results.jupyter_exec_per_s_4_kernels = await throughput(sockets.map((s) => (code: string) => s.execute(code)), THROUGHPUT_PER_KERNEL);
    sockets.forEach((s) => s.close());
    for (const id of ids) await call('DELETE', `/api/kernels/${id}`);
    log(`jupyter_server start ${JSON.stringify(results.jupyter_start_ms)} rtt ${JSON.stringify(results.jupyter_ws_rtt_ms)} ${results.jupyter_exec_per_s_4_kernels}/s`);
  } finally {
    server.kill('SIGTERM');
    await rm(root, { recursive: true, force: true });
  }
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a && b ? `${(a / b).toFixed(2)}×` : '—';
}

function table(): string {
  const r = results as any;
  const rows: string[][] = [
    ['execute round trip, direct ZMQ (baseline)', `${r.zmq_direct_rtt_ms?.p50} / ${r.zmq_direct_rtt_ms?.p99}`, '1.00×'],
    ['execute round trip, channels WebSocket', `${r.ws_rtt_ms?.p50 ?? '—'} / ${r.ws_rtt_ms?.p99 ?? '—'}`, ratio(r.ws_rtt_ms?.p50, r.zmq_direct_rtt_ms?.p50)],
    ['execute round trip, POST /v1/kernel/:id', `${r.v1_rtt_ms?.p50} / ${r.v1_rtt_ms?.p99}`, ratio(r.v1_rtt_ms?.p50, r.zmq_direct_rtt_ms?.p50)],
    ['execute round trip, Jupyter Server 1.23', `${r.jupyter_ws_rtt_ms?.p50 ?? '—'} / ${r.jupyter_ws_rtt_ms?.p99 ?? '—'}`, ratio(r.jupyter_ws_rtt_ms?.p50, r.zmq_direct_rtt_ms?.p50)],
    ['start until first execute, warm pool', `${r.start_warm_ms?.p50} / ${r.start_warm_ms?.p99}`, ''],
    ['start until first execute, cold', `${r.start_cold_ms?.p50} / ${r.start_cold_ms?.p99}`, ''],
    ['start until first execute, Jupyter Server (no container)', `${r.jupyter_start_ms?.p50 ?? '—'} / ${r.jupyter_start_ms?.p99 ?? '—'}`, ''],
  ];
  for (const [lang, s] of Object.entries((r.oneshot_ms ?? {}) as Record<string, Summary>)) {
    rows.push([`one-shot create+run+delete, ${lang} (warm)`, `${s.p50} / ${s.p99}`, '']);
  }
  rows.push(
    ['executions/s over 4 kernels, v1', String(r.v1_exec_per_s_4_kernels ?? '—'), ratio(r.v1_exec_per_s_4_kernels, r.jupyter_exec_per_s_4_kernels) + ' of Jupyter'],
    ['executions/s over 4 kernels, WebSocket', String(r.ws_exec_per_s_4_kernels ?? '—'), ratio(r.ws_exec_per_s_4_kernels, r.jupyter_exec_per_s_4_kernels) + ' of Jupyter'],
    ['executions/s over 4 kernels, Jupyter Server', String(r.jupyter_exec_per_s_4_kernels ?? '—'), ''],
    [`service memory per idle kernel (${r.idle_kernels} kernels)`, `${r.service_rss_per_idle_kernel_kb} KB RSS, ${r.service_heap_per_idle_kernel_kb} KB heap`, ''],
  );
  const lines = ['| what | p50 / p99 ms (or figure) | ratio |', '| --- | --- | --- |', ...rows.map((row) => `| ${row.join(' | ')} |`)];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const probe = await startBenchService({});
  const available = await probe.service.kernels.specs.names();
  await probe.service.stop();
  await rm(probe.stateDir, { recursive: true, force: true });
  const wanted = option('--langs', '');
  const langs = wanted ? wanted.split(',').filter((l) => available.includes(l)) : available;
  if (!langs.includes('python3')) throw new Error('the python3 image is missing: run `npm run images`');
  results.machine = { cpus: os.cpus().length, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, date: new Date().toISOString() };
  await benchService(langs);
  if (!flag('--no-jupyter') && existsSync(JUPYTER_PYTHON)) await benchJupyterServer();
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n\n${table()}\n`);
}

main().then(
  () => process.exit(0),
  (error: Error) => {
    process.stderr.write(`bench failed: ${error.stack}\n`);
    process.exit(1);
  },
);

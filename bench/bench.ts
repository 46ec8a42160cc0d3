/**
 * npm run bench: one run, one machine, every figure issue #7 asks for.
 *
 *  - the direct-ZMQ baseline: the same kernel (same image, same container) spoken to over its IPC sockets
 *  - this service's execute round trip through the channels WebSocket, through POST /v1/kernel/:id and
 *    through the v1 streaming WebSocket,
 *    interleaved with the baseline sample by sample, so that a change in the machine's load moves them all
 *  - kernel start until the first execute is answered, from a warm pool and cold
 *  - a one-shot snippet (create, run hello, delete) per language, from a warm pool
 *  - executions per second over 4 kernels at once (direct ZMQ as the ceiling, v1, WebSocket)
 *  - the service's own memory per idle kernel, over 100 idle kernels, and its CPU while they idle
 *  - and, when Debian's jupyter_server is installed, the same workload against it
 *  - judging through Judge0's API (bench/judging.ts): submissions per second against `docker run --rm`,
 *    the overhead per test case, a burst of 50
 *
 * The service runs as its own process (`node dist/src/main.js`), configured by environment as a user
 * would. Prints a JSON document and a table with ratios. Options: --quick (fewer samples), --idle-kernels N,
 * --no-jupyter, --langs a,b,
 * --only judging (the judging section alone), --judge-runtimes runc,crun (also compare the judge sandboxes'
 * OCI runtimes, each registered with the engine), --data (also the cold start of the data-science Python,
 * python3-data, and its first plot; left out by default, as is its warm pool: a 1 GB image few hosts run).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { kernelsCpuMs } from './container-cpu.js';
import { connectDirect, type DirectKernel } from './direct-zmq.js';
import { HELLO } from './hello.js';
import { benchJudging, compareSandboxRuntimes } from './judging.js';
import { JupyterWsClient } from './jupyter-ws-client.js';
import { jsonCall } from '../test/helpers/http-client.js';
import { freePort } from '../test/helpers/free-port.js';
import { startServiceProcess, type ServiceProcess } from '../test/helpers/service-process.js';
import { median, summarize, timeIt, type Summary } from './stats.js';
import { sleep } from '../test/helpers/wait.js';
import { channelsUrl } from '../test/helpers/jupyter-client.js';
import { StreamClient, streamUrl } from '../test/helpers/v1-stream.js';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const option = (name: string, fallback: string) => {
  const at = args.indexOf(name);
  return at >= 0 && args[at + 1] ? args[at + 1]! : fallback;
};
const QUICK = flag('--quick');
const RTT_N = QUICK ? 60 : 300;
const START_N = QUICK ? 5 : 10;
const ONESHOT_N = QUICK ? 3 : 8;
const THROUGHPUT_PER_KERNEL = QUICK ? 50 : 200;
const IDLE_KERNELS = Number(option('--idle-kernels', QUICK ? '20' : '100'));
const JUPYTER_PYTHON = '/usr/bin/python3';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const results: Record<string, unknown> = {};
const log = (msg: string) => process.stderr.write(`bench: ${msg}\n`);

/** Runs the samplers round-robin, one call each per round, after a few warm-up rounds. */
async function interleaved(n: number, samplers: Record<string, () => Promise<unknown>>): Promise<Record<string, Summary>> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(samplers).map((name) => [name, []]));
  for (let round = -5; round < n; round++) {
    for (const [name, sample] of Object.entries(samplers)) {
      const ms = await timeIt(sample);
      if (round >= 0) samples[name]!.push(ms);
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([name, s]) => [name, summarize(s)]));
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

/** create, run `code` with v1 until finished: the kernel id. */
async function createAndRun(service: ServiceProcess, lang: string, code: string): Promise<string> {
  const { kernelId } = await service.http.ok('POST', '/v1/kernel/create', { lang });
  const { result } = await service.http.ok('POST', `/v1/kernel/${kernelId}`, { mode: 'query', code });
  if (result.status !== 'finished' || result.exitCode !== 0) throw new Error(`${lang}: ${JSON.stringify(result)}`);
  return kernelId as string;
}

async function benchRoundTrips(service: ServiceProcess): Promise<void> {
  const { kernelId } = await service.http.ok('POST', '/v1/kernel/create', { lang: 'python3' });
  const direct = connectDirect(await service.connectionInfo(kernelId));
  const ws = await JupyterWsClient.connect(channelsUrl(service.url, kernelId));
  const stream = await StreamClient.open(streamUrl(service.url, kernelId));
  const rtt = await interleaved(RTT_N, {
    direct: () => direct.execute('x = 1'),
    ws: () => ws.execute('x = 1'),
    v1: () => service.http.ok('POST', `/v1/kernel/${kernelId}`, { mode: 'query', code: 'x = 1' }),
    stream: async () => {
      // The client keeps every frame; a run's are dropped once it ended, so the samples cost the same.
      await stream.run({ mode: 'query', code: 'x = 1' });
      stream.frames.length = 0;
    },
  });
  results.zmq_direct_rtt_ms = rtt.direct;
  results.ws_rtt_ms = rtt.ws;
  results.v1_rtt_ms = rtt.v1;
  results.v1_stream_rtt_ms = rtt.stream;
  log(`round trips ${JSON.stringify(rtt)}`);
  stream.close();
  ws.close();
  direct.close();
  await service.http.ok('DELETE', `/v1/kernel/${kernelId}`);
}

async function benchWarmStarts(service: ServiceProcess): Promise<void> {
  const v1: number[] = [];
  const jupyter: number[] = [];
  for (let i = 0; i < START_N; i++) {
    await service.poolsFull();
    let id = '';
    v1.push(await timeIt(async () => (id = await createAndRun(service, 'python3', 'print(1)'))));
    await service.http.ok('DELETE', `/v1/kernel/${id}`);
    await service.poolsFull();
    jupyter.push(
      await timeIt(async () => {
        id = (await service.http.ok('POST', '/api/kernels', { name: 'python3' })).id;
        const ws = await JupyterWsClient.connect(channelsUrl(service.url, id));
        await ws.execute('print(1)');
        ws.close();
      }),
    );
    await service.http.ok('DELETE', `/api/kernels/${id}`);
  }
  results.start_warm_ms = summarize(v1);
  results.start_warm_jupyter_api_ms = summarize(jupyter);
  log(`warm start v1 ${JSON.stringify(results.start_warm_ms)} /api/kernels+WebSocket ${JSON.stringify(results.start_warm_jupyter_api_ms)}`);
}

async function benchOneShots(service: ServiceProcess, langs: string[]): Promise<void> {
  const oneShot: Record<string, Summary> = {};
  for (const lang of langs) {
    const code = HELLO[lang];
    if (!code) continue;
    const samples: number[] = [];
    for (let i = 0; i < ONESHOT_N; i++) {
      await service.poolsFull();
      samples.push(await timeIt(async () => service.http.ok('DELETE', `/v1/kernel/${await createAndRun(service, lang, code)}`)));
    }
    oneShot[lang] = summarize(samples);
    log(`one-shot ${lang} ${JSON.stringify(oneShot[lang])}`);
  }
  results.oneshot_ms = oneShot;
}

/**
 * Executions per second over 4 kernels at once, straight over ZMQ, through v1 and through the WebSocket;
 * with the CPU time per execute of the kernels and of the service in each, which says where the bound is.
 */
async function benchThroughput(service: ServiceProcess): Promise<void> {
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) ids.push((await service.http.ok('POST', '/v1/kernel/create', { lang: 'python3' })).kernelId);
  const kernelsCpu = kernelsCpuMs(ids);
  const total = 4 * THROUGHPUT_PER_KERNEL;
  const measured = async (executors: ((code: string) => Promise<unknown>)[]) => {
    const [kernelFrom, serviceFrom] = [kernelsCpu(), service.cpuMs()];
    const perSecond = await throughput(executors, THROUGHPUT_PER_KERNEL);
    const round = (ms: number) => Math.round((ms / total) * 100) / 100;
    return { per_s: perSecond, kernel_cpu_ms_per_exec: round(kernelsCpu() - kernelFrom), service_cpu_ms_per_exec: round(service.cpuMs() - serviceFrom) };
  };
  const direct: DirectKernel[] = await Promise.all(ids.map(async (id) => connectDirect(await service.connectionInfo(id))));
  const viaDirect = await measured(direct.map((d) => (code: string) => d.execute(code)));
  direct.forEach((d) => d.close());
  const viaV1 = await measured(ids.map((id) => (code: string) => service.http.ok('POST', `/v1/kernel/${id}`, { mode: 'query', code })));
  const sockets = await Promise.all(ids.map((id) => JupyterWsClient.connect(channelsUrl(service.url, id))));
  const viaWs = await measured(sockets.map((s) => (code: string) => s.execute(code)));
  sockets.forEach((s) => s.close());
  await Promise.all(ids.map((id) => service.http.ok('DELETE', `/v1/kernel/${id}`)));
  results.zmq_direct_exec_per_s_4_kernels = viaDirect.per_s;
  results.v1_exec_per_s_4_kernels = viaV1.per_s;
  results.ws_exec_per_s_4_kernels = viaWs.per_s;
  results.throughput_cpu = { direct: viaDirect, v1: viaV1, ws: viaWs, cores: os.cpus().length };
  log(`throughput ${JSON.stringify(results.throughput_cpu)}`);
}

/**
 * The data-science Python from cold: create until the first execute is answered (as python3's above), then
 * the first plot, which imports numpy and matplotlib and draws a PNG.
 */
async function benchDataColdStarts(service: ServiceProcess): Promise<void> {
  const cold: number[] = [];
  const firstPlot: number[] = [];
  for (let i = 0; i < START_N; i++) {
    let id = '';
    cold.push(await timeIt(async () => (id = await createAndRun(service, 'python3-data', 'print(1)'))));
    firstPlot.push(await timeIt(() => service.http.ok('POST', `/v1/kernel/${id}`, { mode: 'query', code: 'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()' })));
    await service.http.ok('DELETE', `/v1/kernel/${id}`);
  }
  results.start_cold_data_ms = summarize(cold);
  results.first_plot_data_ms = summarize(firstPlot);
  log(`cold start python3-data ${JSON.stringify(results.start_cold_data_ms)}, first plot ${JSON.stringify(results.first_plot_data_ms)}`);
}

/** Cold starts, then the memory and CPU of the service with many idle kernels: a service with no pools. */
async function benchColdAndIdle(): Promise<void> {
  // 100 idle kernels at the default 256 MB cap are more caps than the default memory budget of a 24 GB
  // host allows; they use about 40 MB each, and the figure measured is the service's memory, not theirs.
  const service = await startServiceProcess({ env: { REDIS_URL, POLYKERNEL_FLUSH_WINDOW_MS: '30000', KG_MAX_KERNELS: '0', POLYKERNEL_MEMORY_BUDGET_KB: '0' }, echoStderr: true });
  try {
    const cold: number[] = [];
    for (let i = 0; i < START_N; i++) {
      let id = '';
      cold.push(await timeIt(async () => (id = await createAndRun(service, 'python3', 'print(1)'))));
      await service.http.ok('DELETE', `/v1/kernel/${id}`);
    }
    results.start_cold_ms = summarize(cold);
    log(`cold start ${JSON.stringify(results.start_cold_ms)}`);
    if (flag('--data')) await benchDataColdStarts(service);

    // Memory: the service warmed up (every code path has run once), then many idle kernels.
    const settledRss = async () => {
      const samples: number[] = [];
      for (let i = 0; i < 5; i++) {
        await sleep(1000);
        samples.push(service.rssKB());
      }
      return median(samples);
    };
    const rssBefore = await settledRss();
    const ids: string[] = [];
    const startedAt = Date.now();
    // Four creates at a time: the engine and the kernels' boots share two cores.
    for (let i = 0; i < IDLE_KERNELS; i += 4) {
      const batch = Array.from({ length: Math.min(4, IDLE_KERNELS - i) }, () => createAndRun(service, 'python3', 'x = 1'));
      ids.push(...(await Promise.all(batch)));
    }
    const createSeconds = (Date.now() - startedAt) / 1000;
    const status = await service.http.ok('GET', '/api/status');
    if (status.kernels !== IDLE_KERNELS) throw new Error(`expected ${IDLE_KERNELS} kernels, the service reports ${status.kernels}`);
    // Let the usage sampler go round several times before reading memory and CPU at rest.
    await sleep(5000);
    const rssAfter = await settledRss();
    const cpuFrom = service.cpuMs();
    const idleWindowMs = 10_000;
    await sleep(idleWindowMs);
    const idleCpuPercent = ((service.cpuMs() - cpuFrom) / idleWindowMs) * 100;
    // Every kernel still answers.
    const answered = await Promise.all(ids.map((id) => service.http.ok('POST', `/v1/kernel/${id}`, { mode: 'query', code: 'print(x)' })));
    const alive = answered.filter((a) => a.result.status === 'finished' && a.result.exitCode === 0).length;
    results.idle = {
      kernels: IDLE_KERNELS,
      answered_after_idling: alive,
      create_all_s: Math.round(createSeconds * 10) / 10,
      service_rss_before_mb: Math.round(rssBefore / 102.4) / 10,
      service_rss_after_mb: Math.round(rssAfter / 102.4) / 10,
      service_rss_per_idle_kernel_kb: Math.round((rssAfter - rssBefore) / IDLE_KERNELS),
      service_cpu_percent_while_idle: Math.round(idleCpuPercent * 10) / 10,
    };
    log(`idle kernels ${JSON.stringify(results.idle)}`);
    for (let i = 0; i < ids.length; i += 10) await Promise.all(ids.slice(i, i + 10).map((id) => service.http.ok('DELETE', `/v1/kernel/${id}`)));
  } finally {
    await service.stop();
  }
}

/** Judging, by a service with warm sandboxes for the two languages measured, as a judge would run it. */
async function benchJudgingSection(): Promise<void> {
  const service = await startServiceProcess({ env: { REDIS_URL, POLYKERNEL_JUDGE_WARM: 'python3=2,c=2' }, echoStderr: true });
  try {
    results.judging = await benchJudging(service, { concurrency: 4, perLanguage: QUICK ? 10 : 40 }, log);
  } finally {
    await service.stop();
  }
  const runtimes = option('--judge-runtimes', '').split(',').filter(Boolean);
  if (runtimes.length < 2) return;
  const services: Record<string, ServiceProcess> = {};
  try {
    for (const runtime of runtimes) services[runtime] = await startServiceProcess({ env: { REDIS_URL, POLYKERNEL_JUDGE_RUNTIME: runtime, POLYKERNEL_JUDGE_WARM: 'c=2' }, echoStderr: true });
    results.judging_runtimes_c_ab_per_s = await compareSandboxRuntimes(services, { concurrency: 4, perLanguage: 10, rounds: QUICK ? 3 : 6 }, log);
  } finally {
    await Promise.all(Object.values(services).map((service) => service.stop()));
  }
}

/**
 * The round trip through a gateway and a node agent on loopback (POLYKERNEL_ROLE=gateway / agent, the
 * CurveZMQ link between them) against one process (role all), interleaved so that both see the same load.
 */
async function benchLinkSection(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pk-bench-key-'));
  const keyFile = path.join(dir, 'cluster.key');
  await writeFile(keyFile, randomBytes(32).toString('base64'));
  const prefix = `pk-bench-link-${randomBytes(4).toString('hex')}:`;
  const linkPort = await freePort();
  const local = await startServiceProcess({ env: { REDIS_URL, POLYKERNEL_FLUSH_WINDOW_MS: '30000' }, echoStderr: true });
  const agent = await startServiceProcess({
    label: 'bench-agent',
    env: { REDIS_URL, POLYKERNEL_ROLE: 'agent', POLYKERNEL_CLUSTER_KEY_FILE: keyFile, POLYKERNEL_AGENT_LISTEN: `127.0.0.1:${linkPort}`, POLYKERNEL_AGENT_ID: 'bench-node', POLYKERNEL_REDIS_PREFIX: prefix },
    echoStderr: true,
  });
  const gateway = await startServiceProcess({
    label: 'bench-gateway',
    env: { REDIS_URL, POLYKERNEL_ROLE: 'gateway', POLYKERNEL_CLUSTER_KEY_FILE: keyFile, POLYKERNEL_REDIS_PREFIX: prefix, POLYKERNEL_FLUSH_WINDOW_MS: '30000' },
    echoStderr: true,
  });
  try {
    const localId = (await local.http.ok('POST', '/v1/kernel/create', { lang: 'python3' })).kernelId as string;
    const remoteId = (await gateway.http.ok('POST', '/v1/kernel/create', { lang: 'python3' })).kernelId as string;
    const localWs = await JupyterWsClient.connect(channelsUrl(local.url, localId));
    const remoteWs = await JupyterWsClient.connect(channelsUrl(gateway.url, remoteId));
    const rtt = await interleaved(RTT_N, {
      localWs: () => localWs.execute('x = 1'),
      remoteWs: () => remoteWs.execute('x = 1'),
      localV1: () => local.http.ok('POST', `/v1/kernel/${localId}`, { mode: 'query', code: 'x = 1' }),
      remoteV1: () => gateway.http.ok('POST', `/v1/kernel/${remoteId}`, { mode: 'query', code: 'x = 1' }),
    });
    results.link_local_ws_rtt_ms = rtt.localWs;
    results.link_gateway_ws_rtt_ms = rtt.remoteWs;
    results.link_local_v1_rtt_ms = rtt.localV1;
    results.link_gateway_v1_rtt_ms = rtt.remoteV1;
    log(`link round trips ${JSON.stringify(rtt)}`);
    localWs.close();
    remoteWs.close();
    await local.http.ok('DELETE', `/v1/kernel/${localId}`);
    await gateway.http.ok('DELETE', `/v1/kernel/${remoteId}`);
  } finally {
    await gateway.stop();
    await agent.stop();
    await local.stop();
    await rm(dir, { recursive: true, force: true });
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
  const jupyter = jsonCall(base, { authorization: `token ${token}` });
  const call = async (method: string, route: string, body?: unknown) => (await jupyter(method, route, body)).body;
  const connect = (id: string) => JupyterWsClient.connect(`ws://127.0.0.1:${port}/api/kernels/${id}/channels?token=${token}`);
  try {
    for (let i = 0; i < 100; i++) {
      try {
        await call('GET', '/api');
        break;
      } catch {
        await sleep(200);
      }
    }
    const startSamples: number[] = [];
    for (let i = 0; i < START_N; i++) {
      let id = '';
      startSamples.push(
        await timeIt(async () => {
          id = (await call('POST', '/api/kernels', { name: 'python3' })).id;
          const ws = await connect(id);
          await ws.execute('print(1)');
          ws.close();
        }),
      );
      await call('DELETE', `/api/kernels/${id}`);
    }
    results.jupyter_start_ms = summarize(startSamples);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await call('POST', '/api/kernels', { name: 'python3' })).id);
    const sockets = await Promise.all(ids.map(connect));
    for (const ws of sockets) await ws.request('kernel_info_request', {});
    results.jupyter_ws_rtt_ms = (await interleaved(RTT_N, { jupyter: () => sockets[0]!.execute('x = 1') })).jupyter;
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
  const pair = (s?: Summary) => (s ? `${s.p50} / ${s.p99}` : '—');
  const rows: string[][] = [
    ['execute round trip, direct ZMQ (baseline)', pair(r.zmq_direct_rtt_ms), '1.00×'],
    ['execute round trip, channels WebSocket', pair(r.ws_rtt_ms), ratio(r.ws_rtt_ms?.p50, r.zmq_direct_rtt_ms?.p50)],
    ['execute round trip, POST /v1/kernel/:id', pair(r.v1_rtt_ms), ratio(r.v1_rtt_ms?.p50, r.zmq_direct_rtt_ms?.p50)],
    ['execute round trip, v1 streaming WebSocket', pair(r.v1_stream_rtt_ms), ratio(r.v1_stream_rtt_ms?.p50, r.zmq_direct_rtt_ms?.p50)],
    ['execute round trip, Jupyter Server', pair(r.jupyter_ws_rtt_ms), ratio(r.jupyter_ws_rtt_ms?.p50, r.zmq_direct_rtt_ms?.p50)],
    ['execute round trip, channels WebSocket, one process (role all; link section)', pair(r.link_local_ws_rtt_ms), ''],
    ['execute round trip, channels WebSocket, gateway + node agent on loopback', pair(r.link_gateway_ws_rtt_ms), ratio(r.link_gateway_ws_rtt_ms?.p50, r.link_local_ws_rtt_ms?.p50) + ' of one process'],
    ['execute round trip, POST /v1/kernel/:id, one process (role all; link section)', pair(r.link_local_v1_rtt_ms), ''],
    ['execute round trip, POST /v1/kernel/:id, gateway + node agent on loopback', pair(r.link_gateway_v1_rtt_ms), ratio(r.link_gateway_v1_rtt_ms?.p50, r.link_local_v1_rtt_ms?.p50) + ' of one process'],
    ['start until first execute, warm pool, v1 create + query', pair(r.start_warm_ms), ''],
    ['start until first execute, warm pool, POST /api/kernels + WebSocket execute', pair(r.start_warm_jupyter_api_ms), ''],
    ['start until first execute, cold', pair(r.start_cold_ms), ''],
    ['start until first execute, cold, python3-data (--data)', pair(r.start_cold_data_ms), ratio(r.start_cold_data_ms?.p50, r.start_cold_ms?.p50)],
    ['first plot in a fresh python3-data kernel (imports matplotlib, draws a PNG)', pair(r.first_plot_data_ms), ''],
    ['start until first execute, Jupyter Server (no container)', pair(r.jupyter_start_ms), ''],
  ];
  for (const [lang, s] of Object.entries((r.oneshot_ms ?? {}) as Record<string, Summary>)) {
    rows.push([`one-shot create+run+delete, ${lang} (warm)`, pair(s), '']);
  }
  const ofJupyter = (x?: number) => `${ratio(x, r.jupyter_exec_per_s_4_kernels)} of Jupyter Server`;
  rows.push(
    ['executions/s over 4 kernels, direct ZMQ (ceiling)', String(r.zmq_direct_exec_per_s_4_kernels ?? '—'), ofJupyter(r.zmq_direct_exec_per_s_4_kernels)],
    ['executions/s over 4 kernels, v1', String(r.v1_exec_per_s_4_kernels ?? '—'), ofJupyter(r.v1_exec_per_s_4_kernels)],
    ['executions/s over 4 kernels, WebSocket', String(r.ws_exec_per_s_4_kernels ?? '—'), ofJupyter(r.ws_exec_per_s_4_kernels)],
    ['executions/s over 4 kernels, Jupyter Server', String(r.jupyter_exec_per_s_4_kernels ?? '—'), ''],
  );
  const cpu = r.throughput_cpu;
  if (cpu) {
    const kernelMs = cpu.direct.kernel_cpu_ms_per_exec;
    rows.push(
      ['CPU per execute: the kernel (ipykernel)', `${kernelMs} ms`, `${cpu.cores} cores bound any server at ${Math.round((cpu.cores * 1000) / kernelMs)}/s`],
      ['CPU per execute: this service, v1 / WebSocket', `${cpu.v1.service_cpu_ms_per_exec} / ${cpu.ws.service_cpu_ms_per_exec} ms`, ''],
    );
  }
  if (r.idle) {
    rows.push(
      [`service memory per idle kernel (${r.idle.kernels} idle kernels)`, `${r.idle.service_rss_per_idle_kernel_kb} KB RSS`, `${r.idle.service_rss_before_mb} → ${r.idle.service_rss_after_mb} MB`],
      [`service CPU with ${r.idle.kernels} idle kernels`, `${r.idle.service_cpu_percent_while_idle} % of a core`, `${r.idle.answered_after_idling}/${r.idle.kernels} answered after`],
    );
  }
  const judging = r.judging;
  if (judging) {
    for (const [name, what] of [['python_print', 'Python print'], ['c_ab', 'C A+B, compiled and run']] as const) {
      const s = judging.sustained[name];
      rows.push([`judged submissions/s, ${what}, each in a fresh sandbox (${judging.concurrency} in flight)`, `${s.service_per_s} (docker run --rm: ${s.ceiling_per_s})`, `${s.of_ceiling}× the ceiling`]);
    }
    const o = judging.per_test_overhead_ms;
    rows.push(
      [`judging overhead per test case beyond the program's run (${o.tests} tests, ${o.compilations} compile)`, pair(o), ''],
      ['judging, a burst of 50 C submissions: latency', pair(judging.burst_50), `${judging.burst_50.lost} lost`],
    );
  }
  const byRuntime = r.judging_runtimes_c_ab_per_s as Record<string, number> | undefined;
  if (byRuntime) {
    const [first, ...others] = Object.entries(byRuntime);
    for (const [runtime, perS] of [first!, ...others]) rows.push([`judged C A+B submissions/s, sandboxes under ${runtime} (alternating rounds)`, String(perS), ratio(perS, first![1]) + ` of ${first![0]}`]);
  }
  // A section that did not run (--only, no Jupyter Server) leaves no empty rows.
  const measured = rows.filter((row) => row[1] !== '—');
  const lines = ['| what | p50 / p99 ms (or figure) | ratio |', '| --- | --- | --- |', ...measured.map((row) => `| ${row.join(' | ')} |`)];
  return lines.join('\n');
}

async function main(): Promise<void> {
  results.machine = {
    cpus: os.cpus().length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
    date: new Date().toISOString(),
  };
  if (option('--only', '') === 'link') {
    await benchLinkSection();
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n\n${table()}\n`);
    return;
  }
  if (option('--only', '') === 'judging') {
    await benchJudgingSection();
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n\n${table()}\n`);
    return;
  }
  const probe = await startServiceProcess({ env: { REDIS_URL }, echoStderr: true });
  const available = Object.keys((await probe.http.ok('GET', '/api/kernelspecs')).kernelspecs as Record<string, unknown>);
  await probe.stop();
  const wanted = option('--langs', '');
  // python3-data (a kernel for tutorials, not a judged language) only when asked for: see --data.
  const langs = wanted ? wanted.split(',').filter((l) => available.includes(l)) : available.filter((l) => l !== 'python3-data');
  if (!langs.includes('python3')) throw new Error('the python3 image is missing: run `npm run images`');

  const pools = langs.map((lang) => `${lang}=${lang === 'python3' ? 2 : 1}`).join(',');
  // The direct-ZMQ baseline runs code in a kernel behind the service's back: the service would take that
  // CPU for a process left running after its query (the idle-CPU budget) and remove the kernel.
  const service = await startServiceProcess({ env: { REDIS_URL, POLYKERNEL_POOL_SIZES: pools, POLYKERNEL_FLUSH_WINDOW_MS: '30000', POLYKERNEL_IDLE_CPU_MS: '0' }, echoStderr: true });
  try {
    await service.poolsFull(300_000);
    await benchRoundTrips(service);
    await benchWarmStarts(service);
    await benchOneShots(service, langs);
    await benchThroughput(service);
  } finally {
    await service.stop();
  }
  await benchColdAndIdle();
  await benchLinkSection();
  await benchJudgingSection();
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

/**
 * The service as the benchmark and the load test measure it: its own Node process (`node dist/src/main.js`,
 * configured by environment as a user would, with its own instance label, state directory and Redis
 * prefix), so that its memory and CPU are its own and the client code does not share its event loop. A
 * keep-alive HTTP client talks to it, as a judge's or REPL's backend would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectionDirOf } from '../../src/kernels/conn-dir.js';
import { CONNECTION_FILE_NAME, hostConnectionInfo, type ConnectionInfo } from '../../src/protocol/connection-file.js';
import { freePort } from './free-port.js';
import { HttpClient } from './http-client.js';

const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));
const STDERR_TAIL_CHARS = 20_000;

export interface ServiceProcess {
  url: string;
  pid: number;
  /** POLYKERNEL_INSTANCE: the label of its containers and the prefix of its Redis keys (`<instance>:`). */
  instance: string;
  stateDir: string;
  http: HttpClient;
  /** The kernel's connection info as the host reaches it (the benchmark's direct-ZMQ baseline). */
  connectionInfo(kernelId: string): Promise<ConnectionInfo>;
  /** Resolves when every warm pool holds its target (GET /api/status). */
  poolsFull(timeoutMs?: number): Promise<void>;
  /** Resident memory of the service process, in KB (VmRSS). */
  rssKB(): number;
  /** CPU time the service process has used so far, in ms (utime + stime). */
  cpuMs(): number;
  /** The last part of what the process wrote to stderr. */
  stderr(): string;
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM, SIGKILL if it has not exited within `boundMs`; then its state directory is removed. */
  stop(boundMs?: number): Promise<void>;
}

export interface ServiceProcessOptions {
  /** Environment on top of the instance's own (port, instance label, state directory, Redis prefix). */
  env?: Record<string, string>;
  /** Extra options for node, e.g. `--cpu-prof` to profile the service. */
  nodeArgs?: string[];
  /** Names the instance (`<label>-<random>`) and its state directory. */
  label?: string;
  /** The instance label itself (and so its Redis prefix): a restart of an earlier service process. */
  instance?: string;
  /** Also write the service's stderr to this process's (it is kept for `stderr()` either way). */
  echoStderr?: boolean;
  /** Headers `http` sends with every call: the admin token of a service started with KG_AUTH_TOKEN. */
  headers?: Record<string, string>;
}

export async function startServiceProcess(options: ServiceProcessOptions = {}): Promise<ServiceProcess> {
  const label = options.label ?? 'bench';
  const port = await freePort();
  const stateDir = await mkdtemp(path.join(os.tmpdir(), `pk-${label}-`));
  const instance = options.instance ?? `${label}-${randomUUID().slice(0, 8)}`;
  const child: ChildProcess = spawn(process.execPath, [...(options.nodeArgs ?? []), MAIN], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {
      ...process.env,
      KG_PORT: String(port),
      KG_IP: '127.0.0.1',
      POLYKERNEL_INSTANCE: instance,
      POLYKERNEL_STATE_DIR: stateDir,
      POLYKERNEL_REDIS_PREFIX: `${instance}:`,
      POLYKERNEL_LOG_LEVEL: 'warn',
      ...options.env,
    },
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-STDERR_TAIL_CHARS);
    if (options.echoStderr) process.stderr.write(chunk);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const client = new HttpClient(url, options.headers);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the service exited with code ${child.exitCode} while starting: ${stderr}`);
    try {
      await client.ok('GET', '/api');
      break;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`the service did not answer within 60 s: ${(error as Error).message}; ${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  const pid = child.pid!;
  const clockTicks = 100; // USER_HZ on Linux
  return {
    url,
    pid,
    instance,
    stateDir,
    http: client,
    async connectionInfo(kernelId) {
      const connDir = connectionDirOf(stateDir, instance, kernelId);
      return hostConnectionInfo(connDir, JSON.parse(await readFile(path.join(connDir, CONNECTION_FILE_NAME), 'utf8')));
    },
    async poolsFull(timeoutMs = 120_000) {
      const until = Date.now() + timeoutMs;
      while (Date.now() < until) {
        const { pools } = await client.ok('GET', '/api/status');
        if (Object.values(pools as Record<string, { ready: number; target: number }>).every((p) => p.ready >= p.target)) return;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error(`warm pools not full within ${timeoutMs} ms`);
    },
    rssKB() {
      const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      return Number(match?.[1] ?? NaN);
    },
    cpuMs() {
      // Fields 14 and 15 of /proc/<pid>/stat, counted after the command name's closing parenthesis.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks;
    },
    stderr: () => stderr,
    signal: (signal) => void child.kill(signal),
    async stop(boundMs = 30_000) {
      client.close();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, boundMs)))]);
        clearTimeout(timer);
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGKILL');
          await exited;
        }
      }
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

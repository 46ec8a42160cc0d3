/**
 * Attack: a kernel that writes to logs the host keeps.
 * - Its own stderr (the container's, bypassing Jupyter), from the kernel and from a detached writer that
 *   outlives the cell: the engine must keep no log of it (or a capped one).
 * - Forged frames on its iopub socket, each one a "Dropped a bad frame from a kernel" warning in the
 *   service's log: the warnings are rate-limited, with a summary of how many were left out.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { DOCKER } from '../helpers/docker.js';
import { startTestService, type TestService } from '../helpers/service.js';
import { createKernel, query } from '../helpers/v1-client.js';
import { sleep } from '../helpers/wait.js';

const LOG_BOUND_BYTES = 20 * 1024 * 1024;

let svc: TestService;
const lines: string[] = [];

test.before(async () => {
  // The service's log as a list of lines: what a log file on the host would receive.
  svc = await startTestService({ logLevel: 'warn' }, undefined, (line) => void lines.push(line));
});

test.after.always(async () => {
  await svc?.stop();
});

const containerOf = (kernelId: string) =>
  execFileSync(DOCKER, ['ps', '-q', '--no-trunc', '--filter', `label=org.polykernel.kernel-id=${kernelId}`], { encoding: 'utf8' }).trim();

async function logFileBytes(containerId: string): Promise<number> {
  const logPath = execFileSync(DOCKER, ['inspect', '--format', '{{.LogPath}}', containerId], { encoding: 'utf8' }).trim();
  if (!logPath) return 0;
  return (await stat(logPath).catch(() => ({ size: 0 }))).size;
}

test.serial('a kernel flooding its container stderr (and a detached writer) leaves no growing engine log', async (t) => {
  t.timeout(90_000);
  const kernelId = await createKernel(svc.call, { lang: 'python3', resourceLimits: { timeout: 60_000 } });
  const containerId = containerOf(kernelId);
  const logConfig = JSON.parse(execFileSync(DOCKER, ['inspect', '--format', '{{json .HostConfig.LogConfig}}', containerId], { encoding: 'utf8' }));
  t.log(`LogConfig ${JSON.stringify(logConfig)}`);
  // 4 s of 1 MiB writes to the container's stderr (PID 1's, which the engine collects), then a writer
  // left running in the background after the cell ended.
  const code = [
    'import os, subprocess, time',
    'fd = os.open("/proc/1/fd/2", os.O_WRONLY)',
    'chunk = b"e" * 1048576',
    'end = time.time() + 4',
    'while time.time() < end:',
    '    os.write(fd, chunk)',
    'subprocess.Popen(["sh", "-c", "exec cat /dev/zero > /proc/1/fd/2"], start_new_session=True)',
    'print("done")',
  ].join('\n');
  const outcome = await query(svc.call, kernelId, code);
  t.is(outcome.status, 'finished', outcome.text);
  const afterCell = await logFileBytes(containerId);
  await sleep(3000);
  const later = await logFileBytes(containerId);
  t.log(`engine log of the kernel: ${afterCell} bytes after the cell, ${later} bytes 3 s later (detached writer)`);
  t.true(logConfig.Type === 'none' || Boolean(logConfig.Config?.['max-size']), `log driver ${logConfig.Type} without a size cap`);
  t.true(later < LOG_BOUND_BYTES, `the engine kept ${later} bytes of the kernel's stderr`);
  await svc.call('DELETE', `/v1/kernel/${kernelId}`);
});

test.serial('a kernel forging frames on iopub: the warnings about them are rate-limited with a summary', async (t) => {
  t.timeout(90_000);
  const kernelId = await createKernel(svc.call, { lang: 'python3', resourceLimits: { timeout: 60_000 } });
  const code = [
    'import time',
    'sock = get_ipython().kernel.iopub_socket',
    'end = time.time() + 6',
    'n = 0',
    'while time.time() < end:',
    '    sock.send_multipart([b"<IDS|MSG>", b"forged", b"{}", b"{}", b"{}", b"{}"])',
    '    n += 1',
    '    if n % 200 == 0: time.sleep(0.001)',
    'print(n)',
  ].join('\n');
  const before = lines.length;
  const outcome = await query(svc.call, kernelId, code);
  t.is(outcome.status, 'finished', outcome.text);
  const forged = Number(outcome.text.trim());
  await sleep(1000);
  const written = lines.slice(before).filter((line) => line.includes('Dropped a bad frame from a kernel'));
  t.log(`${forged} forged frames sent; ${written.length} log lines about them`);
  t.true(forged > 5000, `the kernel forged ${forged} frames`);
  t.true(written.length <= 20, `${written.length} log lines for ${forged} forged frames`);
  t.true(written.length >= 1, 'the first ones are logged');
  // The kernel still works, and the next interval's summary counts what was left out.
  t.is((await query(svc.call, kernelId, 'print(6 * 7)')).text, '42\n');
  const deadline = Date.now() + 15_000;
  let summary: string | undefined;
  while (!summary && Date.now() < deadline) {
    summary = lines.slice(before).find((line) => line.includes('Dropped a bad frame') && line.includes('suppressed'));
    await sleep(200);
  }
  t.log(`summary: ${summary}`);
  t.truthy(summary, 'a summary line says how many were left out');
  await svc.call('DELETE', `/v1/kernel/${kernelId}`);
});

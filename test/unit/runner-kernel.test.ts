/**
 * The runner as a Jupyter kernel, on this machine (no Docker): started like the images start it, reached
 * over ZMQ IPC by the service's own client (LiveKernel). Pins the message flow a client relies on:
 * readiness, kernel_info, busy/idle around every request, execute_input/stream/execute_result/error,
 * input_request with the program's prompt, is_complete, interrupt by message and by SIGINT, aborting
 * queued cells after an error, restart in place, and shutdown.
 */
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LiveKernel } from '../../src/kernels/live-kernel.js';
import { KernelConnection } from '../../src/transport/kernel-connection.js';
import { containerConnectionInfo, newKernelKey } from '../../src/protocol/connection-file.js';
import { parentMsgId, type JupyterMessage } from '../../src/protocol/messages.js';

const RUNNER = fileURLToPath(new URL('../../src/runner/main.js', import.meta.url));

interface Started {
  kernel: LiveKernel;
  runner: ChildProcess;
  dir: string;
}

async function startRunner(language: string): Promise<Started> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pk-kernel-'));
  const info = { ...containerConnectionInfo(newKernelKey(), language), ip: path.join(dir, 'k') };
  writeFileSync(path.join(dir, 'conn.json'), JSON.stringify(info));
  const runner = spawn(process.execPath, [RUNNER, language, path.join(dir, 'conn.json')], {
    cwd: dir,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, POLYKERNEL_RUNNER_LOG_LEVEL: 'warn' },
  });
  const kernel = new LiveKernel('test', () => new KernelConnection(info), Date.now);
  await kernel.waitReady(20_000);
  return { kernel, runner, dir };
}

function stop({ kernel, runner, dir }: Started): void {
  kernel.close();
  runner.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}

/** Sends a request and collects every message it is the parent of, until its idle status. */
function exchange(kernel: LiveKernel, channel: 'shell' | 'control', msgType: string, content: Record<string, unknown>, onMessage?: (msg: JupyterMessage) => void) {
  const request = kernel.message(msgType, content);
  const expectReply = msgType !== 'shutdown_request';
  const seen: { channel: string; msg: JupyterMessage }[] = [];
  return new Promise<{ channel: string; msg: JupyterMessage }[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${msgType}: no idle within 20 s; saw ${seen.map((s) => s.msg.header.msg_type)}`)), 20_000);
    const off = kernel.onMessage((ch, msg) => {
      if (parentMsgId(msg) !== request.header.msg_id) return;
      seen.push({ channel: ch, msg });
      onMessage?.(msg);
      // The reply and the idle status travel on different sockets: either may come first.
      const idle = seen.some((s) => s.msg.header.msg_type === 'status' && s.msg.content.execution_state === 'idle');
      const replied = seen.some((s) => s.channel === channel && s.msg.header.msg_type.endsWith('_reply'));
      if (idle && (replied || !expectReply)) {
        clearTimeout(timer);
        off();
        resolve(seen);
      }
    });
    void kernel.send(channel, request);
  });
}

const types = (seen: { channel: string; msg: JupyterMessage }[]) => seen.map((s) => `${s.channel}:${s.msg.header.msg_type}`);
const find = (seen: { channel: string; msg: JupyterMessage }[], type: string) => seen.find((s) => s.msg.header.msg_type === type)?.msg;
const execute = (code: string, extra: Record<string, unknown> = {}) => ({ code, silent: false, store_history: true, user_expressions: {}, allow_stdin: true, stop_on_error: true, ...extra });

test('javascript runner: the message flow of kernel_info, execute, errors, input and is_complete', async (t) => {
  const started = await startRunner('javascript');
  const { kernel } = started;
  try {
    const info = find(await exchange(kernel, 'shell', 'kernel_info_request', {}), 'kernel_info_reply')!;
    t.is(info.content.protocol_version, '5.3');
    t.like(info.content.language_info as object, { name: 'javascript', mimetype: 'application/javascript', file_extension: '.js', codemirror_mode: 'javascript' });
    t.regex(String((info.content.language_info as { version: string }).version), /^\d+\.\d+\.\d+$/);

    const ok = await exchange(kernel, 'shell', 'execute_request', execute('console.log("a"); 40 + 2'));
    const iopub = types(ok).filter((type) => type.startsWith('iopub:'));
    t.deepEqual(iopub, ['iopub:status', 'iopub:execute_input', 'iopub:stream', 'iopub:execute_result', 'iopub:status']);
    t.true(types(ok).includes('shell:execute_reply'));
    t.is(find(ok, 'status')!.content.execution_state, 'busy');
    t.deepEqual(find(ok, 'stream')!.content, { name: 'stdout', text: 'a\n' });
    t.deepEqual(find(ok, 'execute_result')!.content, { execution_count: 1, data: { 'text/plain': '42' }, metadata: {} });
    t.like(find(ok, 'execute_reply')!.content, { status: 'ok', execution_count: 1 });

    const failed = await exchange(kernel, 'shell', 'execute_request', execute('throw new Error("boom")'));
    t.like(find(failed, 'error')!.content, { ename: 'Error', evalue: 'boom' });
    t.like(find(failed, 'execute_reply')!.content, { status: 'error', ename: 'Error', execution_count: 2 });

    const asked = await exchange(kernel, 'shell', 'execute_request', execute('const who = input("name? "); console.log("hi " + who)'), (msg) => {
      if (msg.header.msg_type === 'input_request') void kernel.send('stdin', kernel.message('input_reply', { value: 'Ada' }, msg));
    });
    t.deepEqual(find(asked, 'input_request')!.content, { prompt: 'name? ', password: false });
    t.deepEqual(find(asked, 'stream')!.content, { name: 'stdout', text: 'hi Ada\n' });

    for (const [code, status] of [['function f() {', 'incomplete'], ['f(', 'incomplete'], ['1 +* 2', 'invalid'], ['1 + 2', 'complete']]) {
      t.is(find(await exchange(kernel, 'shell', 'is_complete_request', { code }), 'is_complete_reply')!.content.status, status, code);
    }

    // The container is the kernel, so a restart happens in place: a fresh realm, the count from 1.
    const restart = await kernel.request('control', kernel.message('shutdown_request', { restart: true }), 10_000);
    t.like(restart.content, { status: 'ok', restart: true });
    const fresh = await exchange(kernel, 'shell', 'execute_request', execute('typeof who'));
    t.deepEqual(find(fresh, 'execute_result')!.content, { execution_count: 1, data: { 'text/plain': "'undefined'" }, metadata: {} });
  } finally {
    stop(started);
  }
});

test('bash runner: interrupt_request, SIGINT, aborted queue after an error, shutdown', async (t) => {
  const started = await startRunner('bash');
  const { kernel, runner } = started;
  try {
    t.like(find(await exchange(kernel, 'shell', 'kernel_info_request', {}), 'kernel_info_reply')!.content.language_info as object, { name: 'bash', file_extension: '.sh' });
    await exchange(kernel, 'shell', 'execute_request', execute('n=7'));

    const looping = exchange(kernel, 'shell', 'execute_request', execute('while :; do :; done'));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const control = await exchange(kernel, 'control', 'interrupt_request', {});
    t.like(find(control, 'interrupt_reply')!.content, { status: 'ok' });
    t.like(find(await looping, 'execute_reply')!.content, { status: 'error', ename: 'Interrupted' });

    const sleeping = exchange(kernel, 'shell', 'execute_request', execute('sleep 30'));
    await new Promise((resolve) => setTimeout(resolve, 300));
    runner.kill('SIGINT');
    t.like(find(await sleeping, 'execute_reply')!.content, { status: 'error', ename: 'Interrupted' });

    const first = exchange(kernel, 'shell', 'execute_request', execute('sleep 0.3; false'));
    const second = exchange(kernel, 'shell', 'execute_request', execute('n=8'));
    t.like(find(await first, 'execute_reply')!.content, { status: 'error' });
    t.like(find(await second, 'execute_reply')!.content, { status: 'aborted' });
    const after = await exchange(kernel, 'shell', 'execute_request', execute('echo $n'));
    t.deepEqual(find(after, 'stream')!.content, { name: 'stdout', text: '7\n' }, 'the aborted cell did not run');

    const exited = new Promise<number | null>((resolve) => runner.once('exit', resolve));
    const shutdown = kernel.request('control', kernel.message('shutdown_request', { restart: false }), 10_000);
    t.like((await shutdown).content, { status: 'ok', restart: false });
    t.is(await exited, 0);
  } finally {
    stop(started);
  }
});

/**
 * JupyterLab's own client library (@jupyterlab/services, from npm) as the client, from plain Node:
 * KernelManager and SessionManager against the service as its Jupyter server. Everything goes through
 * the library's REST calls and its WebSocket (which picks the v1.kernel.websocket.jupyter.org framing).
 */
import test from 'ava';
import WebSocket from 'ws';
import { KernelManager, ServerConnection, SessionManager, type Kernel, type KernelMessage } from '@jupyterlab/services';
import { startTestService, type TestService } from '../helpers/service.js';
import { sleep } from '../helpers/wait.js';

const TOKEN = 'lab-token';
let svc: TestService;
let settings: ServerConnection.ISettings;
let kernels: KernelManager;
let kernel: Kernel.IKernelConnection;

test.before(async () => {
  svc = await startTestService({ authToken: TOKEN });
  settings = ServerConnection.makeSettings({
    baseUrl: `${svc.url}/`,
    wsUrl: `${svc.url.replace('http', 'ws')}/`,
    token: TOKEN,
    WebSocket: WebSocket as unknown as typeof globalThis.WebSocket,
    fetch,
    Request,
    Headers,
  });
  kernels = new KernelManager({ serverSettings: settings });
  await kernels.ready;
  kernel = await kernels.startNew({ name: 'python3' });
  await kernel.info;
});

test.after.always(async () => {
  await kernel?.shutdown().catch(() => undefined);
  kernels?.dispose();
  await svc?.stop();
});

/** Runs code; resolves with its reply and what it printed. Answers input() with `input` when given. */
async function run(code: string, input?: string) {
  const future = kernel.requestExecute({ code, allow_stdin: input !== undefined, stop_on_error: true });
  let stdout = '';
  const prompts: string[] = [];
  future.onIOPub = (msg) => {
    if (msg.header.msg_type === 'stream') stdout += (msg as KernelMessage.IStreamMsg).content.text;
  };
  future.onStdin = (msg) => {
    if (msg.header.msg_type === 'input_request') {
      prompts.push((msg as KernelMessage.IInputRequestMsg).content.prompt);
      kernel.sendInputReply({ status: 'ok', value: input ?? '' }, msg.header as KernelMessage.IInputReplyMsg['parent_header']);
    }
  };
  const reply = await future.done;
  return { reply: reply.content as KernelMessage.IExecuteReplyMsg['content'], stdout, prompts };
}

test.serial('KernelManager.startNew: the kernel is connected over the v1 framing and answers kernel_info', async (t) => {
  const info = await kernel.info;
  t.is(info.language_info.name, 'python');
  t.is(kernel.connectionStatus, 'connected');
  t.is((kernel as unknown as { _ws: WebSocket })._ws.protocol, 'v1.kernel.websocket.jupyter.org');
  await kernels.refreshRunning();
  t.true([...kernels.running()].some((model) => model.id === kernel.id), 'GET /api/kernels lists it in a form the library accepts');
});

test.serial('requestExecute streams stdout; input() is answered through the stdin channel', async (t) => {
  const printed = await run('for i in range(3): print("line", i)');
  t.is(printed.reply.status, 'ok');
  t.is(printed.stdout, 'line 0\nline 1\nline 2\n');
  const asked = await run('name = input("name? ")\nprint("hello", name)', 'Ada');
  t.deepEqual(asked.prompts, ['name? ']);
  t.is(asked.stdout, 'hello Ada\n');
});

test.serial('requestComplete, requestInspect, requestIsComplete and requestHistory', async (t) => {
  const complete = await kernel.requestComplete({ code: 'import o', cursor_pos: 8 });
  t.is(complete.content.status, 'ok');
  t.true((complete.content as { matches: string[] }).matches.includes('os'));

  const inspect = await kernel.requestInspect({ code: 'len', cursor_pos: 3, detail_level: 0 });
  const found = inspect.content as KernelMessage.IInspectReply;
  t.true(found.found);
  t.regex(String(found.data['text/plain']), /len/);

  const incomplete = await kernel.requestIsComplete({ code: 'for i in range(3):' });
  t.is(incomplete.content.status, 'incomplete');
  const whole = await kernel.requestIsComplete({ code: 'x = 1' });
  t.is(whole.content.status, 'complete');

  await run('marker_for_history = 1');
  const history = await kernel.requestHistory({ output: false, raw: true, hist_access_type: 'tail', n: 20 });
  t.is(history.content.status, 'ok');
  const entries = (history.content as KernelMessage.IHistoryReply).history as [number, number, string][];
  t.true(entries.some((entry) => entry[2] === 'marker_for_history = 1'), JSON.stringify(entries).slice(0, 300));
});

test.serial('interrupt stops a `while True: pass`', async (t) => {
  const future = kernel.requestExecute({ code: 'while True: pass' });
  const busy = new Promise<void>((resolve) => {
    future.onIOPub = (msg) => {
      if (msg.header.msg_type === 'execute_input') resolve();
    };
  });
  await busy;
  await sleep(300);
  await kernel.interrupt();
  const reply = await future.done;
  t.is(reply.content.status, 'error');
  t.is((reply.content as KernelMessage.IReplyErrorContent).ename, 'KeyboardInterrupt');
  t.is((await run('print("alive")')).stdout, 'alive\n');
});

test.serial('comm open, message and close round trip with a kernel-side target', async (t) => {
  await run(
    [
      'comm_state = {"closed": False}',
      'def _echo(comm, open_msg):',
      '    comm.send({"opened_with": open_msg["content"]["data"]})',
      '    comm.on_msg(lambda msg: comm.send({"echo": msg["content"]["data"]}))',
      '    def _closed(msg): comm_state["closed"] = True',
      '    comm.on_close(_closed)',
      'get_ipython().kernel.comm_manager.register_target("echo", _echo)',
    ].join('\n'),
  );
  const comm = kernel.createComm('echo');
  const received: unknown[] = [];
  let notify = () => {};
  comm.onMsg = (msg) => {
    received.push(msg.content.data);
    notify();
  };
  const waitFor = (n: number) =>
    new Promise<void>((resolve) => {
      notify = () => received.length >= n && resolve();
      notify();
    });
  await comm.open({ hello: 1 }).done;
  await waitFor(1);
  t.deepEqual(received[0], { opened_with: { hello: 1 } });
  await comm.send({ ping: 2 }).done;
  await waitFor(2);
  t.deepEqual(received[1], { echo: { ping: 2 } });
  await comm.close({ bye: 3 }).done;
  t.is((await run('print(comm_state["closed"])')).stdout, 'True\n');
});

test.serial('restart: the kernel comes back and a variable defined before is gone', async (t) => {
  await run('before_restart = 1');
  t.is((await run('print("before_restart" in globals())')).stdout, 'True\n');
  await kernel.restart();
  t.is((await run('print("before_restart" in globals())')).stdout, 'False\n');
  t.is(kernel.connectionStatus, 'connected');
});

test.serial('SessionManager: start a session, run code, rename it, change its kernel, shut it down', async (t) => {
  const sessions = new SessionManager({ kernelManager: kernels, serverSettings: settings });
  await sessions.ready;
  try {
    const session = await sessions.startNew({ path: 'work/nb.ipynb', type: 'notebook', name: 'nb.ipynb', kernel: { name: 'python3' } });
    const first = session.kernel!;
    const future = first.requestExecute({ code: 'print("from a session")' });
    let stdout = '';
    future.onIOPub = (msg) => {
      if (msg.header.msg_type === 'stream') stdout += (msg as KernelMessage.IStreamMsg).content.text;
    };
    await future.done;
    t.is(stdout, 'from a session\n');

    await session.setPath('work/renamed.ipynb');
    const model = (await svc.call('GET', `/api/sessions/${session.id}`, undefined, { authorization: `token ${TOKEN}` })).body;
    t.is(model.path, 'work/renamed.ipynb');
    t.is(model.kernel.id, first.id);

    const oldId = first.id;
    const second = (await session.changeKernel({ name: 'python3' }))!;
    t.not(second.id, oldId);
    await second.info;
    const reply = await second.requestExecute({ code: '1 + 1' }).done;
    t.is(reply.content.status, 'ok');
    t.is((await svc.call('GET', `/api/kernels/${oldId}`, undefined, { authorization: `token ${TOKEN}` })).status, 404);

    await session.shutdown();
    t.is((await svc.call('GET', `/api/sessions/${session.id}`, undefined, { authorization: `token ${TOKEN}` })).status, 404);
    t.is((await svc.call('GET', `/api/kernels/${second.id}`, undefined, { authorization: `token ${TOKEN}` })).status, 404);
  } finally {
    sessions.dispose();
  }
});

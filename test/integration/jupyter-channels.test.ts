/**
 * GET /api/kernels/:id/channels against a real kernel container: both framings, iopub broadcast and
 * per-session routing of replies, stdin, pass-through of message types the service does not know,
 * robustness against malformed frames, auth and origin on the handshake, the kernel model following
 * the channels, and the restarting/dead statuses. One service and one kernel for the whole file.
 */
import test from 'ava';
import { startTestService, type TestService } from '../helpers/service.js';
import { JupyterWs, V1 } from '../helpers/jupyter-ws.js';
import { sleep } from '../helpers/wait.js';
import { channelsUrl, startKernel } from '../helpers/jupyter-client.js';

const TOKEN = 'chan-token';
const AUTH = { authorization: `token ${TOKEN}` };
let svc: TestService;
let kernelId: string;
let wsUrl: string;

test.before(async () => {
  svc = await startTestService({ authToken: TOKEN });
  kernelId = await startKernel(svc.call, { name: 'python3' }, AUTH);
  wsUrl = `${channelsUrl(svc.url, kernelId)}?token=${TOKEN}`;
});

test.after.always(async () => {
  await svc?.stop();
});

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

test.serial('v1 subprotocol: selected when offered; execute streams on iopub and replies on shell', async (t) => {
  const client = await JupyterWs.open(wsUrl, { protocols: [V1] });
  t.is(client.ws.protocol, V1);
  const { reply, stdout, id } = await client.execute('print("hi", 6*7)');
  t.is(reply.channel, 'shell');
  t.is(reply.content.status, 'ok');
  t.is(stdout, 'hi 42\n');
  const stream = client.received.find((m) => m.parent_header.msg_id === id && m.header.msg_type === 'stream')!;
  t.is(stream.channel, 'iopub');
  const busy = client.received.find((m) => m.parent_header.msg_id === id && m.content.execution_state === 'busy');
  t.truthy(busy, 'status busy for the request arrives on iopub');

  // Round trip figures for the report: execute over the WebSocket vs the v1 REST API.
  const wsTimes: number[] = [];
  for (let i = 0; i < 15; i++) {
    const started = performance.now();
    await client.execute('1');
    wsTimes.push(performance.now() - started);
  }
  const { body: v1 } = await svc.call('POST', '/v1/kernel/create', { lang: 'python3' }, AUTH);
  const v1Times: number[] = [];
  for (let i = 0; i < 15; i++) {
    const started = performance.now();
    await svc.call('POST', `/v1/kernel/${v1.kernelId}`, { mode: 'query', code: '1' }, AUTH);
    v1Times.push(performance.now() - started);
  }
  await svc.call('DELETE', `/v1/kernel/${v1.kernelId}`, undefined, AUTH);
  t.log(`execute round trip, median of 15: WebSocket ${median(wsTimes).toFixed(1)} ms, v1 REST ${median(v1Times).toFixed(1)} ms`);
  await client.close();
});

test.serial('legacy protocol: no subprotocol offered, JSON text frames both ways', async (t) => {
  const client = await JupyterWs.open(wsUrl);
  t.is(client.ws.protocol, '');
  const id = client.send('shell', 'kernel_info_request');
  const reply = await client.reply(id, 'kernel_info_reply');
  t.is(reply.channel, 'shell');
  t.is(reply.content.language_info.name, 'python');
  t.is((reply as any).msg_type, 'kernel_info_reply', 'msg_type at the top level, as jupyter_server writes it');
  const { stdout } = await client.execute('print("legacy")');
  t.is(stdout, 'legacy\n');
  await client.close();
});

test.serial('iopub reaches every connection; shell replies only the session that asked', async (t) => {
  const a = await JupyterWs.open(wsUrl, { protocols: [V1] });
  const b = await JupyterWs.open(wsUrl);
  const { id, stdout } = await a.execute('print("to all")');
  t.is(stdout, 'to all\n');
  const seenByB = await b.next((m) => m.parent_header.msg_id === id && m.header.msg_type === 'stream');
  t.is(seenByB.content.text, 'to all\n');
  await b.idle(id);
  const infoId = b.send('shell', 'kernel_info_request');
  await b.reply(infoId, 'kernel_info_reply');
  await a.idle(infoId);
  t.false(b.received.some((m) => m.header.msg_type === 'execute_reply'), 'B never sees A\'s execute_reply');
  t.false(a.received.some((m) => m.parent_header.msg_id === infoId && m.channel === 'shell'), 'A never sees B\'s kernel_info_reply');
  await Promise.all([a.close(), b.close()]);
});

test.serial('input(): input_request reaches the asking client on stdin, input_reply answers it', async (t) => {
  const client = await JupyterWs.open(wsUrl, { protocols: [V1] });
  const other = await JupyterWs.open(wsUrl, { protocols: [V1] });
  const id = client.send('shell', 'execute_request', {
    code: 'name = input("name? ")\nprint("hello", name)',
    silent: false,
    store_history: true,
    user_expressions: {},
    allow_stdin: true,
    stop_on_error: true,
  });
  const ask = await client.reply(id, 'input_request');
  t.is(ask.channel, 'stdin');
  t.is(ask.content.prompt, 'name? ');
  client.send('stdin', 'input_reply', { value: 'Ada' });
  const reply = await client.reply(id, 'execute_reply');
  t.is(reply.content.status, 'ok');
  await client.idle(id);
  const out = client.received.filter((m) => m.parent_header.msg_id === id && m.header.msg_type === 'stream').map((m) => m.content.text);
  t.deepEqual(out, ['hello Ada\n']);
  t.false(other.received.some((m) => m.header.msg_type === 'input_request'), 'input_request goes to its session only');
  await Promise.all([client.close(), other.close()]);
});

test.serial('message types the service does not know pass through unchanged, both ways', async (t) => {
  const client = await JupyterWs.open(wsUrl, { protocols: [V1] });
  // To the kernel: ipykernel answers an unknown request only with busy/idle whose parent is that request.
  const probe = client.send('shell', 'polykernel_probe_request', { x: 1 });
  const busy = await client.next((m) => m.parent_header.msg_id === probe && m.content.execution_state === 'busy');
  t.is(busy.parent_header.msg_type, 'polykernel_probe_request');
  // From the kernel: a custom iopub message sent by the kernel's own session.
  const { id } = await client.execute(
    'k = get_ipython().kernel\nk.session.send(k.iopub_socket, "polykernel_custom_event", {"answer": 42}, parent=k.get_parent("shell"))',
  );
  const custom = await client.next((m) => m.header.msg_type === 'polykernel_custom_event');
  t.is(custom.channel, 'iopub');
  t.deepEqual(custom.content, { answer: 42 });
  t.is(custom.parent_header.msg_id, id);
  await client.close();
});

test.serial('binary buffers travel both ways, in both framings (a comm that echoes them reversed)', async (t) => {
  const setup = await JupyterWs.open(wsUrl, { protocols: [V1] });
  await setup.execute(
    [
      'def _reverse(comm, open_msg):',
      '    comm.on_msg(lambda msg: comm.send({"sizes": [len(b) for b in msg["buffers"]]}, buffers=[bytes(b)[::-1] for b in msg["buffers"]]))',
      'get_ipython().kernel.comm_manager.register_target("reverse", _reverse)',
    ].join('\n'),
  );
  await setup.close();
  for (const protocols of [[V1], []]) {
    const client = await JupyterWs.open(wsUrl, { protocols });
    const commId = `comm-${protocols.length}`;
    const open = client.send('shell', 'comm_open', { comm_id: commId, target_name: 'reverse', data: {} });
    await client.idle(open);
    client.send('shell', 'comm_msg', { comm_id: commId, data: {} }, [new Uint8Array([1, 2, 3, 250]).buffer, new Uint8Array([9]).buffer]);
    const echo = await client.next((m) => m.header.msg_type === 'comm_msg' && m.content.comm_id === commId);
    t.deepEqual(echo.content.data, { sizes: [4, 1] }, `protocol ${protocols[0] ?? 'legacy'}`);
    const bytes = (echo.buffers ?? []).map((b) => [...new Uint8Array((b as DataView).buffer, (b as DataView).byteOffset, (b as DataView).byteLength)]);
    t.deepEqual(bytes, [[250, 3, 2, 1], [9]]);
    await client.close();
  }
});

test.serial('malformed frames and unknown channels are ignored; the connection and the service keep working', async (t) => {
  for (const protocols of [[V1], []]) {
    const client = await JupyterWs.open(wsUrl, { protocols });
    client.ws.send('{"header":');
    client.ws.send('[1, 2, 3]');
    client.ws.send(JSON.stringify({ channel: 'shell', content: {} }));
    client.ws.send(JSON.stringify({ channel: 'nope', header: { msg_id: 'x', msg_type: 'kernel_info_request', session: client.session } }));
    client.ws.send(JSON.stringify({ channel: 'iopub', header: { msg_id: 'y', msg_type: 'kernel_info_request', session: client.session } }));
    client.ws.send(Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    client.ws.send(Buffer.alloc(64, 0xff));
    client.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false }); // a text frame that is not UTF-8
    const id = client.send('shell', 'kernel_info_request');
    const reply = await client.reply(id, 'kernel_info_reply');
    t.is(reply.content.status, 'ok', `protocol ${protocols[0] ?? 'legacy'}`);
    t.false(client.received.some((m) => m.parent_header.msg_id === 'x' || m.parent_header.msg_id === 'y'), 'nothing went to the kernel');
    t.is(client.closed, undefined);
    await client.close();
  }
  t.is((await svc.call('GET', `/api/kernels/${kernelId}`, undefined, AUTH)).status, 200);
});

test.serial('the kernel model follows the channels: connections, execution_state, last_activity', async (t) => {
  const model = async () => (await svc.call('GET', `/api/kernels/${kernelId}`, undefined, AUTH)).body;
  const before = await model();
  t.is(before.connections, 0);
  const a = await JupyterWs.open(wsUrl, { protocols: [V1] });
  const b = await JupyterWs.open(wsUrl);
  t.is((await model()).connections, 2);
  const id = a.send('shell', 'execute_request', { code: 'import time; time.sleep(1.5)', silent: false, allow_stdin: false });
  await a.next((m) => m.parent_header.msg_id === id && m.content.execution_state === 'busy');
  const busy = await model();
  t.is(busy.execution_state, 'busy');
  t.true(Date.parse(busy.last_activity) > Date.parse(before.last_activity));
  await a.idle(id);
  t.is((await model()).execution_state, 'idle');
  await b.close();
  await sleep(100);
  t.is((await model()).connections, 1);
  await a.close();
  await sleep(100);
  t.is((await model()).connections, 0);
  // The count is stored too, for other replicas' view of the kernel.
  const stored = await svc.service.kernels.get(kernelId);
  t.is(stored.connections, 0);
});

test.serial('a second connection of the same session replaces the stale one', async (t) => {
  const first = await JupyterWs.open(wsUrl, { protocols: [V1] });
  const second = await JupyterWs.open(wsUrl, { protocols: [V1], session: first.session });
  await sleep(200);
  t.is(first.closed?.code, 1000);
  const id = second.send('shell', 'kernel_info_request');
  t.is((await second.reply(id, 'kernel_info_reply')).channel, 'shell');
  await second.close();
});

test.serial('the handshake checks token, origin, path and kernel id', async (t) => {
  const base = channelsUrl(svc.url, kernelId);
  const refused = async (url: string, headers: Record<string, string> = {}) => {
    const error = await t.throwsAsync(JupyterWs.open(url, { headers }));
    return { status: (error as any).status as number, body: JSON.parse((error as any).body) };
  };
  const noToken = await refused(base);
  t.is(noToken.status, 401);
  t.regex(noToken.body.message, /authentication required/);
  t.is(noToken.body.reason, 'Unauthorized');
  t.is((await refused(`${base}?token=wrong`)).status, 401);
  const byHeader = await JupyterWs.open(base, { headers: AUTH });
  await byHeader.close();
  const byQuery = await JupyterWs.open(`${base}?token=${TOKEN}`);
  await byQuery.close();
  t.is((await refused(wsUrl, { origin: 'http://evil.example' })).status, 403);
  const sameOrigin = await JupyterWs.open(wsUrl, { headers: { origin: svc.url } });
  await sameOrigin.close();
  const unknown = await refused(`${svc.url.replace('http', 'ws')}/api/kernels/00000000-0000-4000-8000-000000000000/channels?token=${TOKEN}`);
  t.is(unknown.status, 404);
  t.regex(unknown.body.message, /no kernel/);
  t.is((await refused(`${svc.url.replace('http', 'ws')}/api/kernels/not-a-uuid/channels?token=${TOKEN}`)).status, 404);
  t.is((await refused(`${svc.url.replace('http', 'ws')}/api/elsewhere?token=${TOKEN}`)).status, 404);
  // Without an upgrade, the channels URL says what it is.
  const plain = await svc.call('GET', `/api/kernels/${kernelId}/channels`, undefined, AUTH);
  t.is(plain.status, 400);
  t.regex(plain.body.message, /WebSocket/);
});

test.serial('restart: clients get status restarting and keep working; delete: status dead, then the socket closes', async (t) => {
  const v1 = await JupyterWs.open(wsUrl, { protocols: [V1] });
  const legacy = await JupyterWs.open(wsUrl);
  await v1.execute('x = 1');
  const restarted = await svc.call('POST', `/api/kernels/${kernelId}/restart`, undefined, AUTH);
  t.is(restarted.status, 200);
  t.is(restarted.body.id, kernelId);
  for (const client of [v1, legacy]) {
    const status = await client.next((m) => m.header.msg_type === 'status' && m.content.execution_state === 'restarting');
    t.is(status.channel, 'iopub');
  }
  const { stdout } = await v1.execute('print("x" in globals())');
  t.is(stdout, 'False\n', 'the same socket talks to the fresh kernel');

  t.is((await svc.call('DELETE', `/api/kernels/${kernelId}`, undefined, AUTH)).status, 204);
  for (const client of [v1, legacy]) {
    await client.next((m) => m.header.msg_type === 'status' && m.content.execution_state === 'dead');
    for (let i = 0; i < 50 && !client.closed; i++) await sleep(20);
    t.is(client.closed?.code, 1000);
    t.regex(client.closed?.reason ?? '', /kernel removed: deleted/);
  }
});

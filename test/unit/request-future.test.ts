/**
 * The pending-request table a live kernel routes its messages through: each message goes to the future of
 * its parent request only, a request ends with its reply plus its idle status (or its reply alone once iopub
 * lost the idle), client requests are tracked until their idle and bounded, owned ones never forgotten.
 */
import test from 'ava';
import { IDLE_AFTER_REPLY_MS, PendingRequests, REPLY_AFTER_IDLE_MS, type RequestFuture } from '../../src/kernels/request-future.js';
import { newMessage, parentMsgId, type Channel, type JsonObject, type JupyterMessage } from '../../src/protocol/messages.js';

const request = (msgType = 'execute_request') => newMessage(msgType, {}, { session: 'service' });

function table(maxUnowned = 1000) {
  const ended: string[] = [];
  const pending = new PendingRequests(maxUnowned, (future) => ended.push(future.msgId));
  const answer = (channel: Channel, parent: JupyterMessage, msgType: string, content: JsonObject = {}) => {
    const msg = newMessage(msgType, content, { session: 'kernel', parent });
    return pending.route(channel, msg, parentMsgId(msg));
  };
  return { pending, ended, answer };
}

function recorder() {
  const heard: string[] = [];
  const handlers = {
    onIOPub: (msg: JupyterMessage) => heard.push(`iopub ${msg.header.msg_type}`),
    onStdin: (msg: JupyterMessage) => heard.push(`stdin ${msg.header.msg_type}`),
    onReply: (msg: JupyterMessage) => heard.push(`reply ${msg.header.msg_type}`),
  };
  return { heard, handlers };
}

/** Whether the promise has settled by the end of this turn of the event loop. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(() => (done = true));
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

test('each message goes to the future of its parent request only; a message of no pending request to none', (t) => {
  const { pending, answer } = table();
  const first = request();
  const second = request();
  const a = recorder();
  const b = recorder();
  pending.track(first, 'shell', { expectReply: true, execution: true, handlers: a.handlers });
  pending.track(second, 'shell', { expectReply: true, execution: true, handlers: b.handlers });
  answer('iopub', first, 'stream');
  answer('stdin', second, 'input_request');
  answer('shell', first, 'execute_reply');
  t.is(answer('iopub', request(), 'stream'), undefined);
  t.deepEqual(a.heard, ['iopub stream', 'reply execute_reply']);
  t.deepEqual(b.heard, ['stdin input_request']);
});

test('a request ends once both its reply and its idle status are in, in either order, and only once', async (t) => {
  const { pending, ended, answer } = table();
  const replyFirst = request();
  const idleFirst = request();
  const one = pending.track(replyFirst, 'shell', { expectReply: true, execution: true, handlers: {} });
  const other = pending.track(idleFirst, 'shell', { expectReply: true, execution: true, handlers: {} });
  t.is(pending.executing, 2);
  answer('shell', replyFirst, 'execute_reply');
  t.false(one.ended);
  answer('iopub', replyFirst, 'status', { execution_state: 'idle' });
  t.true(one.ended);
  answer('iopub', idleFirst, 'status', { execution_state: 'busy' });
  answer('iopub', idleFirst, 'status', { execution_state: 'idle' });
  t.false(other.ended, 'the idle alone does not end a request that expects a reply');
  answer('shell', idleFirst, 'execute_reply');
  t.true(other.ended);
  t.deepEqual(await one.done, { reply: one.reply, idle: true });
  t.is(one.reply?.header.msg_type, 'execute_reply');
  // A replayed status finds no pending request: the end is not counted twice.
  t.is(answer('iopub', replyFirst, 'status', { execution_state: 'idle' }), undefined);
  t.deepEqual(ended, [replyFirst.header.msg_id, idleFirst.header.msg_id]);
  t.is(pending.executing, 0);
  t.is(pending.size, 0);
});

test('a request whose idle status never comes ends IDLE_AFTER_REPLY_MS after its reply, saying so', async (t) => {
  const { pending, answer } = table();
  const lost = request();
  const future = pending.track(lost, 'shell', { expectReply: true, execution: true, handlers: {} });
  answer('shell', lost, 'execute_reply');
  const began = Date.now();
  const end = await future.done;
  t.true(Date.now() - began >= IDLE_AFTER_REPLY_MS - 50);
  t.false(end.idle);
  t.is(end.reply?.header.msg_type, 'execute_reply');
  t.is(pending.size, 0);
});

test('a request whose reply never comes (ipykernel swallowed a SIGINT landing just before it) ends REPLY_AFTER_IDLE_MS after its idle, without a reply', async (t) => {
  const { pending, answer } = table();
  const lost = request();
  const future = pending.track(lost, 'shell', { expectReply: true, execution: true, handlers: {} });
  answer('iopub', lost, 'status', { execution_state: 'busy' });
  answer('iopub', lost, 'status', { execution_state: 'idle' });
  t.false(await settled(future.done), 'not at once: the reply may still be on its way');
  const began = Date.now();
  const end = await future.done;
  t.true(Date.now() - began >= REPLY_AFTER_IDLE_MS - 50);
  t.true(end.idle);
  t.is(end.reply, undefined);
  t.is(pending.size, 0);
  t.is(pending.executing, 0);
});

test('a reply that comes shortly after the idle still ends the request with it', async (t) => {
  const { pending, answer } = table();
  const late = request();
  const future = pending.track(late, 'shell', { expectReply: true, execution: true, handlers: {} });
  answer('iopub', late, 'status', { execution_state: 'idle' });
  answer('shell', late, 'execute_reply', { status: 'ok' });
  const end = await future.done;
  t.true(end.idle);
  t.is(end.reply?.header.msg_type, 'execute_reply');
});

test('a client request without an owner is tracked until its idle (a comm_msg has no reply)', (t) => {
  const { pending, ended, answer } = table();
  const comm = request('comm_msg');
  pending.track(comm, 'shell', { expectReply: false, execution: true });
  t.is(pending.executing, 1);
  answer('iopub', comm, 'status', { execution_state: 'busy' });
  t.is(pending.executing, 1);
  answer('iopub', comm, 'status', { execution_state: 'idle' });
  t.is(pending.executing, 0);
  t.deepEqual(ended, [comm.header.msg_id]);
});

test('a msg_id sent again keeps the request already pending, with its owner', (t) => {
  const { pending, answer } = table();
  const mine = request();
  const { heard, handlers } = recorder();
  const future = pending.track(mine, 'shell', { expectReply: true, execution: true, handlers });
  t.is(pending.track(mine, 'shell', { expectReply: false, execution: true }), future);
  answer('iopub', mine, 'stream');
  t.deepEqual(heard, ['iopub stream']);
  t.is(pending.executing, 1);
});

test('past the bound the oldest client request is forgotten, never a request somebody listens to', (t) => {
  const { pending, ended, answer } = table(2);
  const owned = request();
  pending.track(owned, 'shell', { expectReply: true, execution: true, handlers: {} });
  const clients = [request(), request(), request()];
  const futures = clients.map((msg) => pending.track(msg, 'shell', { expectReply: false, execution: true }));
  t.is(pending.size, 3);
  t.is(pending.executing, 3);
  t.is(pending.get(clients[0]!.header.msg_id), undefined, 'the oldest client request is forgotten');
  t.truthy(pending.get(owned.header.msg_id));
  t.false(futures[0]!.ended);
  answer('iopub', clients[0]!, 'status', { execution_state: 'idle' });
  t.deepEqual(ended, [], 'a forgotten request does not end (its idle is no activity)');
});

test('a detached future hears nothing more but stays tracked until its request ends, within the bound', (t) => {
  const { pending, answer } = table(1);
  const mine = request();
  const { heard, handlers } = recorder();
  const future = pending.track(mine, 'shell', { expectReply: true, execution: true, handlers });
  future.detach();
  t.false(future.owned);
  answer('iopub', mine, 'stream');
  t.deepEqual(heard, []);
  t.is(pending.executing, 1);
  pending.track(request('comm_msg'), 'shell', { expectReply: false, execution: true });
  t.is(pending.get(mine.header.msg_id), undefined, 'once unowned it counts toward the bound');
  t.is(pending.size, 1);
});

test('cancel and clear forget requests without ending them: their done never settles', async (t) => {
  const { pending, ended, answer } = table();
  const unsent = request();
  const cancelled: RequestFuture = pending.track(unsent, 'shell', { expectReply: true, execution: true, handlers: {} });
  pending.cancel(cancelled);
  const gone = request();
  const cleared = pending.track(gone, 'control', { expectReply: true, execution: false, handlers: {} });
  pending.clear();
  answer('shell', gone, 'kernel_info_reply');
  answer('iopub', gone, 'status', { execution_state: 'idle' });
  t.is(pending.size, 0);
  t.is(pending.executing, 0);
  t.deepEqual(ended, []);
  t.false(cleared.ended, 'a request forgotten has not ended: its owner still waits for its own time limit');
  t.false(await settled(cancelled.done));
  t.false(await settled(cleared.done));
});

test('only a message on the request\'s own channel is its reply', (t) => {
  const { pending, answer } = table();
  const probe = request('kernel_info_request');
  const { heard, handlers } = recorder();
  const future = pending.track(probe, 'control', { expectReply: true, execution: false, handlers });
  answer('shell', probe, 'kernel_info_reply');
  t.is(future.reply, undefined);
  answer('control', probe, 'kernel_info_reply');
  t.deepEqual(heard, ['reply kernel_info_reply']);
  t.is(future.channel, 'control');
});

test('clear keeps the requests it is told to keep (those not sent yet)', (t) => {
  const { pending } = table();
  const sent = request();
  const held = request();
  pending.track(sent, 'shell', { expectReply: false, execution: true });
  const waiting = pending.track(held, 'shell', { expectReply: true, execution: true, handlers: {} });
  pending.clear((future) => future.msgId === held.header.msg_id);
  t.is(pending.get(sent.header.msg_id), undefined);
  t.is(pending.get(held.header.msg_id), waiting);
  t.is(pending.executing, 1);
});

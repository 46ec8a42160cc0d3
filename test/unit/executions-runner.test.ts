/**
 * The notebook runner against a scripted fake kernel (issue #5): cell order and events, stop at the first
 * error, cell timeout, abort, empty cells.
 */
import test from 'ava';
import { parseNotebook, type CodeCell } from '../../src/executions/notebook.js';
import { NotebookRunner, type CellEvent, type KernelPort } from '../../src/executions/runner.js';
import { newMessage, type Channel, type JsonObject, type JupyterMessage } from '../../src/protocol/messages.js';
import type { MessageListener } from '../../src/transport/kernel-connection.js';

/** Answers each execute_request like ipykernel: busy, execute_input, outputs, reply, idle. */
class FakeKernel implements KernelPort {
  readonly sent: string[] = [];
  private readonly listeners = new Set<MessageListener>();
  private count = 0;
  constructor(private readonly behaviour: (code: string) => 'ok' | 'error' | 'hang' = () => 'ok') {}

  message(msgType: string, content: JsonObject): JupyterMessage {
    return newMessage(msgType, content, { session: 'fake' });
  }

  onMessage(listener: MessageListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async send(_channel: Channel, request: JupyterMessage): Promise<void> {
    const code = request.content.code as string;
    this.sent.push(code);
    const reply = (channel: Channel, type: string, content: JsonObject) =>
      setImmediate(() => {
        const msg = newMessage(type, content, { session: 'fake', parent: request });
        for (const listener of [...this.listeners]) listener(channel, msg);
      });
    const n = ++this.count;
    const how = this.behaviour(code);
    reply('iopub', 'status', { execution_state: 'busy' });
    reply('iopub', 'execute_input', { code, execution_count: n });
    if (how === 'hang') return;
    if (how === 'error') {
      reply('iopub', 'error', { ename: 'ValueError', evalue: 'boom', traceback: ['Traceback', 'ValueError: boom'] });
      reply('shell', 'execute_reply', { status: 'error', execution_count: n, ename: 'ValueError', evalue: 'boom', traceback: [] });
    } else {
      reply('iopub', 'stream', { name: 'stdout', text: `ran ${code}\n` });
      reply('shell', 'execute_reply', { status: 'ok', execution_count: n });
    }
    reply('iopub', 'status', { execution_state: 'idle' });
  }
}

const notebook = (...sources: string[]) =>
  parseNotebook(
    JSON.stringify({
      nbformat: 4,
      nbformat_minor: 4,
      metadata: {},
      cells: [{ cell_type: 'markdown', source: '# t', metadata: {} }, ...sources.map((source) => ({ cell_type: 'code', source, metadata: {}, outputs: [] }))],
    }),
  );

function runner(kernel: KernelPort, sources: string[], cellTimeoutS?: number) {
  const events: CellEvent[] = [];
  const nb = notebook(...sources);
  let now = 1_700_000_000_000;
  const run = new NotebookRunner(kernel, nb, { cellTimeoutS, clock: () => (now += 250), onCellEvent: (e) => void events.push(e) });
  return { run, events, nb, cells: () => nb.cells.filter((c): c is CodeCell => c.cell_type === 'code') };
}

test('every code cell runs in order with start/end events, progress i/n, timing and outputs', async (t) => {
  const kernel = new FakeKernel();
  const { run, events, cells } = runner(kernel, ['a', 'b']);
  t.deepEqual(await run.run(), { ok: true });
  t.deepEqual(kernel.sent, ['a', 'b']);
  t.deepEqual(events.map((e) => `${e.event} ${e.progress}`), ['start 1/2', 'end 1/2', 'start 2/2', 'end 2/2']);
  t.deepEqual(events[0]!.cell.outputs, []);
  t.deepEqual(events[1]!.cell.outputs, [{ output_type: 'stream', name: 'stdout', text: 'ran a\n' }]);
  const [first] = cells();
  t.is(first!.execution_count, 1);
  const timing = first!.metadata.nbexec as Record<string, unknown>;
  t.regex(timing.start_time as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/);
  t.regex(timing.end_time as string, /\+00:00$/);
  t.is(timing.duration, 0.25);
  t.is(run.progress, '2/2');
});

test('the first failing cell ends the run with its error; later cells are not sent', async (t) => {
  const kernel = new FakeKernel((code) => (code === 'bad' ? 'error' : 'ok'));
  const { run, cells } = runner(kernel, ['a', 'bad', 'c']);
  const outcome = await run.run();
  t.deepEqual(outcome, {
    ok: false,
    status: 'ValueError: boom',
    error: 'An error occurred while executing the following cell:\n------------------\nbad\n------------------\n\nValueError: boom\n',
  });
  t.deepEqual(kernel.sent, ['a', 'bad']);
  t.is(cells()[1]!.outputs[0]!.output_type, 'error');
  t.deepEqual(cells()[2]!.outputs, []);
  t.is(run.progress, '2/3');
});

test('a cell over cell_timeout ends the whole run', async (t) => {
  const kernel = new FakeKernel((code) => (code === 'slow' ? 'hang' : 'ok'));
  const { run } = runner(kernel, ['a', 'slow', 'c'], 1);
  const began = Date.now();
  const outcome = await run.run();
  t.false(outcome.ok);
  if (!outcome.ok) {
    t.is(outcome.status, 'cell 2/3 timed out after 1 s');
    t.regex(outcome.error, /timed out while it was being executed, after 1 seconds:\n-+\nslow\n/);
  }
  t.true(Date.now() - began < 3000);
  t.deepEqual(kernel.sent, ['a', 'slow']);
});

test('abort ends the cell in flight at once with the given reason', async (t) => {
  const kernel = new FakeKernel(() => 'hang');
  const { run, events } = runner(kernel, ['a', 'b']);
  const running = run.run();
  setTimeout(() => run.abort('shut down by request'), 20);
  t.deepEqual(await running, { ok: false, status: 'shut down by request', error: 'shut down by request' });
  t.deepEqual(events.map((e) => e.event), ['start', 'end']);
});

test('an empty cell is not sent to the kernel but still reports start and end', async (t) => {
  const kernel = new FakeKernel();
  const { run, events, cells } = runner(kernel, ['  \n', 'x']);
  t.deepEqual(await run.run(), { ok: true });
  t.deepEqual(kernel.sent, ['x']);
  t.is(events.length, 4);
  t.is(cells()[0]!.execution_count, null);
});

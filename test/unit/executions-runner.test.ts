/**
 * The notebook runner against a scripted fake kernel (issue #5): cell order and events, stop at the first
 * error, cell timeout, abort, empty cells.
 */
import test from 'ava';
import { parseNotebook, type CodeCell } from '../../src/executions/notebook.js';
import { NotebookRunner, type CellEvent, type KernelPort } from '../../src/executions/runner.js';
import type { Channel, JsonObject, JupyterMessage } from '../../src/protocol/messages.js';
import { IDLE_AFTER_REPLY_MS } from '../../src/kernels/request-future.js';
import { FakeKernel } from '../helpers/fake-kernel.js';

/** Answers each execute_request like ipykernel: busy, execute_input, outputs, reply, idle. */
class ScriptedKernel extends FakeKernel implements KernelPort {
  readonly codes: string[] = [];
  private count = 0;
  constructor(private readonly behaviour: (code: string) => 'ok' | 'error' | 'hang' | 'lost-idle' = () => 'ok') {
    super();
  }

  override async send(channel: Channel, request: JupyterMessage): Promise<void> {
    await super.send(channel, request);
    const code = request.content.code as string;
    this.codes.push(code);
    const reply = (replyChannel: Channel, type: string, content: JsonObject) => setImmediate(() => this.emit(replyChannel, type, content, request));
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
    if (how !== 'lost-idle') reply('iopub', 'status', { execution_state: 'idle' });
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
  const kernel = new ScriptedKernel();
  const { run, events, cells } = runner(kernel, ['a', 'b']);
  t.deepEqual(await run.run(), { ok: true });
  t.deepEqual(kernel.codes, ['a', 'b']);
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
  const kernel = new ScriptedKernel((code) => (code === 'bad' ? 'error' : 'ok'));
  const { run, cells } = runner(kernel, ['a', 'bad', 'c']);
  const outcome = await run.run();
  t.deepEqual(outcome, {
    ok: false,
    status: 'ValueError: boom',
    error: 'An error occurred while executing the following cell:\n------------------\nbad\n------------------\n\nValueError: boom\n',
  });
  t.deepEqual(kernel.codes, ['a', 'bad']);
  t.is(cells()[1]!.outputs[0]!.output_type, 'error');
  t.deepEqual(cells()[2]!.outputs, []);
  t.is(run.progress, '2/3');
});

test('a cell over cell_timeout ends the whole run', async (t) => {
  const kernel = new ScriptedKernel((code) => (code === 'slow' ? 'hang' : 'ok'));
  const { run } = runner(kernel, ['a', 'slow', 'c'], 1);
  const began = Date.now();
  const outcome = await run.run();
  t.false(outcome.ok);
  if (!outcome.ok) {
    t.is(outcome.status, 'cell 2/3 timed out after 1 s');
    t.regex(outcome.error, /timed out while it was being executed, after 1 seconds:\n-+\nslow\n/);
  }
  t.true(Date.now() - began < 3000);
  t.deepEqual(kernel.codes, ['a', 'slow']);
});

test('abort ends the cell in flight at once with the given reason', async (t) => {
  const kernel = new ScriptedKernel(() => 'hang');
  const { run, events } = runner(kernel, ['a', 'b']);
  const running = run.run();
  setTimeout(() => run.abort('shut down by request'), 20);
  t.deepEqual(await running, { ok: false, status: 'shut down by request', error: 'shut down by request' });
  t.deepEqual(events.map((e) => e.event), ['start', 'end']);
});

test('an empty cell is not sent to the kernel but still reports start and end', async (t) => {
  const kernel = new ScriptedKernel();
  const { run, events, cells } = runner(kernel, ['  \n', 'x']);
  t.deepEqual(await run.run(), { ok: true });
  t.deepEqual(kernel.codes, ['x']);
  t.is(events.length, 4);
  t.is(cells()[0]!.execution_count, null);
});

test('a cell whose idle status iopub lost ends IDLE_AFTER_REPLY_MS after its reply, and the run goes on', async (t) => {
  const kernel = new ScriptedKernel((code) => (code === 'a' ? 'lost-idle' : 'ok'));
  const { run, cells } = runner(kernel, ['a', 'b']);
  const began = Date.now();
  t.deepEqual(await run.run(), { ok: true });
  t.true(Date.now() - began >= IDLE_AFTER_REPLY_MS - 50);
  t.deepEqual(kernel.codes, ['a', 'b']);
  t.is(cells()[0]!.execution_count, 1);
});

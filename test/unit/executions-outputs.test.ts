/** iopub messages into nbformat outputs (issue #5), as nbclient records them. */
import test from 'ava';
import type { CodeCell } from '../../src/executions/notebook.js';
import { OutputCollector } from '../../src/executions/outputs.js';
import { newMessage, type JsonObject } from '../../src/protocol/messages.js';

const msg = (type: string, content: JsonObject) => newMessage(type, content, { session: 's' });
const cell = (): CodeCell => ({ cell_type: 'code', source: '', metadata: {}, outputs: [], execution_count: null });

test('stream text of the same name is merged; another name starts a new output', (t) => {
  const c = cell();
  const collector = new OutputCollector();
  collector.begin(c);
  collector.handle(msg('stream', { name: 'stdout', text: 'a' }));
  collector.handle(msg('stream', { name: 'stdout', text: 'b\n' }));
  collector.handle(msg('stream', { name: 'stderr', text: 'e' }));
  collector.handle(msg('stream', { name: 'stdout', text: 'c' }));
  t.deepEqual(c.outputs, [
    { output_type: 'stream', name: 'stdout', text: 'ab\n' },
    { output_type: 'stream', name: 'stderr', text: 'e' },
    { output_type: 'stream', name: 'stdout', text: 'c' },
  ]);
});

test('execute_input and execute_result set the execution count; transient fields stay out of the file', (t) => {
  const c = cell();
  const collector = new OutputCollector();
  collector.begin(c);
  collector.handle(msg('execute_input', { code: '1+1', execution_count: 4 }));
  t.is(c.execution_count, 4);
  collector.handle(msg('execute_result', { data: { 'text/plain': '2' }, metadata: {}, execution_count: 4 }));
  collector.handle(msg('display_data', { data: { 'text/html': '<b/>' }, metadata: {}, transient: { display_id: 'd' } }));
  t.deepEqual(c.outputs, [
    { output_type: 'execute_result', data: { 'text/plain': '2' }, metadata: {}, execution_count: 4 },
    { output_type: 'display_data', data: { 'text/html': '<b/>' }, metadata: {} },
  ]);
});

test('update_display_data rewrites the display in an earlier cell', (t) => {
  const first = cell();
  const second = cell();
  const collector = new OutputCollector();
  collector.begin(first);
  collector.handle(msg('display_data', { data: { 'text/plain': 'v1' }, metadata: {}, transient: { display_id: 'p' } }));
  collector.begin(second);
  collector.handle(msg('update_display_data', { data: { 'text/plain': 'v2' }, metadata: {}, transient: { display_id: 'p' } }));
  t.deepEqual(first.outputs, [{ output_type: 'display_data', data: { 'text/plain': 'v2' }, metadata: {} }]);
  t.deepEqual(second.outputs, []);
});

test('clear_output clears at once, or at the next output with wait=true', (t) => {
  const c = cell();
  const collector = new OutputCollector();
  collector.begin(c);
  collector.handle(msg('stream', { name: 'stdout', text: '10%' }));
  collector.handle(msg('clear_output', { wait: true }));
  t.is(c.outputs.length, 1);
  collector.handle(msg('stream', { name: 'stdout', text: '20%' }));
  t.deepEqual(c.outputs, [{ output_type: 'stream', name: 'stdout', text: '20%' }]);
  collector.handle(msg('clear_output', { wait: false }));
  t.deepEqual(c.outputs, []);
});

test('an error becomes an error output with its traceback', (t) => {
  const c = cell();
  const collector = new OutputCollector();
  collector.begin(c);
  collector.handle(msg('error', { ename: 'ValueError', evalue: 'boom', traceback: ['tb1', 'tb2'] }));
  t.deepEqual(c.outputs, [{ output_type: 'error', ename: 'ValueError', evalue: 'boom', traceback: ['tb1', 'tb2'] }]);
});

test('past the output budget of an execution outputs are dropped, with a marker once per cell', (t) => {
  const first = cell();
  const second = cell();
  const collector = new OutputCollector(10);
  collector.begin(first);
  collector.handle(msg('stream', { name: 'stdout', text: '12345678' }));
  collector.handle(msg('stream', { name: 'stdout', text: 'abc' }));
  collector.handle(msg('stream', { name: 'stdout', text: 'def' }));
  t.deepEqual(first.outputs, [
    { output_type: 'stream', name: 'stdout', text: '12345678' },
    { output_type: 'stream', name: 'stderr', text: '\n[output truncated: this execution produced more than 10 bytes of output]\n' },
  ]);
  collector.begin(second);
  collector.handle(msg('display_data', { data: { 'text/plain': 'x' }, metadata: {} }));
  collector.handle(msg('error', { ename: 'E', evalue: 'v', traceback: [] }));
  t.deepEqual(second.outputs.map((o) => o.output_type), ['stream', 'error']);
});

/**
 * /api/executions (issue #5) against a real Docker engine and store: a parameterised notebook with and
 * without chunked streaming, a failing cell, a cell timeout, a client hanging up on a stream, shutdown of a
 * running execution, and the requests refused before anything runs (path escapes, missing and broken
 * notebooks, bad fields, no token).
 * Every output notebook is checked with Debian's nbformat.validate.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startTestService, type TestService } from '../helpers/service.js';
import { sleep } from '../helpers/wait.js';
import { containersOfInstance } from '../helpers/docker.js';

const TOKEN = 'executions-test-token';
let svc: TestService;
let base: string;
let root: string;

test.before(async () => {
  base = await mkdtemp(path.join(os.tmpdir(), 'pk-exec-'));
  root = path.join(base, 'root');
  await cp(path.resolve('test/fixtures/notebooks'), root, { recursive: true });
  // The kernel runs as uid 1000 with the notebook's directory as its work directory.
  await chmod(root, 0o755);
  await mkdir(path.join(base, 'outside'));
  await writeFile(path.join(base, 'outside', 'secret.ipynb'), await readFile(path.join(root, 'quick.ipynb')));
  await symlink(path.join(base, 'outside', 'secret.ipynb'), path.join(root, 'link.ipynb'));
  await symlink(path.join(base, 'outside'), path.join(root, 'outdir'));
  svc = await startTestService({ notebookRoot: root, maxConcurrentExecutions: 4, authToken: TOKEN });
});

test.after.always(async () => {
  await svc?.stop();
  await rm(base, { recursive: true, force: true });
});

test.after('no kernel container is left behind', () => {
  const left = containersOfInstance(svc.config.instance);
  if (left.length) throw new Error(`containers left: ${left.join(' ')}`);
});

interface Reply {
  status: number;
  body: any;
  headers: Headers;
}

async function api(method: string, route: string, options: { form?: Record<string, string>; json?: unknown; headers?: Record<string, string>; token?: string | null } = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== null) headers.authorization = `token ${options.token ?? TOKEN}`;
  let body: string | URLSearchParams | undefined;
  if (options.form) body = new URLSearchParams(options.form);
  if (options.json !== undefined) {
    body = JSON.stringify(options.json);
    headers['content-type'] = 'application/json';
  }
  const response = await fetch(svc.url + route, { method, headers, body });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : '';
  } catch {
    // The test sees the raw text.
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

/** POST with X-Response-Encoding: chunked; every event with the time it arrived. */
async function stream(fields: { form?: Record<string, string>; json?: unknown }): Promise<{ status: number; type: string | null; events: any[]; arrivals: number[] }> {
  const headers: Record<string, string> = { authorization: `token ${TOKEN}`, 'x-response-encoding': 'chunked' };
  let body: string | URLSearchParams;
  if (fields.json !== undefined) {
    body = JSON.stringify(fields.json);
    headers['content-type'] = 'application/json';
  } else {
    body = new URLSearchParams(fields.form);
  }
  const response = await fetch(`${svc.url}/api/executions`, { method: 'POST', headers, body });
  const events: any[] = [];
  const arrivals: number[] = [];
  let buffered = '';
  const decoder = new TextDecoder();
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      events.push(JSON.parse(buffered.slice(0, newline)));
      arrivals.push(Date.now());
      buffered = buffered.slice(newline + 1);
    }
  }
  return { status: response.status, type: response.headers.get('content-type'), events, arrivals };
}

async function waitFor(id: string, done: (execution: any) => boolean, timeoutMs = 60_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { body } = await api('GET', `/api/executions/${id}`);
    if (done(body.execution)) return body.execution;
    if (finished(body.execution)) throw new Error(`execution ${id} ended as "${body.execution.status}"`);
    if (Date.now() > deadline) throw new Error(`execution ${id} still ${JSON.stringify(body.execution)}`);
    await sleep(200);
  }
}

const finished = (execution: any) => execution.status === 'completed' || execution.status.startsWith('error:');

/** Reads an output notebook and checks it with Debian's nbformat (throws with nbformat's message). */
async function validOutput(rel: string): Promise<any> {
  const file = path.join(root, rel);
  execFileSync('/usr/bin/python3', ['-c', 'import nbformat,sys; nbformat.validate(nbformat.read(sys.argv[1], as_version=4))', file], { stdio: 'pipe' });
  return JSON.parse(await readFile(file, 'utf8'));
}

const codeCells = (nb: any) => nb.cells.filter((cell: any) => cell.cell_type === 'code');

test('a parameterised notebook runs in the background (form, 202): parameters, outputs, work directory, valid nbformat', async (t) => {
  const name = 'Ada "the" Lovelace ✓';
  const { status, body, headers } = await api('POST', '/api/executions', { form: { notebook: 'params.ipynb', name, count: '21' } });
  t.is(status, 202);
  t.is(body.event, 'notebook_start');
  t.is(typeof body.timestamp, 'number');
  const accepted = body.execution;
  t.regex(accepted.exec_id, /^[0-9a-f-]{36}$/);
  t.is(headers.get('location'), `/api/executions/${accepted.exec_id}`);
  t.like(accepted, { path: 'params.ipynb', params: { name, count: '21' }, output_path: null, overwrite: false, jupyter_kernel: null, cell_timeout: null, status: 'initializing', progress: null, last_cell_source: null, started_at: null, completed_at: null });

  const done = await waitFor(accepted.exec_id, finished);
  t.like(done, { status: 'completed', progress: '7/7', last_cell_source: 'int(count) * 2', output_path: 'params-Executed1.ipynb' });
  t.true(done.completed_at >= done.started_at && done.started_at > 0);
  const listed = (await api('GET', '/api/executions')).body.executions;
  t.true(listed.some((execution: any) => execution.exec_id === accepted.exec_id));

  const nb = await validOutput(done.output_path);
  t.is(nb.metadata.kernelspec.name, 'python3');
  t.is(nb.metadata.language_info.name, 'python');
  const cells = codeCells(nb);
  t.deepEqual(cells[1].metadata.tags, ['injected-parameters']);
  t.is(cells[1].source, `# Parameters\nname = ${JSON.stringify(name)}\ncount = "21"`);
  t.deepEqual(cells[2].outputs, [{ output_type: 'stream', name: 'stdout', text: `hello ${name}\ncount is 21\n` }]);
  t.deepEqual(cells[3].outputs.map((o: any) => o.output_type), ['stream', 'display_data']);
  t.is(cells[3].outputs[0].name, 'stderr');
  t.is(cells[3].outputs[1].data['text/html'], '<b>bold</b>');
  t.is(cells[4].execution_count, null);
  // The notebook's directory is the kernel's working directory.
  t.is(cells[5].outputs[0].data['text/plain'], "'from data.txt'");
  t.like(cells[6].outputs[0], { output_type: 'execute_result', data: { 'text/plain': '42' }, execution_count: cells[6].execution_count });
  t.true(cells[6].execution_count > cells[2].execution_count);
  for (const cell of cells) t.true(cell.metadata.nbexec.duration >= 0 && Boolean(cell.metadata.nbexec.end_time));
});

test('with X-Response-Encoding: chunked (JSON body) events stream one per line until the notebook ends', async (t) => {
  const { status, type, events } = await stream({ json: { notebook: 'quick.ipynb', output_path: 'out/quick.ipynb', x: 7 } });
  t.is(status, 202);
  t.is(type, 'application/x-ndjson');
  t.deepEqual(
    events.map((e) => (e.progress ? `${e.event} ${e.progress}` : e.event)),
    ['notebook_start', 'start 1/3', 'end 1/3', 'start 2/3', 'end 2/3', 'start 3/3', 'end 3/3', 'notebook_complete'],
  );
  const [start, , , , , , end, complete] = events;
  t.like(start.execution, { status: 'executing', path: 'quick.ipynb', params: { x: '7' }, output_path: 'out/quick.ipynb' });
  t.is(typeof start.execution.started_at, 'number');
  t.is(end.cell.source, 'print("x =", x)');
  t.deepEqual(end.cell.outputs, [{ output_type: 'stream', name: 'stdout', text: 'x = 7\n' }]);
  t.is(typeof end.cell.execution_count, 'number');
  t.deepEqual(Object.keys(end.cell.metadata.nbexec).sort(), ['duration', 'end_time', 'start_time']);
  t.like(complete.execution, { status: 'completed', progress: '3/3', output_path: 'out/quick.ipynb', last_cell_source: 'print("x =", x)' });
  const nb = await validOutput('out/quick.ipynb');
  t.is(nb.nbformat_minor, 4);
  t.is(codeCells(nb)[1].source, '# Parameters\nx = "7"');
});

test('a failing cell ends the execution with notebook_error and its error; the output keeps every output up to it', async (t) => {
  const { events } = await stream({ form: { notebook: 'failing.ipynb', output_path: 'failing-out.ipynb' } });
  t.deepEqual(events.map((e) => e.event), ['notebook_start', 'start', 'end', 'start', 'end', 'notebook_error']);
  const error = events.at(-1);
  t.is(error.output_path, 'failing-out.ipynb');
  t.is(error.error, 'An error occurred while executing the following cell:\n------------------\nraise ValueError("boom")\n------------------\n\nValueError: boom\n');
  t.like(error.execution, { status: 'error: ValueError: boom', progress: '2/3' });
  t.like(events[4].cell.outputs[0], { output_type: 'error', ename: 'ValueError', evalue: 'boom' });
  t.is((await api('GET', `/api/executions/${error.exec_id}`)).body.execution.status, 'error: ValueError: boom');
  const cells = codeCells(await validOutput('failing-out.ipynb'));
  t.is(cells[0].outputs[0].text, 'before the error\n');
  t.is(cells[1].outputs[0].ename, 'ValueError');
  t.deepEqual(cells[2].outputs, []);
  t.is(cells[2].execution_count, null);
});

test('cell_timeout stops the whole execution with notebook_error, streamed as it happens', async (t) => {
  const { events, arrivals } = await stream({ form: { notebook: 'slow.ipynb', cell_timeout: '1', output_path: 'slow-timeout.ipynb' } });
  t.deepEqual(events.map((e) => e.event), ['notebook_start', 'start', 'end', 'start', 'end', 'notebook_error']);
  // The slow cell (a 60 s sleep) started about a second before the end, and that reached the client as it
  // happened: the events are streamed, and the timeout cut the sleep short.
  const slowCell = arrivals[5]! - arrivals[3]!;
  t.true(slowCell >= 900 && slowCell < 30_000, `${slowCell} ms`);
  const error = events.at(-1);
  t.regex(error.error, /^A cell timed out while it was being executed, after 1 seconds:\n-+\nimport time\ntime\.sleep\(60\)\n/);
  t.like(error.execution, { status: 'error: cell 2/3 timed out after 1 s', cell_timeout: 1, output_path: 'slow-timeout.ipynb' });
  const cells = codeCells(await validOutput('slow-timeout.ipynb'));
  t.is(cells[0].outputs[0].text, 'started\n');
});

test('a streaming client that disconnects leaves the execution running; shutdown stops it and writes its output', async (t) => {
  const abort = new AbortController();
  const response = await fetch(`${svc.url}/api/executions`, {
    method: 'POST',
    headers: { authorization: `token ${TOKEN}`, 'x-response-encoding': 'chunked' },
    body: new URLSearchParams({ notebook: 'slow.ipynb', output_path: 'slow-shutdown.ipynb' }),
    signal: abort.signal,
  });
  t.is(response.status, 202);
  const id = response.headers.get('location')!.split('/').pop()!;
  // Read until the slow cell has started, then hang up.
  const reader = response.body!.getReader();
  let received = '';
  while (!received.includes('"progress":"2/3"')) received += new TextDecoder().decode((await reader.read()).value);
  abort.abort();
  await sleep(500);
  t.like(await waitFor(id, (execution) => execution.progress === '2/3'), { status: 'executing' });

  const began = Date.now();
  const shutdown = await api('POST', `/api/executions/${id}`, { form: { action: 'shutdown' }, headers: { 'x-response-encoding': 'chunked' } });
  t.is(shutdown.status, 202);
  t.true(Date.now() - began < 10_000);
  t.like(shutdown.body.execution, { exec_id: id, status: 'error: shut down by request', progress: '2/3', output_path: 'slow-shutdown.ipynb' });
  t.is(typeof shutdown.body.execution.completed_at, 'number');
  t.is(codeCells(await validOutput('slow-shutdown.ipynb'))[0].outputs[0].text, 'started\n');
  // Already finished: accepted, nothing changes.
  const again = await api('POST', `/api/executions/${id}`, { form: { action: 'shutdown' } });
  t.is(again.status, 202);
  t.is(again.body, '');
  t.is((await api('DELETE', `/api/executions/${id}`, { headers: { 'x-response-encoding': 'chunked' } })).status, 202);
  t.is((await api('GET', `/api/executions/${id}`)).status, 404);
});

test('requests that cannot run are refused before anything starts: path escapes, missing or broken notebooks, bad fields', async (t) => {
  const refused = async (form: Record<string, string>, status: number, message: RegExp) => {
    const reply = await api('POST', '/api/executions', { form });
    t.is(reply.status, status, JSON.stringify(form));
    t.regex(reply.body.message, message, JSON.stringify(form));
    t.is(typeof reply.body.reason, 'string');
  };
  await refused({ notebook: '../escape.ipynb' }, 400, /outside the notebook root/);
  await refused({ notebook: 'sub/../../escape.ipynb' }, 400, /outside the notebook root/);
  await refused({ notebook: '/etc/passwd' }, 400, /absolute path/);
  await refused({ notebook: 'link.ipynb' }, 400, /outside the notebook root \(through a symbolic link\)/);
  await refused({ notebook: 'outdir/secret.ipynb' }, 400, /outside the notebook root/);
  await refused({ notebook: 'quick.ipynb', output_path: '../out.ipynb' }, 400, /output_path points outside/);
  await refused({ notebook: 'quick.ipynb', output_path: 'outdir/out.ipynb' }, 400, /output_path points outside/);
  await refused({ notebook: 'missing.ipynb' }, 404, /notebook missing\.ipynb not found/);
  await refused({ notebook: 'broken.ipynb' }, 400, /not a valid notebook: the file is not JSON/);
  await refused({ notebook: 'v3.ipynb' }, 400, /not a valid notebook: nbformat 3 is not supported/);
  await refused({ notebook: 'data.txt' }, 400, /not a valid notebook/);
  await refused({}, 400, /notebook is required/);
  await refused({ notebook: 'quick.ipynb', 'bad-name': '1' }, 400, /"bad-name" is not a valid python variable name/);
  await refused({ notebook: 'quick.ipynb', jupyter_kernel: 'cobol' }, 400, /kernel "cobol" is not available/);
  await refused({ notebook: 'quick.ipynb', cell_timeout: 'soon' }, 400, /cell_timeout/);
  await refused({ notebook: 'quick.ipynb', overwrite: 'true' }, 400, /overwrite=true needs output_path/);
  t.is((await api('POST', '/api/executions', { form: { notebook: 'quick.ipynb' }, token: null })).status, 401);
  t.is((await api('GET', '/api/executions', { token: 'wrong' })).status, 401);
  t.is((await api('GET', '/api/executions/00000000-0000-0000-0000-000000000000')).status, 404);
  t.is((await api('DELETE', '/api/executions/nope')).status, 404);
  const action = await api('POST', '/api/executions/00000000-0000-0000-0000-000000000000', { form: { action: 'restart' } });
  t.is(action.status, 400);
  t.regex(action.body.message, /the only action is "shutdown"/);
});

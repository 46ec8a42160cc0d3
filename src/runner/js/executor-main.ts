/**
 * The JavaScript realm: a Node.js process the runner starts once and keeps (bundled as js-executor.mjs).
 * Cells arrive on fd 3 as JSON lines `{ code, allowStdin, count }` and run with vm.runInThisContext, so
 * globals and (rewritten, see transform.ts) top-level declarations persist from cell to cell. The cell's
 * console output is the process's own stdout/stderr, which the runner streams; when a cell ends, an
 * end-of-cell marker carrying the outcome follows its output on both streams (sentinel.ts).
 *
 * `input(prompt)` reads a line synchronously from fd 0, like Python's input(): the runner sees this process
 * block in read(2) on its stdin and asks the client for the line (stdin-watch.ts).
 *
 * Interrupt: the runner sends SIGINT. Synchronous code is stopped by `breakOnSigint`; an awaited cell
 * is abandoned (its promise keeps running, as in any JavaScript REPL). The realm and its globals stay.
 */
import { writeSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import vm from 'node:vm';
import type { CellOutcome } from '../executor.js';
import { marker } from '../sentinel.js';
import { transformCell } from './transform.js';
import { transpile } from './typescript.js';

interface CellRequest {
  code: string;
  allowStdin: boolean;
  count: number;
}

const token = process.env.PK_TOKEN ?? '';
delete process.env.PK_TOKEN;
const dialect = process.argv[2] === 'typescript' ? 'typescript' : 'javascript';
const selfFile = fileURLToPath(import.meta.url);
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const stringify = JSON.stringify;

class Interrupted extends Error {}

let allowStdin = false;
let onInterrupt: (() => void) | undefined;

// Always listening: without a listener SIGINT would end the realm. During synchronous code breakOnSigint
// takes over; while a cell awaits, this abandons it.
process.on('SIGINT', () => onInterrupt?.());
process.on('uncaughtException', (error) => report('Uncaught', error));
process.on('unhandledRejection', (reason) => report('Uncaught (in promise)', reason));

function report(what: string, error: unknown): void {
  writeAll(2, `${what} ${error instanceof Error ? error.stack ?? error.message : inspect(error)}\n`);
}

/** writeSync that survives a non-blocking fd (libuv makes stdio non-blocking once a stream is opened). */
function writeAll(fd: number, text: string): void {
  let buffer = Buffer.from(text, 'utf8');
  while (buffer.length) {
    try {
      buffer = buffer.subarray(writeSync(fd, buffer));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') return;
      Atomics.wait(sleeper, 0, 0, 5);
    }
  }
}

/** Reads one line from stdin, blocking (the runner answers with the client's input_reply). */
function input(prompt: unknown = ''): string {
  if (!allowStdin) throw new Error('input() is not available: the client does not allow stdin for this execution');
  if (prompt !== '') writeAll(1, String(prompt));
  const bytes: number[] = [];
  const one = Buffer.alloc(1);
  for (;;) {
    let n: number;
    try {
      n = readSync(0, one, 0, 1, null);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') {
        Atomics.wait(sleeper, 0, 0, 20);
        continue;
      }
      if (code === 'EOF') break;
      throw error;
    }
    if (n === 0 || one[0] === 0x0a) break;
    bytes.push(one[0]!);
  }
  return Buffer.from(bytes).toString('utf8').replace(/\r$/, '');
}

function installGlobals(): void {
  const cellModule = { exports: {} as Record<string, unknown> };
  Object.assign(globalThis, {
    require: createRequire(path.join(process.cwd(), 'cell.js')),
    module: cellModule,
    exports: cellModule.exports,
    input,
    prompt: input,
  });
}

/** The error's stack without the frames of this file and of node:vm. */
function traceback(error: Error): string[] {
  const lines = (error.stack ?? `${error.name}: ${error.message}`).split('\n');
  const cut = lines.findIndex((line) => line.includes(selfFile) || line.includes('node:vm') || line.includes('js-executor'));
  return cut > 0 ? lines.slice(0, cut) : lines;
}

function errorOutcome(error: unknown): CellOutcome {
  if (error instanceof Interrupted || (error as { code?: string })?.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED') {
    return { status: 'error', ename: 'Interrupted', evalue: 'the execution was interrupted', traceback: ['Interrupted: the execution was interrupted'] };
  }
  if (error instanceof Error || (typeof error === 'object' && error !== null && 'stack' in error)) {
    const e = error as Error;
    return { status: 'error', ename: e.name || 'Error', evalue: e.message ?? '', traceback: traceback(e) };
  }
  const text = inspect(error);
  return { status: 'error', ename: 'Error', evalue: text, traceback: [`Uncaught ${text}`] };
}

/** A syntax error with the offending line and a caret, as Node prints them. */
function syntaxOutcome(message: string, source: string, line: number, column: number, file: string): CellOutcome {
  const text = source.split('\n')[line - 1] ?? '';
  return {
    status: 'error',
    ename: 'SyntaxError',
    evalue: message,
    traceback: [`${file}:${line}`, text, `${' '.repeat(column)}^`, '', `SyntaxError: ${message}`],
  };
}

function waitForInterrupt<T>(promise: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    onInterrupt = () => reject(new Interrupted());
    promise.then(resolve, reject);
  }).finally(() => (onInterrupt = undefined));
}

async function runCell(request: CellRequest): Promise<CellOutcome> {
  allowStdin = request.allowStdin;
  let source = request.code;
  const file = `cell[${request.count}]`;
  if (dialect === 'typescript') {
    const { js, errors } = transpile(source, `${file}.ts`);
    if (errors.length) {
      return { status: 'error', ename: 'SyntaxError', evalue: errors[0]!.replace(/^.*?error TS\d+: /, ''), traceback: errors };
    }
    source = js;
  }
  let code: string;
  let isAsync: boolean;
  try {
    ({ code, async: isAsync } = transformCell(source));
  } catch (error) {
    const { loc, message } = error as { loc?: { line: number; column: number }; message: string };
    if (!loc) return errorOutcome(error);
    return syntaxOutcome(message.replace(/ \(\d+:\d+\)$/, ''), source, loc.line, loc.column, file);
  }
  try {
    const script = new vm.Script(code, { filename: file });
    let value: unknown = script.runInThisContext({ breakOnSigint: true, displayErrors: false });
    if (isAsync) value = await waitForInterrupt(value as Promise<unknown>);
    if (value === undefined) return { status: 'ok' };
    return { status: 'ok', data: { 'text/plain': inspect(value, { depth: 4, colors: false }) } };
  } catch (error) {
    return errorOutcome(error);
  }
}

/** Output the cell queued in its stdio streams goes out before the marker that ends the cell. */
async function drained(stream: NodeJS.WriteStream): Promise<void> {
  if (stream.writableLength > 0) await new Promise((resolve) => stream.once('drain', resolve));
}

async function serve(): Promise<void> {
  installGlobals();
  const requests = new net.Socket({ fd: 3, readable: true, writable: false });
  let buffered = '';
  let chain = Promise.resolve();
  requests.setEncoding('utf8');
  requests.on('data', (chunk: string) => {
    buffered += chunk;
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      const request = JSON.parse(line) as CellRequest;
      chain = chain.then(async () => {
        const outcome = await runCell(request);
        await Promise.all([drained(process.stdout), drained(process.stderr)]);
        writeAll(2, marker(token, ''));
        writeAll(1, marker(token, stringify(outcome)));
      });
    }
  });
  // The runner closed the pipe: it is going away, and so is the realm.
  requests.on('end', () => process.exit(0));
}

void serve();

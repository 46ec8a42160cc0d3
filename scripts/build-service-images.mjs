#!/usr/bin/env node
// Builds the images of the compose set-up: polykernel/service:latest (the service) and
// polykernel/redis:latest (Debian's redis-server on polykernel/base, deploy/redis/Dockerfile).
//
// The service image comes from ./Dockerfile (node:20-bookworm-slim, npm ci inside) when that image is
// present or can be pulled. Without a registry it is made from the local Debian base instead
// (deploy/local/service.Dockerfile): the host's own Node 20 binary and the service as built here, with the
// production part of the host's node_modules (`npm prune --omit=dev` on a copy, no network needed).
// Either way polykernel/base must exist first (`npm run images`), as the kernels need it anyway.
//
// Usage: node scripts/build-service-images.mjs [--local | --registry] [--verbose]
// Plain Node ESM, builtins only.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DOCKER = process.env.DOCKER || (fs.existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker');
const PREFIX = process.env.POLYKERNEL_IMAGE_PREFIX || 'polykernel/';
const BASE = `${PREFIX}base:latest`;
const SERVICE = `${PREFIX}service:latest`;
const REDIS = `${PREFIX}redis:latest`;
const NODE_IMAGE = 'node:20-bookworm-slim';
const PULL_TIMEOUT_MS = 60_000;

const args = process.argv.slice(2);
const verbose = args.includes('--verbose');
const mode = args.includes('--local') ? 'local' : args.includes('--registry') ? 'registry' : 'auto';
for (const arg of args) {
  if (!['--local', '--registry', '--verbose'].includes(arg)) {
    process.stderr.write(`usage: node scripts/build-service-images.mjs [--local | --registry] [--verbose]\n`);
    process.exit(2);
  }
}

function run(command, argv, options = {}) {
  const result = spawnSync(command, argv, { cwd: ROOT, stdio: verbose ? 'inherit' : 'pipe', encoding: 'utf8', ...options });
  if (result.status !== 0 && !options.allowFailure) {
    const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n').slice(-20).join('\n');
    throw new Error(`${path.basename(command)} ${argv.slice(0, 3).join(' ')} … failed (exit ${result.status}):\n${output}`);
  }
  return result;
}

/**
 * One build at a time per image prefix on this host: the tests of the compose set-up and of the Swarm stack
 * both build these images first, and may run at once. Two builds side by side would run `npm run build`
 * over the same dist/ and tag the same names; after waiting, the second build finds docker's cache warm.
 * The lock is a file holding its holder's pid: one whose holder is gone is taken over.
 */
const LOCK = path.join(os.tmpdir(), `polykernel-service-images-${PREFIX.replace(/[^A-Za-z0-9_.-]/g, '_')}.lock`);
const LOCK_WAIT_MS = 15 * 60_000;

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

function takeLock() {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      fs.writeFileSync(LOCK, String(process.pid), { flag: 'wx' });
      return;
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
    }
    let holder;
    try {
      holder = Number(fs.readFileSync(LOCK, 'utf8').trim() || 0);
    } catch {
      continue; // Released between the two steps.
    }
    // Empty: its holder has created it and not yet written its pid.
    if (holder && !alive(holder)) {
      // Gone without releasing it (killed): removed only if it is still that holder's.
      try {
        if (fs.readFileSync(LOCK, 'utf8').trim() === String(holder)) fs.rmSync(LOCK, { force: true });
      } catch {
        // Released meanwhile.
      }
      continue;
    }
    if (Date.now() > deadline) throw new Error(`another build (pid ${holder}) has held ${LOCK} for ${LOCK_WAIT_MS / 60_000} min`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
  }
}

function releaseLock() {
  try {
    if (fs.readFileSync(LOCK, 'utf8').trim() === String(process.pid)) fs.rmSync(LOCK, { force: true });
  } catch {
    // Not ours, or already gone.
  }
}

const hasImage = (ref) => run(DOCKER, ['image', 'inspect', ref], { allowFailure: true }).status === 0;

function nodeImageAvailable() {
  if (hasImage(NODE_IMAGE)) return true;
  if (mode === 'local') return false;
  const pulled = run(DOCKER, ['pull', NODE_IMAGE], { allowFailure: true, timeout: PULL_TIMEOUT_MS });
  return pulled.status === 0;
}

function buildFromRegistry() {
  run(DOCKER, ['build', '-t', SERVICE, '--build-arg', `NODE_IMAGE=${NODE_IMAGE}`, '.'], { env: { ...process.env, DOCKER_BUILDKIT: process.env.DOCKER_BUILDKIT ?? '0' } });
}

function buildLocally() {
  const major = Number(process.versions.node.split('.')[0]);
  if (major !== 20) throw new Error(`the local service image carries this host's Node binary, which is ${process.version}; it needs Node 20`);
  run('npm', ['run', 'build', '--silent']);
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'polykernel-service-image-'));
  try {
    const app = path.join(stage, 'app');
    fs.mkdirSync(app);
    for (const entry of ['package.json', 'package-lock.json', 'config', 'notebooks', 'dist', 'node_modules']) {
      fs.cpSync(path.join(ROOT, entry), path.join(app, entry), { recursive: true, verbatimSymlinks: true });
    }
    // The tests and the benchmark are not the service.
    for (const entry of ['test', 'bench']) fs.rmSync(path.join(app, 'dist', entry), { recursive: true, force: true });
    run('npm', ['prune', '--omit=dev', '--offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: app });
    fs.copyFileSync(process.execPath, path.join(stage, 'node'));
    fs.chmodSync(path.join(stage, 'node'), 0o755);
    run(DOCKER, ['build', '-t', SERVICE, '--build-arg', `BASE_IMAGE=${BASE}`, '-f', path.join(ROOT, 'deploy/local/service.Dockerfile'), stage], {
      env: { ...process.env, DOCKER_BUILDKIT: process.env.DOCKER_BUILDKIT ?? '0' },
    });
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

try {
  takeLock();
  if (!hasImage(BASE)) throw new Error(`${BASE} is missing: run \`npm run images\` first`);
  const started = Date.now();
  const fromRegistry = mode === 'registry' || (mode === 'auto' && nodeImageAvailable());
  if (fromRegistry) buildFromRegistry();
  else buildLocally();
  process.stdout.write(`build-service-images: ${SERVICE} built ${fromRegistry ? `from ${NODE_IMAGE}` : `locally (${BASE} + this host's Node ${process.version})`}\n`);
  run(DOCKER, ['build', '-t', REDIS, '--build-arg', `BASE_IMAGE=${BASE}`, path.join(ROOT, 'deploy/redis')], {
    env: { ...process.env, DOCKER_BUILDKIT: process.env.DOCKER_BUILDKIT ?? '0' },
  });
  process.stdout.write(`build-service-images: ${REDIS} built; ${((Date.now() - started) / 1000).toFixed(1)} s in all\n`);
} catch (error) {
  releaseLock();
  process.stderr.write(`build-service-images: ${error.message}\n`);
  process.exit(1);
}
releaseLock();

#!/usr/bin/env node
// Builds the kernel images: images/base as polykernel/base:latest first, then every other folder
// images/<name>/ (one with a Dockerfile) as polykernel/<name>:latest, parents before children.
// A folder names its parent with its Dockerfile's `ARG BASE_IMAGE=polykernel/<parent>:latest`
// default; the parent is always passed explicitly with --build-arg BASE_IMAGE=....
//
// Up-to-date check: sha256 over the folder's sorted relative paths and contents plus the parent's
// hash (for an external parent such as debian:bookworm-slim, its reference and local image ID),
// stored on the image as label org.polykernel.source-hash; the build is skipped when it matches.
//
// images/runner's dist/ is generated before hashing: the runner (src/runner) bundled with esbuild, plus
// the zeromq package (see bundleRunner).
//
// No registry needed: when debian:bookworm-slim is not present locally it is made with
// `debootstrap --variant=minbase bookworm` from the host's own Debian mirror and `docker import`.
// POLYKERNEL_BASE_IMAGE=<ref> makes images/base start from another image instead.
//
// Usage: node scripts/build-images.mjs [--only python,r] [--force] [--no-cache] [--jobs 3] [--verbose]
// Plain Node ESM, builtins only.

import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const IMAGES_DIR = path.join(ROOT, 'images');
// Dockerfiles name their parent as polykernel/<parent>; images are tagged <POLYKERNEL_IMAGE_PREFIX><name>
// (default polykernel/), so a private set of images can be built beside the shared one.
const SOURCE_PREFIX = 'polykernel/';
const PREFIX = process.env.POLYKERNEL_IMAGE_PREFIX || SOURCE_PREFIX;
const TAG = 'latest';
const HASH_LABEL = 'org.polykernel.source-hash';
// What an image has installed for programs to use (JSON), written by its Dockerfile; see labelPackages.
const PACKAGES_FILE = '/usr/share/polykernel/packages.json';
const PACKAGES_LABEL = 'org.polykernel.packages';
const DEFAULT_BASE = 'debian:bookworm-slim';
const SUITE = 'bookworm';
const LOG_DIR = process.env.POLYKERNEL_IMAGES_LOG_DIR || path.join(os.tmpdir(), 'polykernel-images');
// /usr/local/bin/docker on some hosts is a newer client without buildx; Debian's one matches the engine.
const DOCKER = process.env.DOCKER || (fs.existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker');

class BuildError extends Error {}

function usage(code) {
  const text = `usage: node scripts/build-images.mjs [--only a,b] [--force] [--no-cache] [--jobs n] [--verbose]
  --only a,b   build only these images/ folders (and the parents they need)
  --jobs n     build up to n images at once once their parent is built (default 3, env POLYKERNEL_BUILD_JOBS)
  --force      rebuild the selected images even when their source hash label matches
               (with --only, parents pulled in only as dependencies are still checked)
  --no-cache   pass --no-cache to docker build (fresh apt-get, e.g. for security updates)
  --verbose    stream docker/debootstrap output (otherwise it goes to ${LOG_DIR}/<name>.log)
env: POLYKERNEL_IMAGE_PREFIX=<p>   tag images <p><name>:latest (default polykernel/; the service's option of the same name)
     POLYKERNEL_BASE_IMAGE=<ref>  base of images/base (default ${DEFAULT_BASE}, made locally if absent)
     DOCKER=<path>                docker client (default /usr/bin/docker when present)
     DOCKER_BUILDKIT=0|1          builder (default 0: the classic builder needs no buildx)\n`;
  (code ? process.stderr : process.stdout).write(text);
  process.exit(code);
}

function parseArgs(argv) {
  const opts = { only: null, force: false, noCache: false, verbose: false, jobs: Number(process.env.POLYKERNEL_BUILD_JOBS || 3) };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--force') opts.force = true;
    else if (a === '--no-cache') opts.noCache = true;
    else if (a === '--verbose' || a === '-v') opts.verbose = true;
    else if (a === '--help' || a === '-h') usage(0);
    else if (a === '--jobs' || a.startsWith('--jobs=')) {
      opts.jobs = Number(a === '--jobs' ? argv[++i] : a.slice('--jobs='.length));
      if (!Number.isInteger(opts.jobs) || opts.jobs < 1) usage(2);
    }
    else if (a === '--only' || a.startsWith('--only=')) {
      const v = a === '--only' ? argv[++i] : a.slice('--only='.length);
      if (!v) usage(2);
      opts.only = v.split(',').map((s) => s.trim()).filter(Boolean);
    } else {
      process.stderr.write(`build-images: unknown argument ${a}\n`);
      usage(2);
    }
  }
  return opts;
}

// ---------------------------------------------------------------------------------------------
// process helpers

function docker(args, { input, timeout } = {}) {
  return spawnSync(DOCKER, args, { encoding: 'utf8', input, timeout, maxBuffer: 64 << 20 });
}

function imageInfo(ref) {
  const r = docker(['image', 'inspect', '--format', '{{json .}}', ref]);
  if (r.status !== 0) return null;
  return JSON.parse(r.stdout);
}

/** Runs a command without blocking the builds beside it: its exit status, stdout and stderr. */
function capture(cmd, args) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = { stdout: '', stderr: '' };
    child.stdout.setEncoding('utf8').on('data', (chunk) => (out.stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk) => (out.stderr += chunk));
    child.on('error', (error) => resolve({ status: null, ...out, error }));
    child.on('close', (code) => resolve({ status: code, ...out }));
  });
}

/**
 * Runs a command, output to the log file (and to the terminal with verbose), `input` (a string) on its
 * stdin if given. Resolves to the exit code.
 */
function run(cmd, args, { log, verbose, env, stdin, input }) {
  return new Promise((resolve, reject) => {
    fs.appendFileSync(log, `\n$ ${[cmd, ...args].join(' ')}\n`);
    const out = fs.openSync(log, 'a');
    const child = spawn(cmd, args, {
      env: env ? { ...process.env, ...env } : process.env,
      stdio: [input !== undefined ? 'pipe' : stdin ?? 'ignore', verbose ? 'pipe' : out, verbose ? 'pipe' : out],
    });
    if (input !== undefined) child.stdin.end(input);
    if (verbose) {
      for (const [stream, dest] of [[child.stdout, process.stdout], [child.stderr, process.stderr]]) {
        stream.on('data', (chunk) => {
          fs.writeSync(out, chunk);
          dest.write(chunk);
        });
      }
    }
    child.on('error', (err) => {
      fs.closeSync(out);
      reject(new BuildError(`cannot run ${cmd}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      fs.closeSync(out);
      resolve(code ?? (signal ? 128 : 1));
    });
  });
}

function tailOf(file, lines = 40) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function fail(what, log, verbose) {
  const tail = verbose ? '' : `\n--- last lines of ${log} ---\n${tailOf(log)}\n---`;
  return new BuildError(`${what} failed (full log: ${log})${tail}`);
}

// ---------------------------------------------------------------------------------------------
// discovery, order, hashing

function discover() {
  if (!fs.existsSync(IMAGES_DIR)) throw new BuildError(`no ${IMAGES_DIR} folder`);
  const images = new Map();
  for (const name of fs.readdirSync(IMAGES_DIR).sort()) {
    const dir = path.join(IMAGES_DIR, name);
    const dockerfile = path.join(dir, 'Dockerfile');
    if (!fs.statSync(dir).isDirectory() || !fs.existsSync(dockerfile)) continue;
    const text = fs.readFileSync(dockerfile, 'utf8');
    // The first `ARG BASE_IMAGE=<default>` (before FROM) names the parent.
    const m = /^\s*ARG\s+BASE_IMAGE\s*=\s*["']?([^\s"']+)["']?\s*$/im.exec(text);
    let baseDefault = m ? m[1] : null;
    if (!baseDefault) {
      const from = /^\s*FROM\s+(\S+)/im.exec(text);
      baseDefault = from ? from[1] : DEFAULT_BASE;
    }
    let parent = null;
    let external = null;
    const pm = baseDefault.startsWith(SOURCE_PREFIX) ? /^([^:@]+)(?::([^@]+))?$/.exec(baseDefault.slice(SOURCE_PREFIX.length)) : null;
    if (pm && (pm[2] ?? TAG) === TAG) {
      parent = pm[1];
    } else {
      external = name === 'base' && process.env.POLYKERNEL_BASE_IMAGE ? process.env.POLYKERNEL_BASE_IMAGE : baseDefault;
    }
    images.set(name, { name, dir, parent, external, ref: `${PREFIX}${name}:${TAG}` });
  }
  if (!images.has('base')) throw new BuildError('images/base/Dockerfile is missing');
  for (const img of images.values()) {
    if (img.parent && !images.has(img.parent)) {
      throw new BuildError(`images/${img.name}: parent ${PREFIX}${img.parent}:${TAG} has no images/${img.parent} folder`);
    }
  }
  return images;
}

/** Parents before children; base first among roots. */
function buildOrder(images, only) {
  let wanted = [...images.keys()];
  if (only) {
    const unknown = only.filter((n) => !images.has(n));
    if (unknown.length) {
      throw new BuildError(`unknown image folder(s): ${unknown.join(', ')} (have: ${[...images.keys()].join(', ')})`);
    }
    wanted = only;
  }
  const order = [];
  const state = new Map(); // 1 = visiting, 2 = done
  const visit = (name, chain) => {
    if (state.get(name) === 2) return;
    if (state.get(name) === 1) throw new BuildError(`parent cycle: ${[...chain, name].join(' -> ')}`);
    state.set(name, 1);
    const { parent } = images.get(name);
    if (parent) visit(parent, [...chain, name]);
    state.set(name, 2);
    order.push(name);
  };
  wanted.sort((a, b) => (a === 'base' ? -1 : b === 'base' ? 1 : a.localeCompare(b)));
  for (const name of wanted) visit(name, []);
  return order;
}

function listFiles(dir, rel = '') {
  const out = [];
  for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...listFiles(dir, r));
    else if (entry.isFile() || entry.isSymbolicLink()) out.push(r);
  }
  return out;
}

function sourceHash(img, parentHash) {
  const h = createHash('sha256');
  h.update(`polykernel-image-v1\0parent\0${parentHash}\0`);
  for (const rel of listFiles(img.dir).sort()) {
    const full = path.join(img.dir, rel);
    const st = fs.lstatSync(full);
    const content = st.isSymbolicLink() ? Buffer.from(`symlink:${fs.readlinkSync(full)}`) : fs.readFileSync(full);
    h.update(`file\0${rel}\0${st.mode & 0o111 ? 'x' : '-'}\0${content.length}\0`);
    h.update(content);
    h.update('\0');
  }
  return h.digest('hex');
}

// ---------------------------------------------------------------------------------------------
// base image without a registry

/** First Debian main mirror from apt's configuration (deb822 *.sources, then sources.list). */
function findMirrors() {
  const candidates = []; // { uri, suites }
  const dir = '/etc/apt/sources.list.d';
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.sources')).sort() : [];
  for (const f of files) {
    const text = fs.readFileSync(path.join(dir, f), 'utf8');
    for (const stanza of text.split(/\n\s*\n/)) {
      const field = (k) => {
        const m = new RegExp(`^${k}:[ \\t]*(.*)$`, 'im').exec(stanza.replace(/^#.*$/gm, ''));
        return m ? m[1].trim().split(/\s+/).filter(Boolean) : [];
      };
      if (field('Enabled')[0]?.toLowerCase() === 'no') continue;
      if (!field('Types').includes('deb')) continue;
      const suites = field('Suites');
      for (const uri of field('URIs')) candidates.push({ uri, suites });
    }
  }
  if (fs.existsSync('/etc/apt/sources.list')) {
    for (const line of fs.readFileSync('/etc/apt/sources.list', 'utf8').split('\n')) {
      const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
      if (m) candidates.push({ uri: m[1], suites: [m[2]] });
    }
  }
  const isSecurity = (c) => /security/i.test(c.uri) || c.suites.some((s) => /-security$/.test(s));
  const isDebian = (c) => /debian/i.test(c.uri) && c.suites.some((s) => s === SUITE || s.startsWith(`${SUITE}-`) || ['stable', 'oldstable'].includes(s));
  const main = candidates.find((c) => isDebian(c) && !isSecurity(c));
  const security = candidates.find((c) => isDebian(c) && isSecurity(c));
  if (!main) throw new BuildError('no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list');
  return { mirror: main.uri.replace(/\/+$/, ''), security: security ? security.uri.replace(/\/+$/, '') : null };
}

function mountsUnder(dir) {
  const prefix = `${dir}/`;
  return fs
    .readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1]?.replace(/\\040/g, ' '))
    .filter((m) => m && (m === dir || m.startsWith(prefix)))
    .sort((a, b) => b.length - a.length);
}

/** Removes the rootfs, unmounting first whatever debootstrap may have left mounted (/proc, /sys). */
function removeRootfs(dir, log) {
  for (const m of mountsUnder(dir)) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
  const left = mountsUnder(dir);
  if (left.length) {
    fs.appendFileSync(log, `\nnot removing ${dir}: still mounted: ${left.join(' ')}\n`);
    process.stderr.write(`build-images: warning: left ${dir} in place (mounts remain: ${left.join(' ')})\n`);
    return;
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Makes the rootfs look like the official slim image: apt sources, dpkg excludes, apt docker config. */
function finishRootfs(root, { mirror, security }) {
  const p = (rel) => path.join(root, rel);
  const sources = [
    `Types: deb\nURIs: ${mirror}\nSuites: ${SUITE} ${SUITE}-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n`,
  ];
  if (security) {
    sources.push(`Types: deb\nURIs: ${security}\nSuites: ${SUITE}-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n`);
  }
  fs.mkdirSync(p('etc/apt/sources.list.d'), { recursive: true });
  fs.writeFileSync(p('etc/apt/sources.list.d/debian.sources'), sources.join('\n'));
  fs.rmSync(p('etc/apt/sources.list'), { force: true });

  // As debuerreotype does for the *-slim images: no docs, man pages, locales.
  fs.mkdirSync(p('etc/dpkg/dpkg.cfg.d'), { recursive: true });
  fs.writeFileSync(
    p('etc/dpkg/dpkg.cfg.d/docker'),
    [
      'path-exclude /usr/share/doc/*',
      'path-include /usr/share/doc/*/copyright',
      'path-exclude /usr/share/info/*',
      'path-exclude /usr/share/man/*',
      'path-exclude /usr/share/groff/*',
      'path-exclude /usr/share/linda/*',
      'path-exclude /usr/share/lintian/*',
      'path-exclude /usr/share/locale/*',
      '',
    ].join('\n'),
  );
  fs.mkdirSync(p('etc/apt/apt.conf.d'), { recursive: true });
  fs.writeFileSync(
    p('etc/apt/apt.conf.d/docker-clean'),
    'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n' +
      'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n' +
      'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n',
  );
  fs.writeFileSync(p('etc/apt/apt.conf.d/docker-no-languages'), 'Acquire::Languages "none";\n');
  fs.writeFileSync(p('etc/apt/apt.conf.d/docker-gzip-indexes'), 'Acquire::GzipIndexes "true";\n');
  fs.writeFileSync(p('etc/apt/apt.conf.d/docker-autoremove-suggests'), 'Apt::AutoRemove::SuggestsImportant "false";\n');

  // Strip what the excludes would have kept out, and the build leftovers.
  const emptyDir = (rel, keep) => {
    const d = p(rel);
    if (!fs.existsSync(d)) return;
    for (const e of fs.readdirSync(d)) {
      const full = path.join(d, e);
      if (keep && fs.lstatSync(full).isDirectory()) {
        for (const f of fs.readdirSync(full)) if (f !== keep) fs.rmSync(path.join(full, f), { recursive: true, force: true });
      } else fs.rmSync(full, { recursive: true, force: true });
    }
  };
  emptyDir('usr/share/doc', 'copyright');
  for (const rel of ['usr/share/info', 'usr/share/man', 'usr/share/groff', 'usr/share/lintian', 'usr/share/locale']) emptyDir(rel);
  emptyDir('var/lib/apt/lists');
  emptyDir('var/cache/apt');
  emptyDir('var/log');
  emptyDir('tmp');
  // Docker provides these at run time; do not bake the host's into the image.
  for (const f of ['etc/resolv.conf', 'etc/hostname', 'etc/hosts']) {
    fs.rmSync(p(f), { force: true });
    fs.writeFileSync(p(f), '');
  }
  fs.writeFileSync(p('etc/hostname'), 'localhost\n');
}

async function makeDebianBase(ref, opts) {
  const log = path.join(LOG_DIR, 'debootstrap.log');
  fs.writeFileSync(log, '');
  if (process.getuid && process.getuid() !== 0) {
    throw new BuildError(`${ref} is not present locally and debootstrap needs root; run as root or set POLYKERNEL_BASE_IMAGE`);
  }
  const t0 = performance.now();
  const hasDebootstrap = () => ['/usr/sbin/debootstrap', '/usr/bin/debootstrap'].find((f) => fs.existsSync(f));
  if (!hasDebootstrap()) {
    process.stdout.write('build-images: installing debootstrap\n');
    const env = { DEBIAN_FRONTEND: 'noninteractive' };
    let code = await run('apt-get', ['install', '-y', '--no-install-recommends', 'debootstrap'], { log, verbose: opts.verbose, env });
    if (code !== 0) {
      await run('apt-get', ['update'], { log, verbose: opts.verbose, env });
      code = await run('apt-get', ['install', '-y', '--no-install-recommends', 'debootstrap'], { log, verbose: opts.verbose, env });
    }
    if (code !== 0 || !hasDebootstrap()) throw fail('apt-get install debootstrap', log, opts.verbose);
  }
  const mirrors = findMirrors();
  process.stdout.write(`build-images: ${ref} not present; making it with debootstrap from ${mirrors.mirror} ...\n`);
  const root = fs.mkdtempSync(path.join(process.env.POLYKERNEL_ROOTFS_TMP || '/var/tmp', 'polykernel-rootfs-'));
  try {
    const code = await run(hasDebootstrap(), ['--variant=minbase', SUITE, root, mirrors.mirror], { log, verbose: opts.verbose });
    if (code !== 0) throw fail('debootstrap', log, opts.verbose);
    finishRootfs(root, mirrors);
    const code2 = await new Promise((resolve, reject) => {
      fs.appendFileSync(log, `\n$ tar -C ${root} -c . | ${DOCKER} import - ${ref}\n`);
      const out = fs.openSync(log, 'a');
      const tar = spawn('tar', ['-C', root, '--numeric-owner', '-c', '.'], {
        stdio: ['ignore', 'pipe', out],
      });
      const imp = spawn(
        DOCKER,
        [
          'import',
          '--change', 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
          '--change', 'CMD ["bash"]',
          '--message', `debootstrap --variant=minbase ${SUITE} ${mirrors.mirror}`,
          '-', ref,
        ],
        { stdio: [tar.stdout, out, out] },
      );
      // 'exit', not 'close': tar's stdout is handed to docker import and never closes on our side.
      const codes = {};
      const done = () => {
        if (!('tar' in codes && 'imp' in codes)) return;
        fs.closeSync(out);
        resolve(codes.imp !== 0 ? codes.imp : codes.tar);
      };
      tar.on('error', reject);
      imp.on('error', reject);
      tar.on('exit', (c) => { codes.tar = c ?? 1; done(); });
      imp.on('exit', (c) => { codes.imp = c ?? 1; done(); });
    });
    if (code2 !== 0) throw fail('docker import', log, opts.verbose);
  } finally {
    removeRootfs(root, log);
  }
  process.stdout.write(`${ref.padEnd(28)} made locally in ${((performance.now() - t0) / 1000).toFixed(1)}s (log ${log})\n`);
}

async function ensureExternalBase(ref, opts) {
  const info = imageInfo(ref);
  if (info) return info.Id;
  if (ref === DEFAULT_BASE) {
    await makeDebianBase(ref, opts);
  } else {
    // Explicitly chosen by the user (POLYKERNEL_BASE_IMAGE or a Dockerfile default): try to pull it.
    const log = path.join(LOG_DIR, 'pull.log');
    fs.writeFileSync(log, '');
    process.stdout.write(`build-images: ${ref} not present locally; docker pull ${ref}\n`);
    if ((await run(DOCKER, ['pull', ref], { log, verbose: opts.verbose })) !== 0) {
      throw fail(`docker pull ${ref} (no such local image)`, log, opts.verbose);
    }
  }
  const after = imageInfo(ref);
  if (!after) throw new BuildError(`${ref} still not present after making it`);
  return after.Id;
}

// ---------------------------------------------------------------------------------------------

async function buildImage(img, baseRef, hash, opts) {
  const log = path.join(LOG_DIR, `${img.name}.log`);
  fs.writeFileSync(log, `# ${img.ref} from ${baseRef}, ${HASH_LABEL}=${hash}\n`);
  const before = imageInfo(img.ref);
  const t0 = performance.now();
  const args = [
    'build',
    ...(opts.noCache ? ['--no-cache'] : []),
    '--force-rm', // classic builder: also remove the intermediate container of a failed step
    '--tag', img.ref,
    '--build-arg', `BASE_IMAGE=${baseRef}`,
    '--label', `${HASH_LABEL}=${hash}`,
    '--file', path.join(img.dir, 'Dockerfile'),
    img.dir,
  ];
  // The classic builder works on every engine without buildx; DOCKER_BUILDKIT=1 may be set explicitly.
  const env = { DOCKER_BUILDKIT: process.env.DOCKER_BUILDKIT ?? '0' };
  const code = await run(DOCKER, args, { log, verbose: opts.verbose, env });
  if (code !== 0) throw fail(`docker build of ${img.ref}`, log, opts.verbose);
  await labelPackages(img, { log, verbose: opts.verbose, env });
  const after = imageInfo(img.ref);
  if (!after || after.Config?.Labels?.[HASH_LABEL] !== hash) {
    throw new BuildError(`docker build of ${img.ref} succeeded but the image lacks ${HASH_LABEL}=${hash} (log: ${log})`);
  }
  // Drop the replaced image if nothing else uses it (fails harmlessly when a container or child uses it).
  if (before && before.Id !== after.Id && (before.RepoTags ?? []).every((t) => t === img.ref)) {
    // Bounded: an engine busy elsewhere can take minutes over a removal, and the old image is only garbage.
    docker(['image', 'rm', before.Id], { timeout: 20_000 });
  }
  return (performance.now() - t0) / 1000;
}

/**
 * An image that wrote PACKAGES_FILE while it was built (what it has installed that a program can use,
 * made from what is really there) gets that list as its PACKAGES_LABEL too: a Dockerfile's labels cannot
 * come from a RUN, and the service reads labels from the image list without starting anything. The label
 * goes on in a FROM-only build (no new layer); the image keeps every other label, its hash included.
 */
async function labelPackages(img, { log, verbose, env }) {
  const read = await capture(DOCKER, ['run', '--rm', '--network', 'none', '--user', '1000:1000', '--entrypoint', 'cat', img.ref, PACKAGES_FILE]);
  if (read.status !== 0) {
    if (/No such file/.test(read.stderr)) return;
    throw new BuildError(`cannot read ${PACKAGES_FILE} of ${img.ref}: ${read.stderr.trim() || read.error?.message}`);
  }
  let packages;
  try {
    packages = JSON.parse(read.stdout);
  } catch (err) {
    throw new BuildError(`${PACKAGES_FILE} of ${img.ref} is not JSON (${err.message}); see images/${img.name}/Dockerfile`);
  }
  if (!Array.isArray(packages) || !packages.every((p) => p && typeof p.name === 'string' && typeof p.version === 'string')) {
    throw new BuildError(`${PACKAGES_FILE} of ${img.ref} must be a JSON array of {name, version} objects`);
  }
  const code = await run(DOCKER, ['build', '--tag', img.ref, '--label', `${PACKAGES_LABEL}=${JSON.stringify(packages)}`, '-'], {
    log,
    verbose,
    env,
    input: `FROM ${img.ref}\n`,
  });
  if (code !== 0) throw fail(`labelling ${img.ref} with its packages`, log, verbose);
}

// ---------------------------------------------------------------------------------------------
// generated build contexts

// Debian bookworm's glibc: a prebuilt addon needing a newer one does not load in the images.
const TARGET_GLIBC_MINOR = 36;

/** Writes a file only when its content differs, so an unchanged bundle leaves the source hash alone. */
function writeIfChanged(file, content) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  if (fs.existsSync(file) && fs.readFileSync(file).equals(Buffer.from(content))) return;
  fs.writeFileSync(file, content);
}

function copyTree(from, to, keep) {
  for (const rel of listFiles(from)) {
    if (keep(rel)) writeIfChanged(path.join(to, rel), fs.readFileSync(path.join(from, rel)));
  }
}

/** Highest GLIBC_2.N symbol version an ELF file asks for (0 when none). */
function glibcMinorNeeded(file) {
  let max = 0;
  for (const m of fs.readFileSync(file).toString('latin1').matchAll(/GLIBC_2\.(\d+)/g)) max = Math.max(max, Number(m[1]));
  return max;
}

/**
 * images/runner/dist, the context of polykernel/runner: the in-container kernel (src/runner) bundled by
 * esbuild for Debian's nodejs 18 (runner.mjs, js-executor.mjs, ts-build.mjs), the TypeScript compiler
 * minified (typescript.cjs, loaded only by TypeScript kernels), and the zeromq package from node_modules
 * with only the prebuilt N-API binaries that load on the images' glibc.
 */
async function bundleRunner(dir) {
  let esbuild;
  try {
    esbuild = await import('esbuild');
  } catch {
    throw new BuildError('esbuild is not installed (a devDependency): run `npm ci` first');
  }
  const out = path.join(dir, 'dist');
  const modules = path.join(ROOT, 'node_modules');
  const tsVersion = JSON.parse(fs.readFileSync(path.join(modules, 'typescript/package.json'), 'utf8')).version;
  const common = { bundle: true, platform: 'node', target: 'node18', write: false, legalComments: 'none', logLevel: 'error' };
  const results = await Promise.all([
    esbuild.build({
      ...common,
      entryPoints: {
        runner: path.join(ROOT, 'src/runner/main.ts'),
        'js-executor': path.join(ROOT, 'src/runner/js/executor-main.ts'),
        'ts-build': path.join(ROOT, 'src/runner/js/ts-build.ts'),
      },
      outdir: out,
      format: 'esm',
      outExtension: { '.js': '.mjs' },
      // zeromq loads its native addon relative to its own files; typescript is loaded lazily from disk.
      external: ['zeromq', 'typescript'],
      define: { PK_TYPESCRIPT_VERSION: JSON.stringify(tsVersion) },
      // esbuild's ESM output has no `require`; a dependency calling require('fs') needs one.
      banner: { js: "import { createRequire as __pkCreateRequire } from 'node:module'; const require = __pkCreateRequire(import.meta.url);" },
    }),
    esbuild.build({
      ...common,
      entryPoints: [path.join(modules, 'typescript/lib/typescript.js')],
      outfile: path.join(out, 'typescript.cjs'),
      format: 'cjs',
      minify: true,
    }),
  ]);
  const wanted = new Set();
  for (const result of results) {
    for (const file of result.outputFiles) {
      writeIfChanged(file.path, file.contents);
      wanted.add(path.relative(out, file.path));
    }
  }

  const zmqFrom = path.join(modules, 'zeromq');
  const zmqTo = path.join(out, 'node_modules/zeromq');
  const arch = process.arch;
  const manifest = JSON.parse(fs.readFileSync(path.join(zmqFrom, 'build/manifest.json'), 'utf8'));
  const kept = {};
  for (const [key, addon] of Object.entries(manifest)) {
    const config = JSON.parse(key);
    if (config.os !== 'linux' || config.arch !== arch || config.libc !== 'glibc') continue;
    if (glibcMinorNeeded(path.join(zmqFrom, 'build', addon)) > TARGET_GLIBC_MINOR) continue;
    kept[key] = addon;
    writeIfChanged(path.join(zmqTo, 'build', addon), fs.readFileSync(path.join(zmqFrom, 'build', addon)));
    wanted.add(path.join('node_modules/zeromq/build', addon));
  }
  if (!Object.keys(kept).length) throw new BuildError(`node_modules/zeromq has no prebuilt linux ${arch} addon for glibc 2.${TARGET_GLIBC_MINOR}`);
  writeIfChanged(path.join(zmqTo, 'build/manifest.json'), JSON.stringify(kept));
  wanted.add('node_modules/zeromq/build/manifest.json');
  const jsOnly = (rel) => rel === 'package.json' || (rel.startsWith('lib/') && rel.endsWith('.js') && !rel.startsWith('lib/ts3.7/'));
  copyTree(zmqFrom, zmqTo, jsOnly);
  const cmakeFrom = path.join(modules, 'cmake-ts');
  const loaderOnly = (rel) => rel === 'package.json' || rel === 'build/loader.js';
  copyTree(cmakeFrom, path.join(out, 'node_modules/cmake-ts'), loaderOnly);
  for (const rel of listFiles(zmqFrom).filter(jsOnly)) wanted.add(path.join('node_modules/zeromq', rel));
  for (const rel of listFiles(cmakeFrom).filter(loaderOnly)) wanted.add(path.join('node_modules/cmake-ts', rel));
  // Whatever an earlier bundle left that this one did not make goes.
  for (const rel of listFiles(out)) if (!wanted.has(rel)) fs.rmSync(path.join(out, rel));
}

/** Images whose build context is (partly) generated before it is hashed and built. */
const GENERATED_CONTEXTS = { runner: bundleRunner };

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  fs.mkdirSync(LOG_DIR, { recursive: true });
  const ping = docker(['version', '--format', '{{.Server.Version}}']);
  if (ping.status !== 0) {
    throw new BuildError(`cannot reach the Docker engine with ${DOCKER}: ${(ping.stderr || ping.error?.message || '').trim()}`);
  }
  const images = discover();
  const order = buildOrder(images, opts.only);
  const hashes = new Map();
  let built = 0;
  const t0 = performance.now();
  const slots = semaphore(opts.jobs);
  const buildOne = async (name) => {
    const img = images.get(name);
    let baseRef;
    let parentHash;
    if (img.parent) {
      baseRef = images.get(img.parent).ref;
      parentHash = `${baseRef}#${hashes.get(img.parent)}`;
    } else {
      baseRef = img.external;
      parentHash = `${baseRef}@${await ensureExternalBase(baseRef, opts)}`;
    }
    if (GENERATED_CONTEXTS[name]) await GENERATED_CONTEXTS[name](img.dir);
    const hash = sourceHash(img, parentHash);
    hashes.set(name, hash);
    const existing = imageInfo(img.ref);
    const forced = opts.force && (!opts.only || opts.only.includes(name));
    if (!forced && existing?.Config?.Labels?.[HASH_LABEL] === hash) {
      process.stdout.write(`${img.ref.padEnd(28)} up to date\n`);
      return;
    }
    if (opts.verbose) process.stdout.write(`build-images: building ${img.ref} from ${baseRef}\n`);
    const secs = await buildImage(img, baseRef, hash, opts);
    built++;
    process.stdout.write(`${img.ref.padEnd(28)} built in ${secs.toFixed(1)}s\n`);
  };
  // Siblings build side by side (--jobs); an image starts once its parent is done. apt downloads and
  // unpacking dominate, so a few builds at once use the machine better than one.
  const done = new Map();
  for (const name of order) {
    const parent = images.get(name).parent;
    const after = parent && done.has(parent) ? done.get(parent) : Promise.resolve();
    done.set(name, after.then(() => slots(() => buildOne(name))));
  }
  const results = await Promise.allSettled(done.values());
  const failure = results.find((r) => r.status === 'rejected');
  if (failure) throw failure.reason;
  if (built > 0) process.stdout.write(`build-images: ${built} image(s) built in ${((performance.now() - t0) / 1000).toFixed(1)}s\n`);
  else if (opts.verbose) process.stdout.write('build-images: nothing to build\n');
}

/** Runs at most `limit` tasks at once. */
function semaphore(limit) {
  let active = 0;
  const waiting = [];
  return async (task) => {
    if (active >= limit) await new Promise((resolve) => waiting.push(resolve));
    active++;
    try {
      return await task();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

// A promise left pending would otherwise end the process with status 0.
let finished = false;
process.on('exit', (code) => {
  if (!finished && code === 0) {
    process.stderr.write('build-images: internal error: stopped before finishing\n');
    process.exitCode = 1;
  }
});

main().then(() => (finished = true), (err) => {
  finished = true;
  if (err instanceof BuildError) process.stderr.write(`build-images: ${err.message}\n`);
  else process.stderr.write(`build-images: ${err.stack || err}\n`);
  process.exit(1);
});

/**
 * Notebook root confinement and output naming (issue #5), on real temporary directories: `..`, absolute
 * paths and symlinks out of the root are refused; outputs take the next free name, never follow a link.
 */
import test from 'ava';
import { mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile, chmod, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  defaultOutputName,
  normaliseRelative,
  NotebookRoot,
  numberedOutputName,
} from '../../src/executions/paths.js';

let base: string;
let rootDir: string;
let outside: string;
let root: NotebookRoot;

test.before(async () => {
  base = await mkdtemp(path.join(os.tmpdir(), 'pk-paths-'));
  rootDir = path.join(base, 'root');
  outside = path.join(base, 'outside');
  await mkdir(path.join(rootDir, 'sub'), { recursive: true });
  await mkdir(outside);
  await chmod(rootDir, 0o755);
  await chmod(path.join(rootDir, 'sub'), 0o755);
  await writeFile(path.join(rootDir, 'sub', 'a.ipynb'), '{}');
  await writeFile(path.join(outside, 'secret.ipynb'), '{}');
  await symlink(path.join(outside, 'secret.ipynb'), path.join(rootDir, 'link.ipynb'));
  await symlink(outside, path.join(rootDir, 'outdir'));
  await symlink(path.join(rootDir, 'sub'), path.join(rootDir, 'insub'));
  root = new NotebookRoot(rootDir);
});

test.after.always(async () => {
  await rm(base, { recursive: true, force: true });
});

test('paths are normalised; absolute paths and .. out of the root are refused', (t) => {
  t.is(normaliseRelative('sub/./x/../a.ipynb', 'notebook'), 'sub/a.ipynb');
  t.throws(() => normaliseRelative('/etc/passwd', 'notebook'), { message: /absolute path/ });
  t.throws(() => normaliseRelative('../x.ipynb', 'notebook'), { message: /outside the notebook root/ });
  t.throws(() => normaliseRelative('sub/../../x.ipynb', 'notebook'), { message: /outside the notebook root/ });
  t.throws(() => normaliseRelative('a\0b', 'notebook'), { message: /NUL/ });
  t.throws(() => normaliseRelative('sub/', 'notebook'), { message: /directory/ });
});

test('a notebook resolves to its real path and directory; a symlink inside the root is fine', async (t) => {
  const resolved = await root.resolveNotebook('insub/a.ipynb');
  t.is(resolved.rel, 'insub/a.ipynb');
  t.is(resolved.real, path.join(rootDir, 'sub', 'a.ipynb'));
  t.is(resolved.dir, path.join(rootDir, 'sub'));
});

test('symlinks out of the root are a 400, a missing notebook a 404', async (t) => {
  for (const rel of ['link.ipynb', 'outdir/secret.ipynb', 'outdir/missing.ipynb']) {
    const error = await t.throwsAsync(root.resolveNotebook(rel));
    t.is((error as any).code, 'invalid_input', rel);
    t.regex(error!.message, /outside the notebook root/);
  }
  const missing = await t.throwsAsync(root.resolveNotebook('sub/none.ipynb'));
  t.is((missing as any).code, 'not_found');
  await t.throwsAsync(root.checkOutputPath('outdir/o.ipynb'), { message: /outside the notebook root/ });
  await t.throwsAsync(root.checkOutputPath('sub/o.txt'), { message: /must end with \.ipynb/ });
  t.is(await root.checkOutputPath('new/dir/o.ipynb'), 'new/dir/o.ipynb');
});

test('default output names count up from <name>-Executed1.ipynb; an explicit one from <name>-2', async (t) => {
  t.is(defaultOutputName('sub/a.ipynb', 3), 'sub/a-Executed3.ipynb');
  t.is(defaultOutputName('b', 1), 'b-Executed1.ipynb');
  t.is(numberedOutputName('out/r.ipynb', 2), 'out/r-2.ipynb');
  const write = (content: string, explicit?: string, overwrite = false) =>
    root.writeOutput(content, { notebookRel: 'sub/a.ipynb', explicit, overwrite });
  t.is(await write('1'), 'sub/a-Executed1.ipynb');
  t.is(await write('2'), 'sub/a-Executed2.ipynb');
  t.is(await readFile(path.join(rootDir, 'sub/a-Executed2.ipynb'), 'utf8'), '2');
  t.is(await write('x', 'made/here/r.ipynb'), 'made/here/r.ipynb');
  t.is(await write('y', 'made/here/r.ipynb'), 'made/here/r-2.ipynb');
  t.is(await write('z', 'made/here/r.ipynb', true), 'made/here/r.ipynb');
  t.is(await readFile(path.join(rootDir, 'made/here/r.ipynb'), 'utf8'), 'z');
  t.deepEqual((await readdir(path.join(rootDir, 'made/here'))).sort(), ['r-2.ipynb', 'r.ipynb']);
});

test('concurrent writes of the same notebook never share a name', async (t) => {
  const names = await Promise.all(Array.from({ length: 5 }, (_, i) => root.writeOutput(String(i), { notebookRel: 'race.ipynb', overwrite: false })));
  t.is(new Set(names).size, 5);
});

test('an output never writes through a symlink planted at its name', async (t) => {
  const target = path.join(outside, 'victim.ipynb');
  await writeFile(target, 'original');
  await symlink(target, path.join(rootDir, 'trap-Executed1.ipynb'));
  await symlink(target, path.join(rootDir, 'trap.ipynb'));
  t.is(await root.writeOutput('new', { notebookRel: 'trap.ipynb', overwrite: false }), 'trap-Executed2.ipynb');
  t.is(await root.writeOutput('new', { notebookRel: 'x.ipynb', explicit: 'trap.ipynb', overwrite: true }), 'trap.ipynb');
  t.is(await readFile(target, 'utf8'), 'original');
  await t.throwsAsync(readlink(path.join(rootDir, 'trap.ipynb')), { code: 'EINVAL' });
});

test('a notebook directory the kernel user cannot enter is refused with how to fix it', async (t) => {
  await mkdir(path.join(rootDir, 'private'), { mode: 0o700 });
  await chmod(path.join(rootDir, 'private'), 0o700);
  await writeFile(path.join(rootDir, 'private', 'p.ipynb'), '{}');
  await t.throwsAsync(root.resolveNotebook('private/p.ipynb'), { message: /not readable by the kernel's user \(uid 1000\).*chmod o\+rx/ });
});

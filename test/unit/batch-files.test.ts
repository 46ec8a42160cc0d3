/**
 * Batch mode's files as pure logic: which names may name a file in the kernel's work directory (issue #4:
 * names that escape it are a 400), the checks across a request's files, and the tar archive that carries
 * them into the container, unpacked here by the host's GNU tar exactly as the container's tar does.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DomainError } from '../../src/errors.js';
import {
  checkBatchFiles,
  fileNameProblem,
  MAX_BATCH_FILES,
  tarArchive,
  type BatchFile,
} from '../../src/runs/batch-files.js';

test('relative, normalised names inside the work directory are accepted', (t) => {
  for (const name of ['main.py', 'pkg/helper.py', 'a b/c-d_e.txt', 'ünï/cödé.py', '.hidden', '..foo', 'a/b..', 'x'.repeat(255), `${'d/'.repeat(300)}f`]) {
    t.is(fileNameProblem(name), undefined, name.slice(0, 40));
  }
});

test('names that escape the work directory or are not normalised are refused, each with its reason', (t) => {
  const cases: [string, RegExp][] = [
    ['', /empty/],
    ['/etc/passwd', /absolute/],
    ['/home/work/main.py', /absolute/],
    ['../x', /"\.\." segment/],
    ['a/../../x', /"\.\." segment/],
    ['a/..', /"\.\." segment/],
    ['..', /"\.\." segment/],
    ['./main.py', /not normalised/],
    ['a/./b', /not normalised/],
    ['a//b', /not normalised/],
    ['dir/', /not normalised/],
    ['a\0b', /control character/],
    ['a\nb', /control character/],
    ['x'.repeat(256), /segment longer than 255 bytes/],
    ['é'.repeat(128), /segment longer than 255 bytes/],
    [`${'abcdefgh/'.repeat(114)}z`, /longer than 1024 bytes/],
  ];
  for (const [name, reason] of cases) t.regex(fileNameProblem(name) ?? 'accepted', reason, JSON.stringify(name.slice(0, 40)));
});

function refused(t: import('ava').ExecutionContext, files: BatchFile[], message: RegExp, maxTotalBytes = 1 << 20): void {
  const error = t.throws(() => checkBatchFiles(files, maxTotalBytes), { instanceOf: DomainError });
  t.is(error?.code, 'invalid_input');
  t.regex(error?.message ?? '', message);
}

test('checkBatchFiles names the offending file and refuses clashes, too many files and too much content', (t) => {
  refused(t, [{ name: 'ok.py', content: '' }, { name: '../evil', content: '' }], /options\.files\[1\]\.name "\.\.\/evil" has a "\.\." segment/);
  refused(t, [{ name: 'a.py', content: '1' }, { name: 'a.py', content: '2' }], /options\.files\[1\]\.name "a\.py" appears twice/);
  refused(t, [{ name: 'pkg', content: '' }, { name: 'pkg/mod.py', content: '' }], /both a file "pkg" and a file under it, "pkg\/mod\.py"/);
  refused(t, [{ name: 'pkg/sub/mod.py', content: '' }, { name: 'pkg/sub', content: '' }], /both a file "pkg\/sub"/);
  const many = Array.from({ length: MAX_BATCH_FILES + 1 }, (_, i) => ({ name: `f${i}`, content: '' }));
  refused(t, many, new RegExp(`has ${MAX_BATCH_FILES + 1} files; at most ${MAX_BATCH_FILES}`));
  refused(t, [{ name: 'a', content: 'é'.repeat(6) }], /hold 12 bytes; at most 10/, 10);
});

test('checkBatchFiles returns the files as given when they are fine', (t) => {
  const files = [{ name: 'main.py', content: 'import helper' }, { name: 'helper.py', content: 'x = 1' }, { name: 'pkgs/a/b.py', content: '' }];
  t.deepEqual(checkBatchFiles(files, 1000), files);
});

test('tarArchive unpacks with GNU tar to exactly the files given, long and non-ASCII names included', (t) => {
  const longName = `${'deep-directory-name/'.repeat(8)}file-with-a-long-name.txt`;
  const files: BatchFile[] = [
    { name: 'main.py', content: 'import helper\nprint(helper.x)\n' },
    { name: 'pkg/helper.py', content: 'x = "ünïcode ✓"\n' },
    { name: longName, content: 'long' },
    { name: 'ünï/名前.txt', content: '' },
    { name: 'block.bin', content: 'y'.repeat(512) },
  ];
  t.true(Buffer.byteLength(longName) > 100);
  const archive = tarArchive(files);
  t.is(archive.length % 512, 0);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pk-tar-'));
  try {
    execFileSync('tar', ['-x', '-m', '--no-same-owner', '-f', '-', '-C', dir], { input: archive });
    for (const file of files) t.is(readFileSync(path.join(dir, file.name), 'utf8'), file.content, file.name);
    const listed = execFileSync('tar', ['-t', '-f', '-'], { input: archive, encoding: 'utf8' }).trim().split('\n');
    t.deepEqual(listed, files.map((file) => file.name));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * v1 files: upload, list and download of a kernel's work directory, on the real engine under runc and
 * runsc. Besides the round trip and the caps, the attacks: names that leave the work directory, links
 * planted by the kernel's code (to /etc, to /tmp, to a file), and a directory swapped for a link to a
 * canary tree in a loop while the service downloads and uploads through it: the canary is never returned
 * and nothing lands in its tree.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startTestService, type TestService } from '../helpers/service.js';
import { containersOfKernel, docker } from '../helpers/docker.js';
import { createKernel, queryText } from '../helpers/v1-client.js';
import { auth, KeysFile } from '../helpers/tenant-keys.js';
import { sleep } from '../helpers/wait.js';

const RUNTIMES = ['runc', 'runsc'] as const;
const FILE_CAP = 2 * 1024 * 1024;
const REQUEST_CAP = 5 * 1024 * 1024;
const MAX_FILES = 5;
const services = new Map<string, TestService>();

test.before(async () => {
  for (const runtime of RUNTIMES) {
    services.set(
      runtime,
      await startTestService({
        containerRuntime: runtime,
        uploadMaxFileBytes: FILE_CAP,
        uploadMaxBytes: REQUEST_CAP,
        uploadMaxFiles: MAX_FILES,
        downloadMaxBytes: 4 * 1024 * 1024,
        listMaxEntries: 50,
        flushWindowMs: 20_000,
      }),
    );
  }
});

test.after.always(async () => {
  for (const svc of services.values()) await svc.stop();
});

interface Part {
  name: string;
  data: Buffer | string;
  /** The Content-Disposition parameters as sent (default: filename="<name>"). */
  disposition?: string;
}

const BOUNDARY = 'pk-test-boundary-7f3a';

function multipart(parts: Part[]): Buffer {
  const chunks: Buffer[] = [];
  for (const part of parts) {
    chunks.push(Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: ${part.disposition ?? `form-data; name="file"; filename="${part.name}"`}\r\nContent-Type: application/octet-stream\r\n\r\n`));
    chunks.push(Buffer.from(part.data));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${BOUNDARY}--\r\n`));
  return Buffer.concat(chunks);
}

async function upload(svc: TestService, id: string, parts: Part[], chunked = false): Promise<{ status: number; body: any }> {
  const body = multipart(parts);
  const response = await fetch(`${svc.url}/v1/kernel/${id}/upload`, {
    method: 'POST',
    headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` },
    // A stream has no Content-Length: the cap must hold while the body arrives.
    body: chunked ? (ReadableStream as unknown as { from(chunks: Buffer[]): ReadableStream }).from([body.subarray(0, 1000), body.subarray(1000)]) : body,
    duplex: 'half',
  } as RequestInit);
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : '' };
}

async function download(svc: TestService, id: string, files: string[]): Promise<{ status: number; bytes: Buffer; headers: Headers; json?: any }> {
  const qs = files.map((f) => `file=${encodeURIComponent(f)}`).join('&');
  const response = await fetch(`${svc.url}/v1/kernel/${id}/download?${qs}`, { signal: AbortSignal.timeout(30_000) });
  const bytes = Buffer.from(await response.arrayBuffer());
  const json = response.headers.get('content-type')?.includes('json') ? JSON.parse(bytes.toString()) : undefined;
  return { status: response.status, bytes, headers: response.headers, json };
}

async function list(svc: TestService, id: string, dir?: string): Promise<{ status: number; body: any }> {
  const { status, body } = await svc.call('GET', `/v1/kernel/${id}/files${dir === undefined ? '' : `?path=${encodeURIComponent(dir)}`}`);
  return { status, body };
}

const py = (svc: TestService, id: string, code: string) => queryText(svc.call, id, code);

/** How many file helpers run in the kernel's container. */
async function helpersRunning(svc: TestService, id: string): Promise<string> {
  return (await py(svc, id, 'import os\nprint(sum(1 for p in os.listdir("/proc") if p.isdigit() and open(f"/proc/{p}/cmdline","rb").read().startswith(b"/opt/polykernel/files")))')).trim();
}

function untar(tar: Buffer): Map<string, Buffer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pk-untar-'));
  try {
    const result = spawnSync('tar', ['-x', '-f', '-', '-C', dir], { input: tar });
    if (result.status !== 0) throw new Error(`tar: ${result.stderr}`);
    const found = new Map<string, Buffer>();
    const walk = (rel: string) => {
      for (const entry of spawnSync('find', [path.join(dir, rel), '-type', 'f'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)) {
        found.set(path.relative(dir, entry), readFileSync(entry));
      }
    };
    walk('.');
    return found;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const runtime of RUNTIMES) {
  const svcOf = () => services.get(runtime)!;

  test.serial(`${runtime}: upload, list and download round trip (one file as its bytes, several as a tar, binary content)`, async (t) => {
    const svc = svcOf();
    const id = await createKernel(svc.call);
    const binary = randomBytes(300 * 1024);
    // Bytes that look like the multipart delimiter's start inside the content.
    const tricky = Buffer.concat([Buffer.from(`\r\n--${BOUNDARY.slice(0, 10)}\r\n--`), randomBytes(100)]);
    const up = await upload(svc, id, [
      { name: 'data/bin.dat', data: binary },
      { name: 'notes.txt', data: 'hello\n' },
      { name: 'data/deep/tricky', data: tricky },
      { name: 'empty', data: '' },
    ]);
    t.is(up.status, 204, JSON.stringify(up.body));

    const root = await list(svc, id);
    t.is(root.status, 200);
    t.deepEqual(root.body.files.map((f: any) => [f.name, f.type]), [['data', 'dir'], ['empty', 'file'], ['notes.txt', 'file']]);
    const notes = root.body.files.find((f: any) => f.name === 'notes.txt');
    t.is(notes.size, 6);
    t.is(notes.mode, '-rw-r--r--');
    t.true(Math.abs(notes.mtime - Date.now() / 1000) < 120);
    const data = await list(svc, id, 'data');
    t.deepEqual(data.body.files.map((f: any) => [f.name, f.type, f.type === 'file' ? f.size : 0]), [['bin.dat', 'file', binary.length], ['deep', 'dir', 0]]);

    const one = await download(svc, id, ['data/bin.dat']);
    t.is(one.status, 200);
    t.true(one.bytes.equals(binary), 'the binary file comes back byte for byte');
    t.is(one.headers.get('content-type'), 'application/octet-stream');
    t.is(one.headers.get('content-length'), String(binary.length));
    t.regex(one.headers.get('content-disposition') ?? '', /filename="bin.dat"/);

    // More than the pipes between the helper and the service hold: a helper nobody reads would wait.
    await py(svc, id, 'open("head.bin", "wb").write(b"h" * (4 * 2**20 - 1))');
    const head = await fetch(`${svc.url}/v1/kernel/${id}/download?file=head.bin`, { method: 'HEAD' });
    t.is(head.status, 200);
    t.is(head.headers.get('content-length'), String(4 * 2 ** 20 - 1));
    await sleep(500);
    t.is(await helpersRunning(svc, id), '0', 'a HEAD request leaves no helper behind');
    await py(svc, id, 'import os; os.remove("head.bin")');

    const several = await download(svc, id, ['notes.txt', 'data/bin.dat', 'data/deep/tricky', 'empty']);
    t.is(several.status, 200);
    t.is(several.headers.get('content-type'), 'application/x-tar');
    t.is(several.headers.get('content-length'), String(several.bytes.length));
    const files = untar(several.bytes);
    t.deepEqual([...files.keys()].sort(), ['data/bin.dat', 'data/deep/tricky', 'empty', 'notes.txt']);
    t.true(files.get('data/bin.dat')!.equals(binary));
    t.true(files.get('data/deep/tricky')!.equals(tricky));
    t.is(files.get('notes.txt')!.toString(), 'hello\n');
    t.is(files.get('empty')!.length, 0);

    // The kernel sees what was uploaded, and an upload replaces a file the kernel wrote.
    t.is(await py(svc, id, 'import hashlib; print(hashlib.sha256(open("data/bin.dat","rb").read()).hexdigest())'), `${(await import('node:crypto')).createHash('sha256').update(binary).digest('hex')}\n`);
    await py(svc, id, 'open("mine.txt", "w").write("by the kernel")');
    t.is((await upload(svc, id, [{ name: 'mine.txt', data: 'replaced' }])).status, 204);
    t.is(await py(svc, id, 'print(open("mine.txt").read())'), 'replaced\n');
    t.is((await download(svc, id, ['mine.txt'])).bytes.toString(), 'replaced');

    // A listing stops at POLYKERNEL_LIST_MAX_ENTRIES (50 here) and says so.
    await py(svc, id, 'import os; os.makedirs("many"); [open(f"many/{i:03}", "w").close() for i in range(60)]');
    const many = await list(svc, id, 'many');
    t.is(many.body.files.length, 50);
    t.true(many.body.truncated);
    t.false((await list(svc, id, 'data')).body.truncated);
    await svc.call('DELETE', `/v1/kernel/${id}`);
  });

  test.serial(`${runtime}: caps: a file over the per-file cap, a request over the per-request cap (declared or streamed), too many files: refused, nothing written`, async (t) => {
    const svc = svcOf();
    const id = await createKernel(svc.call);
    const small = { name: 'first.txt', data: 'written first' };

    const bigFile = await upload(svc, id, [small, { name: 'big.bin', data: Buffer.alloc(FILE_CAP + 1) }]);
    t.is(bigFile.status, 413);
    t.regex(bigFile.body.detail, new RegExp(`larger than ${FILE_CAP} bytes`));
    const three = [0, 1, 2].map((i) => ({ name: `part${i}.bin`, data: Buffer.alloc(FILE_CAP - 10) }));
    for (const chunked of [false, true]) {
      const bigRequest = await upload(svc, id, [small, ...three], chunked);
      t.is(bigRequest.status, 413, `chunked=${chunked}`);
      t.regex(bigRequest.body.detail, new RegExp(`larger than ${REQUEST_CAP} bytes`));
    }
    const many = await upload(svc, id, [small, ...Array.from({ length: MAX_FILES }, (_, i) => ({ name: `f${i}`, data: 'x' }))]);
    t.is(many.status, 400);
    t.regex(many.body.detail, /more than 5 files/);
    const twice = await upload(svc, id, [small, { name: 'first.txt', data: 'again' }]);
    t.is(twice.status, 400);
    const fileAndDir = await upload(svc, id, [small, { name: 'first.txt/under', data: 'x' }]);
    t.is(fileAndDir.status, 400);

    // A client gone mid-upload (after the first file, inside the second).
    const partial = multipart([small, { name: 'cut.bin', data: Buffer.alloc(100_000) }]);
    await new Promise<void>((resolve) => {
      const request = http.request(`${svc.url}/v1/kernel/${id}/upload`, {
        method: 'POST',
        headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}`, 'content-length': String(partial.length) },
      });
      request.on('error', () => resolve());
      request.write(partial.subarray(0, 50_000), () => setTimeout(() => (request.destroy(), resolve()), 500));
    });
    await sleep(1000);
    t.is(await helpersRunning(svc, id), '0', 'the helper of the cut upload has ended');

    // Nothing of any refused upload is there, not even the parts before the refused one.
    t.deepEqual((await list(svc, id)).body.files, []);
    t.is(await py(svc, id, 'import os; print(sorted(os.listdir(".")), sorted(n for n in os.listdir("/tmp") if "polykernel" in n))'), '[] []\n');
    // Within the caps it goes through.
    t.is((await upload(svc, id, [small, { name: 'ok.bin', data: Buffer.alloc(FILE_CAP) }])).status, 204);
    t.is((await download(svc, id, ['ok.bin', 'first.txt', 'ok.bin'])).status, 400, 'a file named twice');
    await py(svc, id, 'open("huge", "wb").write(b"\\0" * (5 * 2**20))');
    const over = await download(svc, id, ['huge']);
    t.is(over.status, 413);
    t.regex(over.json.detail, /larger than 4194304 bytes/);
    await svc.call('DELETE', `/v1/kernel/${id}`);
  });

  test.serial(`${runtime}: names that leave the work directory or are odd are refused with 400 on upload, download and list`, async (t) => {
    const svc = svcOf();
    const id = await createKernel(svc.call);
    const bad = ['../escape.txt', '/tmp/abs.txt', 'a/../../b.txt', 'a//b', 'a/./b', 'trail/', '..', '.', 'new\nline', 'tab\there', 'x'.repeat(1100), `${'y'.repeat(256)}/z`];
    for (const name of bad) {
      const up = await upload(svc, id, [{ name, data: 'x' }]);
      t.is(up.status, 400, `upload ${JSON.stringify(name.slice(0, 30))}: ${JSON.stringify(up.body)}`);
      const down = await download(svc, id, [name]);
      t.is(down.status, 400, `download ${JSON.stringify(name.slice(0, 30))}`);
    }
    // NUL: as a raw byte in the header, and percent-encoded in filename*.
    t.is((await upload(svc, id, [{ name: 'nul\0name', data: 'x' }])).status, 400);
    t.is((await upload(svc, id, [{ name: '', data: 'x', disposition: `form-data; name="file"; filename*=UTF-8''nul%00name` }])).status, 400);
    t.is((await upload(svc, id, [{ name: '', data: 'x', disposition: `form-data; name="file"; filename*=UTF-8''..%2Fup` }])).status, 400);
    t.is((await upload(svc, id, [{ name: '', data: 'x', disposition: 'form-data; name="file"' }])).status, 400, 'a part without a filename');
    t.is((await download(svc, id, ['nul\0name'])).status, 400);
    for (const dir of ['..', '../..', '/etc', '/', 'a/../..']) t.is((await list(svc, id, dir)).status, 400, `list ${dir}`);
    t.is((await download(svc, id, [])).status, 400, 'no file named');
    // Not a multipart body.
    const json = await svc.call('POST', `/v1/kernel/${id}/upload`, { files: [] });
    t.is(json.status, 415);
    // A UTF-8 name is fine, in filename and filename*.
    t.is((await upload(svc, id, [{ name: 'données/été.txt', data: 'ok' }])).status, 204);
    t.is((await upload(svc, id, [{ name: '', data: 'ok2', disposition: `form-data; name="file"; filename*=UTF-8''${encodeURIComponent('日本/語.txt')}` }])).status, 204);
    t.is((await download(svc, id, ['日本/語.txt'])).bytes.toString(), 'ok2');
    t.is(await py(svc, id, 'import os; print(os.path.exists("/tmp/abs.txt"), os.path.exists("/home/escape.txt"), os.path.exists("/home/b.txt"), sorted(os.listdir(".")))'), "False False False ['données', '日本']\n");
    await svc.call('DELETE', `/v1/kernel/${id}`);
  });

  test.serial(`${runtime}: links planted by the kernel's code are never followed: get, put and list through them are refused; a FIFO is refused at once`, async (t) => {
    const svc = svcOf();
    const id = await createKernel(svc.call);
    await py(
      svc,
      id,
      [
        'import os',
        'os.makedirs("/tmp/out", exist_ok=True)',
        'open("/tmp/out/canary", "w").write("CANARY")',
        'os.symlink("/etc", "etc")',
        'os.symlink("/etc/passwd", "pw")',
        'os.symlink("/tmp/out", "out")',
        'os.symlink("/tmp/out/canary", "canary")',
        'os.mkfifo("fifo")',
        'os.makedirs("sub")',
        'os.symlink("..", "sub/up")',
      ].join('\n'),
    );
    for (const name of ['etc/passwd', 'pw', 'out/canary', 'canary', 'sub/up/pw']) {
      const down = await download(svc, id, [name]);
      t.is(down.status, 400, `${name}: ${down.bytes.toString().slice(0, 200)}`);
      t.regex(down.json.detail, /symbolic link/);
    }
    const several = await download(svc, id, ['sub/up/pw', 'canary']);
    t.is(several.status, 400);
    const started = Date.now();
    const fifo = await download(svc, id, ['fifo']);
    t.is(fifo.status, 400);
    t.regex(fifo.json.detail, /not a regular file/);
    t.true(Date.now() - started < 10_000, 'a FIFO does not hold the download');
    for (const dir of ['etc', 'out', 'sub/up']) {
      const listed = await list(svc, id, dir);
      t.is(listed.status, 400, dir);
      t.regex(listed.body.detail, /symbolic link/);
    }
    const root = await list(svc, id);
    t.deepEqual(
      root.body.files.map((f: any) => [f.name, f.type]),
      [['canary', 'symlink'], ['etc', 'symlink'], ['fifo', 'other'], ['out', 'symlink'], ['pw', 'symlink'], ['sub', 'dir']],
    );
    for (const name of ['out/evil.txt', 'out/new/evil.txt', 'sub/up/out/evil.txt', 'canary', 'pw', 'etc/evil']) {
      const up = await upload(svc, id, [{ name, data: 'EVIL' }]);
      t.is(up.status, 400, `${name}: ${JSON.stringify(up.body)}`);
    }
    t.is(await py(svc, id, 'import os; print(sorted(os.listdir("/tmp/out")), open("/tmp/out/canary").read(), os.path.islink("pw"), os.path.islink("canary"))'), "['canary'] CANARY True True\n");
    await svc.call('DELETE', `/v1/kernel/${id}`);
  });

  test.serial(`${runtime}: a directory swapped for a link in a loop while the service downloads and uploads through it: the canary is never read, its tree never written`, async (t) => {
    const svc = svcOf();
    const id = await createKernel(svc.call);
    const seconds = 8;
    // Kernel code: "d" (a real directory) and "dl" (a link to the canary tree) exchange places as fast as they can.
    await py(
      svc,
      id,
      `
import os, subprocess, sys
os.makedirs("d"); open("d/f", "w").write("inside"); open("x", "w").write("x")
os.makedirs("/tmp/out"); open("/tmp/out/f", "w").write("CANARY")
os.symlink("/tmp/out", "dl")
code = '''
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
def xchg(a, b):
    return libc.renameat2(-100, a, -100, b, 2) if hasattr(libc, "renameat2") else libc.syscall(316, -100, a, -100, b, 2)
def swap():
    # gVisor has no RENAME_EXCHANGE: four renames then, "d" being the directory, missing, or the link.
    if xchg(b"d", b"dl") == 0: return
    os.rename("d", "dt"); os.rename("dl", "d"); os.rename("d", "dl"); os.rename("dt", "d")
end = time.time() + ${seconds + 4}
n = 0
while time.time() < end:
    try:
        swap(); n += 1
    except OSError:
        # The service made "d" anew while it was away (an upload creates missing parents): keep on.
        pass
open("/tmp/swaps", "w").write(str(n))
'''
subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
`,
    );
    const outcomes = { read: 0, wrote: 0, refused: 0 };
    const deadline = Date.now() + seconds * 1000;
    let i = 0;
    while (Date.now() < deadline) {
      const down = await download(svc, id, i % 2 ? ['d/f'] : ['x', 'd/f']);
      if (down.status === 200) {
        t.false(down.bytes.includes('CANARY'), 'the canary behind the link is never returned');
        outcomes.read++;
      } else {
        t.true(down.status === 400 || down.status === 404, `download: ${down.status}`);
        outcomes.refused++;
      }
      const up = await upload(svc, id, [{ name: `d/g${i}.txt`, data: 'EVIL' }, { name: `d/sub${i}/h.txt`, data: 'EVIL' }]);
      if (up.status === 204) outcomes.wrote++;
      else {
        t.true(up.status === 400 || up.status === 404, `upload: ${up.status} ${JSON.stringify(up.body)}`);
        outcomes.refused++;
      }
      i++;
    }
    await sleep((4 + 1) * 1000);
    const after = await py(svc, id, 'import os; print(open("/tmp/swaps").read(), sorted(os.listdir("/tmp/out")), open("/tmp/out/f").read())');
    const [swaps, ...rest] = after.trim().split(' ');
    t.true(Number(swaps) > 100, `the kernel swapped ${swaps} times`);
    t.is(rest.join(' '), "['f'] CANARY", 'nothing was written in the canary tree');
    t.true(outcomes.refused > 0, `some requests met the link: ${JSON.stringify(outcomes)}`);
    t.log(runtime, outcomes, `${swaps} swaps`);
    await svc.call('DELETE', `/v1/kernel/${id}`);
  });

  test.serial(`${runtime}: a directory or a missing file to download, a file to list, and files of a deleted kernel are 4xx`, async (t) => {
    const svc = svcOf();
    const id = await createKernel(svc.call);
    await py(svc, id, 'import os; os.makedirs("adir/inner"); open("afile", "w").write("x")');
    const dir = await download(svc, id, ['adir']);
    t.is(dir.status, 400);
    t.regex(dir.json.detail, /is a directory/);
    const missing = await download(svc, id, ['nothing.txt']);
    t.is(missing.status, 404);
    t.regex(missing.json.detail, /does not exist/);
    t.is((await download(svc, id, ['afile', 'nothing.txt'])).status, 404, 'one missing file of several refuses the download');
    t.is((await download(svc, id, ['afile/below'])).status, 404);
    t.is((await list(svc, id, 'afile')).status, 404);
    t.is((await list(svc, id, 'nowhere')).status, 404);
    t.is((await upload(svc, id, [{ name: 'adir', data: 'x' }])).status, 400, 'a directory is not replaced by a file');
    t.is((await upload(svc, id, [{ name: 'afile/below', data: 'x' }])).status, 404, 'a file is not a directory');
    await svc.call('DELETE', `/v1/kernel/${id}`);
    t.is((await download(svc, id, ['afile'])).status, 404);
    t.is((await list(svc, id)).status, 404);
    t.is((await upload(svc, id, [{ name: 'x', data: 'x' }])).status, 404);
    const unknown = '00000000-0000-4000-8000-000000000000';
    t.is((await list(svc, unknown)).status, 404);

    // A kernel whose container was killed under it: a 4xx, whether the service saw the death yet or not.
    const dead = await createKernel(svc.call);
    docker('kill', containersOfKernel(dead));
    for (const answer of [await list(svc, dead), await upload(svc, dead, [{ name: 'x', data: 'x' }]), await download(svc, dead, ['x'])]) {
      t.true(answer.status === 404 || answer.status === 409, `a dead kernel: ${answer.status}`);
    }
  });
}

const MiB = 1024 * 1024;

/** A multipart body of `files` files of `size` bytes each, generated as it is sent (the test holds 64 KiB of it). */
function generatedUpload(names: string[], size: number): ReadableStream {
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  async function* parts() {
    for (const name of names) {
      yield Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\n\r\n`);
      for (let left = size; left > 0; left -= chunk.length) yield chunk.subarray(0, Math.min(left, chunk.length));
      yield Buffer.from('\r\n');
    }
    yield Buffer.from(`--${BOUNDARY}--\r\n`);
  }
  return (ReadableStream as unknown as { from(source: AsyncIterable<Buffer>): ReadableStream }).from(parts());
}

/** The highest resident memory of this process (the service runs in it) while `work` runs, above the start. */
async function peakGrowth<T>(work: () => Promise<T>): Promise<{ growth: number; result: T }> {
  const start = process.memoryUsage().rss;
  let peak = start;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
  try {
    const result = await work();
    return { growth: Math.max(peak, process.memoryUsage().rss) - start, result };
  } finally {
    clearInterval(sampler);
  }
}

test.serial("runc: big uploads and downloads are streamed: the service's memory stays bounded, a slow reader holds the helper back, a reader gone stops it", async (t) => {
  const size = 40 * MiB;
  const svc = await startTestService({
    containerRuntime: 'runc',
    uploadMaxFileBytes: 48 * MiB,
    uploadMaxBytes: 200 * MiB,
    downloadMaxBytes: 200 * MiB,
    // An upload that replaces files holds the old and the new until its commit: room for both.
    workDirSizeMB: 300,
    flushWindowMs: 20_000,
  });
  try {
    const id = await createKernel(svc.call, { lang: 'python3', resourceLimits: { maxMem: 1024 * 1024 } });
    const names = ['big0.bin', 'big1.bin', 'big2.bin'];
    const uploads = await peakGrowth(async () => {
      const statuses: number[] = [];
      // Three rounds of three at once: 360 MiB through the service, 120 MiB of it in flight at a time.
      for (let round = 0; round < 3; round++) {
        const answers = await Promise.all(
          names.map((name) =>
            fetch(`${svc.url}/v1/kernel/${id}/upload`, {
              method: 'POST',
              headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` },
              body: generatedUpload([name], size),
              duplex: 'half',
            } as RequestInit),
          ),
        );
        for (const answer of answers) {
          statuses.push(answer.status);
          await answer.text();
        }
      }
      return statuses;
    });
    t.deepEqual(uploads.result, Array(9).fill(204));
    t.log(`uploads: peak memory growth ${(uploads.growth / MiB).toFixed(1)} MiB for 360 MiB uploaded`);
    t.true(uploads.growth < 80 * MiB, `memory grew by ${(uploads.growth / MiB).toFixed(1)} MiB`);
    const listed = await list(svc, id);
    t.deepEqual(listed.body.files.map((f: any) => [f.name, f.size]), names.map((name) => [name, size]));

    const downloads = await peakGrowth(async () =>
      Promise.all(
        [['big0.bin'], ['big1.bin'], ['big1.bin', 'big2.bin']].map(async (files) => {
          const response = await fetch(`${svc.url}/v1/kernel/${id}/download?${files.map((f) => `file=${f}`).join('&')}`);
          let bytes = 0;
          let zs = true;
          for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
            bytes += chunk.length;
            if (files.length === 1 && zs) zs = chunk.every((b) => b === 0x5a);
          }
          return { status: response.status, bytes, zs };
        }),
      ),
    );
    t.deepEqual(downloads.result.map((d) => d.status), [200, 200, 200]);
    t.is(downloads.result[0]!.bytes, size);
    t.true(downloads.result[0]!.zs);
    t.true(downloads.result[2]!.bytes > 2 * size);
    t.log(`downloads: peak memory growth ${(downloads.growth / MiB).toFixed(1)} MiB for 160 MiB downloaded`);
    t.true(downloads.growth < 80 * MiB, `memory grew by ${(downloads.growth / MiB).toFixed(1)} MiB`);

    // A reader that stops: the helper is held back (the service does not read 40 MiB ahead for it).
    const controller = new AbortController();
    const slow = await peakGrowth(async () => {
      const response = await fetch(`${svc.url}/v1/kernel/${id}/download?file=big0.bin`, { signal: controller.signal });
      const reader = response.body!.getReader();
      await reader.read();
      await sleep(3000);
      return reader;
    });
    t.log(`a stalled reader: memory growth ${(slow.growth / MiB).toFixed(1)} MiB`);
    t.true(slow.growth < 30 * MiB, `memory grew by ${(slow.growth / MiB).toFixed(1)} MiB while the reader stalled`);
    const helperRunning = () => helpersRunning(svc, id);
    t.is(await helperRunning(), '1', 'the helper waits for the stalled reader');
    controller.abort();
    await slow.result.cancel().catch(() => undefined);
    let left = '1';
    for (let i = 0; i < 50 && left !== '0'; i++) {
      await sleep(200);
      left = await helperRunning();
    }
    t.is(left, '0', 'the helper ends once its reader is gone');
  } finally {
    await svc.stop();
  }
});

test.serial("files routes need the token and a tenant's own kernel: another tenant's kernel is 404, no token 401", async (t) => {
  const keys = await KeysFile.create([
    { id: 'a', key: 'files-key-of-tenant-a-0123' },
    { id: 'b', key: 'files-key-of-tenant-b-0123' },
  ]);
  const svc = await startTestService({ containerRuntime: 'runc', authToken: 'files-admin-token', apiKeysFile: keys.file } as any);
  try {
    const A = auth('files-key-of-tenant-a-0123');
    const B = auth('files-key-of-tenant-b-0123');
    const created = await svc.call('POST', '/v1/kernel/create', { lang: 'python3' }, A);
    t.is(created.status, 201);
    const id = created.body.kernelId as string;
    const send = (headers: Record<string, string>, method: string, route: string, body?: Buffer) =>
      fetch(`${svc.url}/v1/kernel/${id}${route}`, { method, headers: { ...headers, 'content-type': `multipart/form-data; boundary=${BOUNDARY}` }, body: body ? new Uint8Array(body) : undefined });
    const form = multipart([{ name: 'mine.txt', data: 'of tenant a' }]);
    t.is((await send(A, 'POST', '/upload', form)).status, 204);
    for (const [headers, expected] of [[B, 404], [{}, 401]] as const) {
      t.is((await send(headers, 'POST', '/upload', form)).status, expected, 'upload');
      t.is((await send(headers, 'GET', '/files')).status, expected, 'list');
      t.is((await send(headers, 'GET', '/download?file=mine.txt')).status, expected, 'download');
    }
    const mine = await send(A, 'GET', '/download?file=mine.txt');
    t.is(await mine.text(), 'of tenant a');
    const listed = await (await send(A, 'GET', '/files')).json();
    t.deepEqual(listed.files.map((f: any) => f.name), ['mine.txt'], "tenant b's upload wrote nothing");
  } finally {
    await svc.stop();
    await keys.remove();
  }
});

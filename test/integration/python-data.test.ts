/**
 * The data-science Python kernel (images/python-data) against the real engine: a matplotlib plot arrives
 * as a PNG and a DataFrame as HTML, through the Jupyter channels (display_data, execute_result) and
 * through v1 (["media", ...], ["html", ...]); numpy and scipy compute; the kernelspec lists the image's
 * packages, and every declared package is what the kernel really has (each import imports, each version
 * is the installed one); python3 stays the lean, judged Python. Start cost against python3 is logged.
 *
 * Skipped (one test that says so) when the image is not built: `npm run images -- --only python-data`.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { startTestService, type TestService } from '../helpers/service.js';
import { JupyterWs } from '../helpers/jupyter-ws.js';
import { channelsUrl, startKernel } from '../helpers/jupyter-client.js';
import { createKernel, query, batch } from '../helpers/v1-client.js';
import { DOCKER } from '../helpers/docker.js';

const PREFIX = process.env.POLYKERNEL_IMAGE_PREFIX || 'polykernel/';
const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const PLOT = 'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title("squares")\nplt.show()';
const FRAME = 'import pandas as pd\npd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})';

interface Declared {
  name: string;
  version: string;
  import?: string[];
}

function imagePresent(image: string): boolean {
  try {
    execFileSync(DOCKER, ['image', 'inspect', '--format', '{{.Id}}', `${PREFIX}${image}:latest`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const isPng = (base64: string) => Buffer.from(base64.replace(/\n/g, ''), 'base64').subarray(0, 8).equals(PNG_MAGIC);

if (!imagePresent('python-data')) {
  test('python-data: image absent, not run', (t) => {
    t.log(`${PREFIX}python-data:latest is not built here (npm run images -- --only python-data builds it)`);
    t.pass();
  });
} else {
  let svc: TestService;

  test.before(async () => {
    // No warm kernels: the start cost figures are cold starts of both images.
    svc = await startTestService({ flushWindowMs: 60_000, poolSizes: {} });
  });

  test.after.always(async () => {
    await svc?.stop();
  });

  test.serial('channels: a plot is display_data with a PNG, a DataFrame an execute_result with an HTML table', async (t) => {
    const kernelId = await startKernel(svc.call, { name: 'python3-data' });
    const client = await JupyterWs.open(channelsUrl(svc.url, kernelId));
    try {
      const plot = await client.execute(PLOT);
      t.is(plot.reply.content.status, 'ok', JSON.stringify(plot.reply.content));
      const display = client.received.find((m) => m.parent_header.msg_id === plot.id && m.header.msg_type === 'display_data');
      t.truthy(display, 'the plot is published as display_data');
      t.is(typeof display!.content.data['image/png'], 'string');
      t.true(isPng(display!.content.data['image/png']), 'image/png is base64 of a PNG');
      t.regex(display!.content.data['text/plain'], /Figure/);

      const frame = await client.execute(FRAME);
      t.is(frame.reply.content.status, 'ok');
      const result = client.received.find((m) => m.parent_header.msg_id === frame.id && m.header.msg_type === 'execute_result');
      t.truthy(result, 'the DataFrame is the cell\'s execute_result');
      t.regex(result!.content.data['text/html'], /<table[^>]*class="dataframe"[\s\S]*<td>b<\/td>/);
      t.regex(result!.content.data['text/plain'], /x\s+y/);
    } finally {
      await client.close();
      await svc.call('DELETE', `/api/kernels/${kernelId}`);
    }
  });

  test.serial('v1: a plot is a ["media", ["image/png", data URI]] item, a DataFrame an ["html", ...] item', async (t) => {
    const id = await createKernel(svc.call, { lang: 'python3-data' });
    try {
      const plot = await query(svc.call, id, PLOT);
      t.is(plot.status, 'finished', plot.text);
      const media = plot.console.filter(([kind]) => kind === 'media');
      t.is(media.length, 1, JSON.stringify(plot.console).slice(0, 300));
      const [mime, uri] = media[0]![1] as [string, string];
      t.is(mime, 'image/png');
      t.true(uri.startsWith('data:image/png;base64,'));
      t.true(isPng(uri.slice('data:image/png;base64,'.length)), 'the data URI holds a PNG');

      // As in a notebook: a bare plt.plot(...) as the cell's last line, no show(); the figure still comes.
      const bare = await query(svc.call, id, 'plt.plot([3, 1, 2])');
      t.is(bare.status, 'finished', bare.text);
      t.regex(bare.text, /Line2D/, 'the cell\'s value, the list of lines');
      const bareMedia = bare.console.filter(([kind]) => kind === 'media');
      t.is(bareMedia.length, 1, JSON.stringify(bare.console).slice(0, 300));
      t.true(isPng((bareMedia[0]![1] as [string, string])[1].slice('data:image/png;base64,'.length)));

      const frame = await query(svc.call, id, FRAME);
      t.is(frame.status, 'finished', frame.text);
      const html = frame.console.filter(([kind]) => kind === 'html');
      t.is(html.length, 1, JSON.stringify(frame.console));
      t.regex(html[0]![1] as string, /<table[^>]*class="dataframe"/);
    } finally {
      await svc.call('DELETE', `/v1/kernel/${id}`);
    }
  });

  test.serial('numpy and scipy compute; matplotlib found its font list made at build time; one BLAS thread', async (t) => {
    const id = await createKernel(svc.call, { lang: 'pydata' });
    try {
      const fonts = await query(svc.call, id, 'import glob, os\nprint(sorted(os.path.basename(f) for f in glob.glob(os.environ["MPLCONFIGDIR"] + "/fontlist-*.json")))');
      t.regex(fonts.text, /\['fontlist-v\d+\.json'\]/, 'the font list is in MPLCONFIGDIR before matplotlib is imported');
      const code = [
        'import numpy as np, scipy.integrate, scipy.linalg, scipy.optimize, scipy.stats',
        'print(np.linalg.solve(np.array([[3.0, 1.0], [1.0, 2.0]]), np.array([9.0, 8.0])).round(6).tolist())',
        'print(round(scipy.integrate.quad(lambda x: x ** 2, 0, 3)[0], 6))',
        'print(round(float(scipy.optimize.brentq(lambda x: x ** 3 - 2, 0, 2)), 6))',
        'print(round(float(np.linalg.det(scipy.linalg.hilbert(3))), 9))',
        'print(round(float(scipy.stats.norm.cdf(1.96)), 4))',
        'print(np.fft.fft([1, 0, 0, 0]).real.tolist())',
      ].join('\n');
      const out = await query(svc.call, id, code);
      t.is(out.status, 'finished', out.text);
      t.is(out.text, '[2.0, 3.0]\n9.0\n1.259921\n0.000462963\n0.975\n[1.0, 1.0, 1.0, 1.0]\n');
      const threads = await query(svc.call, id, 'import os\nprint(len(os.listdir("/proc/self/task")) < 16, os.environ["OPENBLAS_NUM_THREADS"])');
      t.is(threads.text, 'True 1\n');
    } finally {
      await svc.call('DELETE', `/v1/kernel/${id}`);
    }
  });

  test.serial('batch mode: python3 main.py draws with Agg (no display) into the work directory', async (t) => {
    const id = await createKernel(svc.call, { lang: 'python3-data' });
    try {
      const code = 'import matplotlib, matplotlib.pyplot as plt\nplt.plot([0, 1])\nplt.savefig("out.png")\nprint(matplotlib.get_backend(), open("out.png", "rb").read(4))';
      await query(svc.call, id, `open("main.py", "w").write(${JSON.stringify(code)})`);
      const out = await batch(svc.call, id, 'python3 main.py');
      t.is(out.status, 'finished', out.text);
      t.is(out.text, "agg b'\\x89PNG'\n");
    } finally {
      await svc.call('DELETE', `/v1/kernel/${id}`);
    }
  });

  test.serial('kernelspecs: python3-data lists its packages; python3 is still the Python of the aliases and lists no numpy', async (t) => {
    const { status, body } = await svc.call('GET', '/api/kernelspecs');
    t.is(status, 200);
    const data = body.kernelspecs['python3-data'];
    t.truthy(data, `kernelspecs: ${Object.keys(body.kernelspecs)}`);
    t.is(data.spec.display_name, 'Python 3 (data science)');
    t.is(data.spec.language, 'python');
    const packages = data.spec.metadata.polykernel.packages as Declared[];
    const byName = new Map(packages.map((p) => [p.name.toLowerCase(), p]));
    for (const name of ['python', 'numpy', 'pandas', 'matplotlib', 'scipy', 'matplotlib-inline', 'ipykernel']) {
      t.regex(byName.get(name)?.version ?? '', /^\d+\.\d+/, `${name} is declared with a version`);
    }
    t.deepEqual(byName.get('pandas')?.import, ['pandas']);
    const one = await svc.call('GET', '/api/kernelspecs/python3-data');
    t.deepEqual(one.body.spec.metadata, data.spec.metadata);

    const python3 = body.kernelspecs.python3;
    if (python3) {
      const lean = new Set((python3.spec.metadata.polykernel?.packages as Declared[] | undefined)?.map((p) => p.name.toLowerCase()));
      t.true(lean.has('ipykernel') || lean.size === 0, 'python3 lists its own packages (or an image built before they were declared)');
      t.false(lean.has('numpy'), 'the judged python3 stays lean');
      t.is((await svc.service.kernels.specs.resolve('python'))?.name, 'python3', 'the alias python still means python3');
    } else {
      t.log(`${PREFIX}python:latest is not built: python3 not checked`);
    }
  });

  test.serial('every declared package is installed: each import imports, each version is the installed one', async (t) => {
    const { body } = await svc.call('GET', '/api/kernelspecs/python3-data');
    const declared = body.spec.metadata.polykernel.packages as Declared[];
    const id = await createKernel(svc.call, { lang: 'python3-data' });
    try {
      // Run in the kernel: what it really has, checked against the list the service shows.
      const code = [
        'import importlib, importlib.metadata as md, json, platform, sys',
        `declared = json.loads(${JSON.stringify(JSON.stringify(declared))})`,
        'problems = []',
        'for p in declared:',
        '    if p["name"] == "python":',
        '        if p["version"] != platform.python_version(): problems.append(("python", p["version"]))',
        '        continue',
        '    try:',
        '        if md.version(p["name"]) != p["version"]: problems.append((p["name"], "version", md.version(p["name"])))',
        '    except md.PackageNotFoundError: problems.append((p["name"], "not installed"))',
        '    for m in p.get("import", []):',
        '        try: importlib.import_module(m)',
        '        except BaseException as e: problems.append((p["name"], m, repr(e)[:200]))',
        // Some modules print as they are imported (pydevd's): the answer is the line after the marker.
        'print("PROBLEMS", json.dumps(problems))',
      ].join('\n');
      const out = await query(svc.call, id, code);
      t.is(out.status, 'finished', out.text);
      const answer = out.console.filter(([kind]) => kind === 'stdout').map(([, text]) => text).join('').split('\n').find((line) => line.startsWith('PROBLEMS '));
      t.truthy(answer, out.text.slice(0, 2000));
      t.deepEqual(JSON.parse(answer!.slice('PROBLEMS '.length)), [], out.text.slice(0, 2000));
      t.true(declared.length > 40, `${declared.length} packages declared`);
    } finally {
      await svc.call('DELETE', `/v1/kernel/${id}`);
    }
  });

  test.serial('not a judged language: Piston and Judge0 list python3 only', async (t) => {
    const runtimes = await svc.call('GET', '/api/v2/runtimes');
    t.is(runtimes.status, 200);
    const names = (runtimes.body as { language: string; aliases: string[] }[]).flatMap((r) => [r.language, ...r.aliases]);
    t.false(names.includes('python3-data'), names.join(','));
    t.false(names.includes('pydata'));
    const languages = await svc.call('GET', '/languages');
    t.is(languages.status, 200);
    t.false(JSON.stringify(languages.body).includes('data science'));
    t.is((await svc.service.judge!.languages()).filter((l) => l.name === 'python3-data').length, 0);
  });

  test.serial('start cost: cold create to first execute answered, python3-data against python3 (logged)', async (t) => {
    const coldStart = async (lang: string) => {
      const started = performance.now();
      const id = await createKernel(svc.call, { lang });
      const out = await query(svc.call, id, 'print(1)');
      const firstExecute = performance.now() - started;
      const importStarted = performance.now();
      const plot = await query(svc.call, id, lang === 'python3-data' ? PLOT : 'print(2)');
      const firstPlot = performance.now() - importStarted;
      await svc.call('DELETE', `/v1/kernel/${id}`);
      t.is(out.text, '1\n');
      t.is(plot.status, 'finished');
      return { firstExecute, firstPlot };
    };
    const rounds: Record<string, { firstExecute: number; firstPlot: number }[]> = { python3: [], 'python3-data': [] };
    const langs = imagePresent('python') ? ['python3', 'python3-data'] : ['python3-data'];
    for (let i = 0; i < 3; i++) for (const lang of langs) rounds[lang]!.push(await coldStart(lang));
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    for (const lang of langs) {
      const r = rounds[lang]!;
      t.log(`${lang}: cold create -> first execute answered, median of 3: ${median(r.map((x) => x.firstExecute)).toFixed(0)} ms` +
        (lang === 'python3-data' ? `; then first plot (imports matplotlib): ${median(r.map((x) => x.firstPlot)).toFixed(0)} ms` : ''));
    }
    t.pass();
  });
}

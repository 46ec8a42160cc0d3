/**
 * Declared package sets against the images themselves: every kernelspec on offer lists its packages in
 * metadata.polykernel.packages; the first entry (the compiler or interpreter) is the version the image
 * records for the judge; and where a language can say what it has, a kernel of it checks every entry —
 * Python imports each module and finds each version, R loads each package's namespace at its version,
 * PHP has each extension, Ruby each gem at its version, C's compiler and C library are the declared ones.
 * (python3-data's own list is checked in python-data.test.ts.)
 */
import test from 'ava';
import { startTestService, type TestService } from '../helpers/service.js';
import { createKernel, query } from '../helpers/v1-client.js';
import type { DeclaredPackage } from '../../src/kernels/kernel-specs.js';
import { VERSION_FILE } from '../../src/judge/languages.js';

let svc: TestService;
let specs: Record<string, { spec: { metadata: { polykernel?: { packages?: DeclaredPackage[] } } } }>;

test.before(async () => {
  svc = await startTestService({ flushWindowMs: 60_000, poolSizes: {} });
  specs = (await svc.call('GET', '/api/kernelspecs')).body.kernelspecs;
});

test.after.always(async () => {
  await svc?.stop();
});

const packagesOf = (name: string) => specs[name]?.spec.metadata.polykernel?.packages;

test('every kernelspec lists its packages; the first is the tool whose version the image records', async (t) => {
  t.true(Object.keys(specs).length > 0, 'some images are built');
  for (const name of Object.keys(specs)) {
    const packages = packagesOf(name);
    if (!packages) {
      t.fail(`${name} declares no packages (metadata: ${JSON.stringify(specs[name]!.spec.metadata)}); rebuild it with npm run images`);
      continue;
    }
    t.true(packages.every((p) => p.name && p.version), `${name}: every entry has a name and a version`);
    const entry = await svc.service.kernels.specs.resolve(name);
    const versionLine = (await svc.service.kernels.specs.readImageFile(entry!, VERSION_FILE))?.toString('utf8').trim() ?? '';
    t.is(versionLine.split(/\s+/).pop(), packages[0]!.version, `${name}: version file "${versionLine}" and first package ${JSON.stringify(packages[0])}`);
  }
});

/** Runs a check in a kernel of `lang`; it prints the problems it found, one a line, then `CHECKED <n>`. */
async function checkInKernel(t: any, lang: string, code: (packages: DeclaredPackage[]) => string): Promise<void> {
  const packages = packagesOf(lang);
  if (!packages) {
    t.log(`${lang} is not built here (or declares nothing): not checked`);
    t.pass();
    return;
  }
  const id = await createKernel(svc.call, { lang });
  try {
    const out = await query(svc.call, id, code(packages));
    t.is(out.status, 'finished', out.text.slice(0, 2000));
    const stdout = out.console.filter(([kind]) => kind === 'stdout').map(([, text]) => text).join('');
    const lines = stdout.split('\n');
    const done = lines.find((line) => line.startsWith('CHECKED '));
    t.is(done, `CHECKED ${packages.length}`, stdout.slice(0, 2000));
    t.deepEqual(lines.filter((line) => line.startsWith('PROBLEM ')), [], `${lang}: ${packages.length} packages`);
  } finally {
    await svc.call('DELETE', `/v1/kernel/${id}`);
  }
}

test('python3: each declared module imports and each distribution has the declared version', (t) =>
  checkInKernel(t, 'python3', (packages) => [
    'import importlib, importlib.metadata as md, json, platform',
    `declared = json.loads(${JSON.stringify(JSON.stringify(packages))})`,
    'for p in declared:',
    '    if p["name"] == "python":',
    '        if p["version"] != platform.python_version(): print("PROBLEM python", platform.python_version())',
    '        continue',
    '    try:',
    '        if md.version(p["name"]) != p["version"]: print("PROBLEM", p["name"], md.version(p["name"]))',
    '    except md.PackageNotFoundError: print("PROBLEM", p["name"], "not installed")',
    '    for m in p.get("import", []):',
    '        try: importlib.import_module(m)',
    '        except BaseException as e: print("PROBLEM", p["name"], m, repr(e)[:200])',
    'print("CHECKED", len(declared))',
  ].join('\n')));

test('r: each declared package loads, at the declared version', (t) =>
  checkInKernel(t, 'r', (packages) => [
    `declared <- jsonlite::fromJSON(${JSON.stringify(JSON.stringify(packages))})`,
    'for (i in seq_len(nrow(declared))) {',
    '  name <- declared$name[i]; version <- declared$version[i]',
    '  if (name == "R") { if (version != paste(R.version$major, R.version$minor, sep = ".")) cat("PROBLEM R", R.version.string, "\\n"); next }',
    '  ok <- suppressWarnings(suppressMessages(requireNamespace(name, quietly = TRUE)))',
    '  if (!ok) cat("PROBLEM", name, "does not load\\n")',
    '  else if (as.character(packageVersion(name)) != gsub("-", ".", version)) cat("PROBLEM", name, as.character(packageVersion(name)), "\\n")',
    '}',
    'cat("CHECKED ", nrow(declared), "\\n", sep = "")',
  ].join('\n')));

test('php: each declared extension is loaded, at the declared version', (t) =>
  checkInKernel(t, 'php', (packages) => [
    `$declared = json_decode(${JSON.stringify(JSON.stringify(packages)).replace(/\$/g, '\\$')}, true);`,
    'foreach ($declared as $p) {',
    '  if ($p["name"] === "php") { if ($p["version"] !== PHP_VERSION) echo "PROBLEM php ", PHP_VERSION, "\\n"; continue; }',
    '  if (!extension_loaded($p["name"])) echo "PROBLEM ", $p["name"], " not loaded\\n";',
    '  elseif ((phpversion($p["name"]) ?: PHP_VERSION) !== $p["version"]) echo "PROBLEM ", $p["name"], " ", phpversion($p["name"]), "\\n";',
    '}',
    'echo "CHECKED ", count($declared), "\\n";',
  ].join('\n')));

test('ruby: each declared gem is installed at the declared version', (t) =>
  checkInKernel(t, 'ruby', (packages) => [
    'require "json"',
    `declared = JSON.parse(${JSON.stringify(JSON.stringify(packages))})`,
    'declared.each do |p|',
    '  if p["name"] == "ruby"',
    '    puts "PROBLEM ruby #{RUBY_VERSION}" if p["version"] != RUBY_VERSION',
    '    next',
    '  end',
    '  versions = Gem::Specification.find_all_by_name(p["name"]).map { |s| s.version.to_s }',
    '  puts "PROBLEM #{p["name"]} #{versions.inspect}" unless versions.include?(p["version"])',
    'end',
    'puts "CHECKED #{declared.size}"',
  ].join('\n')));

test('c: the compiler and the C library a program gets are the declared ones', (t) =>
  checkInKernel(t, 'c', (packages) => {
    const want = Object.fromEntries(packages.map((p) => [p.name, p.version]));
    return [
      '#include <stdio.h>',
      '#include <string.h>',
      '#include <gnu/libc-version.h>',
      'int main(void) {',
      `  if (strcmp(__VERSION__, ${JSON.stringify(want.gcc ?? '')}) != 0) printf("PROBLEM gcc %s\\n", __VERSION__);`,
      `  if (strcmp(gnu_get_libc_version(), ${JSON.stringify(want.glibc ?? '')}) != 0) printf("PROBLEM glibc %s\\n", gnu_get_libc_version());`,
      `  printf("CHECKED %d\\n", ${packages.length});`,
      '  return 0;',
      '}',
    ].join('\n');
  }));

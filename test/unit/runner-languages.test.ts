/**
 * The language table of the runner and the images agree: every language of the table has its folder under
 * images/ whose labels carry the same kernelspec, file extension and batch commands, and whose CMD starts
 * the runner for it. Every kernel image (python and R too) has the build and exec labels of batch mode.
 */
import test from 'ava';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expandCommand, javaFileName, LANGUAGES, sourceText, findLanguage } from '../../src/runner/languages.js';

const IMAGES = fileURLToPath(new URL('../../../images/', import.meta.url));

function labels(dockerfile: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of dockerfile.matchAll(/(org\.polykernel\.[\w.]+)=(?:'([^']*)'|"((?:[^"\\]|\\.)*)")/g)) {
    out[m[1]!] = m[2] ?? m[3]!.replace(/\\(.)/g, '$1');
  }
  return out;
}

const dockerfileOf = (name: string) => readFileSync(`${IMAGES}${name}/Dockerfile`, 'utf8');

for (const language of LANGUAGES) {
  test(`images/${language.name} carries the table's facts`, (t) => {
    t.true(existsSync(`${IMAGES}${language.name}/Dockerfile`));
    const text = dockerfileOf(language.name);
    const label = labels(text);
    const argv = ['node', '/opt/polykernel/runner.mjs', language.name];
    t.deepEqual(JSON.parse(label['org.polykernel.kernelspec']!), {
      name: language.name,
      spec: {
        language: language.language,
        display_name: language.displayName,
        argv: [...argv, '{connection_file}'],
        env: {},
        metadata: {},
        interrupt_mode: 'signal',
      },
    });
    t.is(label['org.polykernel.lang'], language.name);
    t.is(label['org.polykernel.file_extension'], language.fileExtension);
    t.is(label['org.polykernel.build'], language.batch.build);
    t.is(label['org.polykernel.exec'], language.batch.exec);
    t.true(text.includes(`CMD ${JSON.stringify([...argv, '/conn/conn.json']).replaceAll('","', '", "')}`));
    t.regex(text, /^ARG BASE_IMAGE=polykernel\/(runner|c):latest$/m, 'built on the runner image (or a sibling sharing its layers)');
    t.regex(text, /^USER 1000:1000$/m);
  });
}

test('every kernel image has a kernelspec, aliases and the batch labels', (t) => {
  const kernels = readdirSync(IMAGES).filter((name) => existsSync(`${IMAGES}${name}/Dockerfile`) && labels(dockerfileOf(name))['org.polykernel.kernelspec']);
  t.true(kernels.length >= 14, kernels.join(', '));
  const aliases = new Map<string, string>();
  for (const name of kernels) {
    const label = labels(dockerfileOf(name));
    // Python's kernelspecs keep Jupyter's name, python3 (python3-data beside it).
    t.is(JSON.parse(label['org.polykernel.kernelspec']!).name, { python: 'python3', 'python-data': 'python3-data' }[name] ?? name);
    // Its declared packages (the kernelspec's metadata) are made from the image when it is built.
    t.regex(dockerfileOf(name), /> \/usr\/share\/polykernel\/packages\.json/, `${name} writes its packages.json`);
    for (const key of ['org.polykernel.build', 'org.polykernel.exec', 'org.polykernel.aliases']) t.true(key in label, `${name}: ${key}`);
    for (const alias of label['org.polykernel.aliases']!.split(',').filter(Boolean)) {
      t.false(aliases.has(alias.toLowerCase()), `alias ${alias} of ${name} is also ${aliases.get(alias.toLowerCase())}'s`);
      aliases.set(alias.toLowerCase(), name);
    }
  }
  for (const [alias, name] of [['js', 'javascript'], ['node', 'javascript'], ['c++', 'cpp'], ['golang', 'go'], ['sh', 'bash'], ['ts', 'typescript'], ['rs', 'rust'], ['rb', 'ruby'], ['pl', 'perl'], ['py', 'python']]) {
    t.is(aliases.get(alias), name, alias);
  }
});

test('program commands: {dir}, {file} and {stem} are filled in', (t) => {
  t.deepEqual(expandCommand(['javac', '-d', '{dir}', '{dir}/{file}'], 'Hello.java'), ['javac', '-d', '.pk-cell', '.pk-cell/Hello.java']);
  t.deepEqual(expandCommand(['java', '-cp', '{dir}', '{stem}'], 'Hello.java'), ['java', '-cp', '.pk-cell', 'Hello']);
});

test('a Java cell is named after its public class', (t) => {
  t.is(javaFileName('public class Hello { public static void main(String[] a) {} }'), 'Hello.java');
  t.is(javaFileName('import java.util.*;\n// public class Nope\nfinal public class Main2 {}'), 'Main2.java');
  t.is(javaFileName('class Main { public static void main(String[] a) {} }'), 'Main.java');
});

test('a PHP cell without an opening tag gets one', (t) => {
  const php = findLanguage('php')!;
  t.is(sourceText(php, 'echo 1;'), '<?php echo 1;');
  t.is(sourceText(php, '<?php echo 1;'), '<?php echo 1;');
  t.is(sourceText(findLanguage('ruby')!, 'puts 1'), 'puts 1');
});

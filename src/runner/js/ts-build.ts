/**
 * `node /opt/polykernel/ts-build.mjs main.ts`: the build step of TypeScript programs in batch mode (the
 * image's org.polykernel.build label). Writes main.js next to main.ts; a syntax error prints tsc-style
 * diagnostics and exits 1, like a compiler.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { transpile } from './typescript.js';

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: ts-build <file.ts>\n');
  process.exit(2);
}
const { js, errors } = transpile(readFileSync(file, 'utf8'), path.basename(file));
if (errors.length) {
  process.stderr.write(`${errors.join('\n')}\n`);
  process.exit(1);
}
writeFileSync(file.replace(/\.[cm]?ts$/, '') + '.js', js);

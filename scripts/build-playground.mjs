#!/usr/bin/env node
// Bundles the playground page (src/playground) into dist/playground with esbuild: its script (CodeMirror
// and @jupyterlab/services inside, each editor language a chunk of its own), its stylesheet and the page. The service serves that directory at /
// (src/api/playground/routes.ts); the bundle is a build output, never committed.
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const source = path.join(root, 'src/playground');
const out = path.join(root, 'dist/playground');
// A fresh directory: chunks of an earlier build (other hashes) would be served too.
await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
const result = await build({
  entryPoints: [path.join(source, 'main.ts')],
  outdir: out,
  entryNames: 'playground',
  // Each editor language is a chunk loaded when it is first chosen (src/playground/editor.ts).
  splitting: true,
  chunkNames: 'chunk-[hash]',
  bundle: true,
  minify: true,
  format: 'esm',
  platform: 'browser',
  target: ['chrome110', 'firefox110', 'safari16'],
  legalComments: 'eof',
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
  metafile: true,
});
await copyFile(path.join(source, 'index.html'), path.join(out, 'index.html'));
await copyFile(path.join(source, 'playground.css'), path.join(out, 'playground.css'));
const bytes = Object.values(result.metafile.outputs).reduce((sum, output) => sum + output.bytes, 0);
if (process.env.npm_lifecycle_event !== 'build' || process.env.POLYKERNEL_BUILD_VERBOSE) {
  console.log(`playground bundled into ${path.relative(root, out)} (${Math.round(bytes / 1024)} KB)`);
}

/**
 * TypeScript cells are transpiled, not type-checked (as ts-node --transpile-only, Deno's REPL): a cell is
 * checked for syntax only, which keeps a cell fast and needs no lib.d.ts in the image. The compiler is
 * loaded on first use: in the image from the minified copy next to the bundle (images/runner/dist), in a
 * development checkout from node_modules.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as TS from 'typescript';

let compiler: typeof TS | undefined;

export function loadTypeScript(): typeof TS {
  if (compiler) return compiler;
  const require = createRequire(import.meta.url);
  const bundled = path.join(path.dirname(fileURLToPath(import.meta.url)), 'typescript.cjs');
  compiler = (existsSync(bundled) ? require(bundled) : require('typescript')) as typeof TS;
  return compiler;
}

export interface Transpiled {
  js: string;
  /** Syntax errors as tsc prints them: `cell.ts(2,5): error TS1005: ';' expected.` */
  errors: string[];
}

export function transpile(source: string, fileName = 'cell.ts'): Transpiled {
  const ts = loadTypeScript();
  const output = ts.transpileModule(source, {
    fileName,
    reportDiagnostics: true,
    compilerOptions: {
      target: ts.ScriptTarget.ES2022,
      // require() in a realm that has it; `import` lines of a cell become require calls.
      module: ts.ModuleKind.CommonJS,
      esModuleInterop: true,
    },
  });
  const errors = (output.diagnostics ?? []).map((diagnostic) => {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
    if (diagnostic.file && diagnostic.start !== undefined) {
      const { line, character } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
      return `${fileName}(${line + 1},${character + 1}): error TS${diagnostic.code}: ${message}`;
    }
    return `${fileName}: error TS${diagnostic.code}: ${message}`;
  });
  return { js: output.outputText, errors };
}

export function typescriptVersion(): string {
  return loadTypeScript().version;
}

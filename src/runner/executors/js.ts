/**
 * The `vm` cell model on the runner's side: a persistent Node.js child (js/executor-main.ts) holds the
 * realm; this class sends it cells and reads their outcome from the end-of-cell marker.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Cell, CellOutcome, ExecutorOptions, IsCompleteStatus } from '../executor.js';
import { jsCompleteness } from '../js/transform.js';
import { PersistentExecutor } from './persistent.js';

/** The realm's script: next to the bundle in the image, the compiled module in a checkout. */
export function executorScript(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const bundled = path.join(here, 'js-executor.mjs');
  return existsSync(bundled) ? bundled : path.join(here, '..', 'js', 'executor-main.js');
}

export class JsExecutor extends PersistentExecutor {
  constructor(options: ExecutorOptions, private readonly dialect: 'javascript' | 'typescript') {
    super(options, `${dialect === 'typescript' ? 'TypeScript' : 'JavaScript'} realm`);
  }

  protected command(): string[] {
    return [process.execPath, executorScript(), this.dialect];
  }

  protected encode(cell: Cell): string {
    return `${JSON.stringify({ code: cell.code, allowStdin: cell.allowStdin, count: cell.count })}\n`;
  }

  protected outcomeOf(payload: string): CellOutcome {
    return JSON.parse(payload) as CellOutcome;
  }

  async isComplete(code: string): Promise<IsCompleteStatus> {
    return this.dialect === 'javascript' ? jsCompleteness(code) : 'unknown';
  }
}

/**
 * The in-container kernel for every language without a Jupyter kernel of its own (bundled as
 * /opt/polykernel/runner.mjs, run by Debian's nodejs):
 *
 *   node /opt/polykernel/runner.mjs <language> <connection file>
 *
 * The connection file is the one the service writes (/conn/conn.json, IPC endpoints under /conn). The
 * container's init is PID 1 and forwards SIGINT here: that is how the service interrupts a cell.
 */
import { readFileSync } from 'node:fs';
import { createLogger, type LogLevel } from '../logger.js';
import type { ConnectionInfo } from '../protocol/connection-file.js';
import { findLanguage, LANGUAGES } from './languages.js';
import { RunnerKernel } from './kernel.js';
import { makeExecutor, probeVersion } from './setup.js';
import { KernelSockets } from './sockets.js';

async function main(): Promise<void> {
  const [name, connectionFile] = process.argv.slice(2);
  const language = name ? findLanguage(name) : undefined;
  if (!language || !connectionFile) {
    process.stderr.write(`usage: runner <${LANGUAGES.map((l) => l.name).join('|')}> <connection file>\n`);
    process.exit(2);
  }
  const log = createLogger((process.env.POLYKERNEL_RUNNER_LOG_LEVEL as LogLevel | undefined) ?? 'info');
  const info = JSON.parse(readFileSync(connectionFile, 'utf8')) as ConnectionInfo;
  const version = probeVersion(language).catch(() => '');
  const sockets = await KernelSockets.bind(info, (error) => log.warn('kernel socket error', { error: error.message }));
  const workDir = process.cwd();
  const kernel = new RunnerKernel({
    language,
    executor: (output) => makeExecutor(language, output, workDir),
    sockets,
    log,
    version,
    exit: (code) => process.exit(code),
  });
  process.on('SIGINT', () => kernel.interrupt());
  process.on('SIGTERM', () => process.exit(0));
  kernel.start();
  log.info('runner ready', { language: language.name, pid: process.pid });
}

void main().catch((error: Error) => {
  process.stderr.write(`runner: ${error.stack ?? error.message}\n`);
  process.exit(1);
});

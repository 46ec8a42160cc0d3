import test from 'ava';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { once } from 'node:events';
import { parseStat, processFigures } from '../../src/runtime/proc-stat.js';

test('a stat line is read from after the last ")" of the command name, which may hold spaces and parentheses', (t) => {
  // pid (comm) state ppid ... with utime=7 (field 14), stime=5 (15), rss=321 (24).
  const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
  fields[14 - 3] = '7';
  fields[15 - 3] = '5';
  fields[24 - 3] = '321';
  const line = `1234 (a) b (c d)) ${fields.join(' ')}\n`;
  t.deepEqual(parseStat(line), { ticks: 12, rssPages: 321 });
  t.is(parseStat('garbage'), undefined);
  t.is(parseStat('1 (x) S'), undefined);
});

test('CPU time and memory of live processes are summed; a PID that is gone or not a PID is left out', async (t) => {
  // 400 ms of its own CPU time (not of wall time, which a loaded machine stretches), then idle.
  const busy = spawn(process.execPath, ['-e', 'while(process.cpuUsage().user<400000){};console.log("burnt");setTimeout(()=>{},60000)']);
  try {
    await once(busy.stdout, 'data');
    const done = spawn('true');
    await once(done, 'exit');
    const figures = await processFigures([busy.pid!, done.pid!, -1, 0, 1.5]);
    t.is(figures.read, 1);
    t.true(figures.cpuMs >= 300, `${figures.cpuMs} ms of CPU for a 400 ms loop`);
    t.true(figures.memoryBytes > 10 * 1024 * 1024, `${figures.memoryBytes} bytes resident for node`);
    t.deepEqual(await processFigures([]), { cpuMs: 0, memoryBytes: 0, read: 0 });
  } finally {
    busy.kill('SIGKILL');
  }
});

test('sampling keeps no file open: 500 samples of live and exited processes leave the fd table as it was', async (t) => {
  const exited = spawn('true');
  await once(exited, 'exit');
  await processFigures([process.pid]);
  const before = readdirSync('/proc/self/fd').length;
  for (let i = 0; i < 500; i++) await processFigures([process.pid, process.ppid, exited.pid!]);
  t.is(readdirSync('/proc/self/fd').length, before);
});

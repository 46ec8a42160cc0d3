/**
 * Knowing that a program waits for input: the /proc parsing, and the watch itself against real processes
 * (a process blocked reading its stdin is seen; one that sleeps, or reads another pipe, is not).
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { isStdinRead, parseProcessGroup, parseSyscall, stdinIdentity, waitForStdinRead } from '../../src/runner/stdin-watch.js';

test('the syscall file: running, or a blocked call with its arguments', (t) => {
  t.is(parseSyscall('running\n'), 'running');
  t.deepEqual(parseSyscall('0 0x0 0x7ffd2a 0x1 0x0 0x0 0x0 0x7ffd 0x7f12'), { nr: 0, args: [0n, 0x7ffd2an, 1n, 0n, 0n, 0n, 0x7ffdn, 0x7f12n] });
  t.is(parseSyscall('garbage'), undefined);
  t.true(isStdinRead(parseSyscall('0 0x0 0x1 0x1 0 0 0 0 0'), 'x64'));
  t.true(isStdinRead(parseSyscall('63 0x0 0x1 0x1 0 0 0 0 0'), 'arm64'));
  t.false(isStdinRead(parseSyscall('0 0x3 0x1 0x1 0 0 0 0 0'), 'x64'), 'read on fd 3 is not stdin');
  t.false(isStdinRead(parseSyscall('230 0x0 0x1 0x1 0 0 0 0 0'), 'x64'), 'clock_nanosleep is not a read');
  t.false(isStdinRead('running', 'x64'));
});

test('the process group of a stat line, whatever the command name holds', (t) => {
  t.is(parseProcessGroup('4242 (my (odd) prog) S 1 4240 4240 0 -1 4194560'), 4240);
});

const sh = (script: string) => spawn('bash', ['-c', script], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });

test('a process blocked reading its stdin is seen; a sleeping one is not', async (t) => {
  const reader = sh('read -r line; sleep 5');
  const sleeper = sh('sleep 5');
  try {
    const readerStdin = await stdinIdentity(reader.pid!);
    const sleeperStdin = await stdinIdentity(sleeper.pid!);
    t.truthy(readerStdin);
    t.true(await waitForStdinRead(reader.pid!, readerStdin!, AbortSignal.timeout(3000)));
    t.false(await waitForStdinRead(sleeper.pid!, sleeperStdin!, AbortSignal.timeout(400)));
    reader.stdin!.write('done\n');
    // After the line, the reader sleeps: no longer waiting for input.
    t.false(await waitForStdinRead(reader.pid!, readerStdin!, AbortSignal.timeout(400)));
  } finally {
    process.kill(-reader.pid!, 'SIGKILL');
    process.kill(-sleeper.pid!, 'SIGKILL');
  }
});

test('a read of another pipe inside the group is not a wait for input', async (t) => {
  const child = sh('sleep 5 | read -r x');
  try {
    const identity = await stdinIdentity(child.pid!);
    t.false(await waitForStdinRead(child.pid!, identity!, AbortSignal.timeout(400)));
  } finally {
    process.kill(-child.pid!, 'SIGKILL');
  }
});

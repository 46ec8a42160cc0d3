/**
 * A run's verdict from its measurement: time (CPU or wall, by what was measured as well as by the kill),
 * memory, output and process limits, signals named as Judge0 words them, non-zero exits (NZEC).
 */
import test from 'ava';
import type { RunLimits, RunMeasurement } from '../../src/judge/model.js';
import { averageRuns, endingVerdict, signalMessage, signalNumber } from '../../src/judge/verdict.js';

const limits: RunLimits = {
  cpuTimeMs: 1000,
  extraCpuTimeMs: 500,
  wallTimeMs: 3000,
  memoryKB: 65536,
  stackKB: 8192,
  maxProcesses: 10,
  maxOutputBytes: 1024,
  maxFileSizeKB: 1024,
};
const run = (over: Partial<RunMeasurement> = {}): RunMeasurement => ({
  cpuTimeMs: 10,
  wallTimeMs: 20,
  memoryKB: 1000,
  exitCode: 0,
  signal: null,
  stdout: Buffer.from('out'),
  stderr: Buffer.alloc(0),
  ...over,
});

test('a run that exited 0 within every limit has no ending verdict (its output decides)', (t) => {
  t.is(endingVerdict(run(), limits), undefined);
  t.is(endingVerdict(run({ cpuTimeMs: 1000, wallTimeMs: 3000, memoryKB: 65536 }), limits), undefined, 'at a limit is within it');
});

test('CPU time: killed for it, or over cpuTimeMs without the kill (it was allowed the extra time), is TLE (cpu)', (t) => {
  t.deepEqual(endingVerdict(run({ killedFor: 'cpu-time', signal: 'SIGKILL', exitCode: null, cpuTimeMs: 1500 }), limits), {
    verdict: 'time_limit_exceeded',
    timeLimit: 'cpu',
    message: 'Time limit exceeded',
  });
  const overButFinished = endingVerdict(run({ cpuTimeMs: 1200 }), limits);
  t.is(overButFinished?.verdict, 'time_limit_exceeded');
  t.is(overButFinished?.timeLimit, 'cpu');
});

test('wall time: a sleeping program killed at the wall limit is TLE (wall)', (t) => {
  const verdict = endingVerdict(run({ killedFor: 'wall-time', signal: 'SIGKILL', exitCode: null, wallTimeMs: 3001, cpuTimeMs: 1 }), limits);
  t.is(verdict?.verdict, 'time_limit_exceeded');
  t.is(verdict?.timeLimit, 'wall');
  t.is(verdict?.message, 'Time limit exceeded (wall clock)');
});

test('memory: killed for it is MLE, not the SIGKILL that did it; a peak over the limit too', (t) => {
  t.is(endingVerdict(run({ killedFor: 'memory', signal: 'SIGKILL', exitCode: null }), limits)?.verdict, 'memory_limit_exceeded');
  t.is(endingVerdict(run({ memoryKB: 70000 }), limits)?.verdict, 'memory_limit_exceeded');
});

test('output past the cap is OLE; too many processes is a runtime error that says why', (t) => {
  t.is(endingVerdict(run({ killedFor: 'output', signal: 'SIGKILL', exitCode: null }), limits)?.verdict, 'output_limit_exceeded');
  const processes = endingVerdict(run({ killedFor: 'processes', signal: 'SIGKILL', exitCode: null }), limits);
  t.is(processes?.verdict, 'runtime_error');
  t.regex(processes?.message ?? '', /more than 10 processes/);
});

test('signals are runtime errors named as Judge0 does; a non-zero exit is NZEC with its status', (t) => {
  t.deepEqual(endingVerdict(run({ signal: 'SIGSEGV', exitCode: null }), limits), { verdict: 'runtime_error', message: 'Killed by signal 11 (SIGSEGV)' });
  t.is(endingVerdict(run({ signal: 'SIGFPE', exitCode: null }), limits)?.message, 'Killed by signal 8 (SIGFPE)');
  t.is(endingVerdict(run({ signal: 'SIGABRT', exitCode: null }), limits)?.message, 'Killed by signal 6 (SIGABRT)');
  t.is(endingVerdict(run({ signal: 'SIGXFSZ', exitCode: null }), limits)?.message, 'Killed by signal 25 (SIGXFSZ)');
  t.is(endingVerdict(run({ signal: 'SIGKILL', exitCode: null }), limits)?.message, 'Killed by signal 9 (SIGKILL)');
  t.deepEqual(endingVerdict(run({ exitCode: 1 }), limits), { verdict: 'runtime_error', message: 'Exited with error status 1' });
  t.is(signalNumber('SIGSEGV'), 11);
  t.is(signalMessage('SIGNOPE'), 'Killed by SIGNOPE');
});

test('time comes before memory and signals: a run over both is TLE', (t) => {
  t.is(endingVerdict(run({ cpuTimeMs: 5000, memoryKB: 1e6, signal: 'SIGSEGV', exitCode: null }), limits)?.verdict, 'time_limit_exceeded');
});

test('several runs of a test: time and memory averaged, the ending and output of the last', (t) => {
  const averaged = averageRuns([run({ cpuTimeMs: 10, wallTimeMs: 20, memoryKB: 100 }), run({ cpuTimeMs: 30, wallTimeMs: 40, memoryKB: 300, exitCode: 3, stdout: Buffer.from('last') })]);
  t.is(averaged.cpuTimeMs, 20);
  t.is(averaged.wallTimeMs, 30);
  t.is(averaged.memoryKB, 200);
  t.is(averaged.exitCode, 3);
  t.is(averaged.stdout.toString(), 'last');
});

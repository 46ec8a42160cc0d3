/**
 * Measured runs as Piston's stages: the status and message isolate would have written (RE, SG, TO, OL,
 * EL, XX), SIGKILL for a kill at a limit, units (ms, bytes), output kept up to a kill, and the compile
 * stage standing in for `run` after a failed compile, as Piston's /execute answers.
 */
import test from 'ava';
import type { CompileResult, RunMeasurement, TestResult } from '../../src/judge/model.js';
import { endingOf, isSignalName, resultOf, signalNumber, stageOf } from '../../src/api/piston/response.js';

const measured = (extra: Partial<RunMeasurement> = {}): RunMeasurement => ({
  cpuTimeMs: 12,
  wallTimeMs: 34,
  memoryKB: 1000,
  exitCode: 0,
  signal: null,
  stdout: Buffer.from(''),
  stderr: Buffer.from(''),
  ...extra,
});
const test_ = (extra: Partial<TestResult> = {}): TestResult => ({ verdict: 'accepted', ...measured(), ...extra });

test('a clean exit: no status, no message; figures in ms and bytes; output is stdout then stderr', (t) => {
  t.deepEqual(stageOf(test_({ stdout: Buffer.from('3\n'), stderr: Buffer.from('warn\n') })), {
    stdout: '3\n',
    stderr: 'warn\n',
    output: '3\nwarn\n',
    code: 0,
    signal: null,
    message: null,
    status: null,
    cpu_time: 12,
    wall_time: 34,
    memory: 1024000,
  });
});

test('endings as isolate words them', (t) => {
  t.deepEqual(endingOf(measured({ exitCode: 3 })), { status: 'RE', message: 'Exited with error status 3', signal: null });
  t.deepEqual(endingOf(measured({ exitCode: null, signal: 'SIGSEGV' })), { status: 'SG', message: 'Caught fatal signal 11', signal: 'SIGSEGV' });
  t.deepEqual(endingOf(measured({ exitCode: null, signal: 'SIGFPE' })), { status: 'SG', message: 'Caught fatal signal 8', signal: 'SIGFPE' });
  t.deepEqual(endingOf(measured({ exitCode: null, signal: 'SIGKILL', killedFor: 'cpu-time' })), { status: 'TO', message: 'Time limit exceeded', signal: 'SIGKILL' });
  t.deepEqual(endingOf(measured({ exitCode: null, signal: 'SIGKILL', killedFor: 'wall-time' })), { status: 'TO', message: 'Time limit exceeded (wall clock)', signal: 'SIGKILL' });
  t.deepEqual(endingOf(measured({ exitCode: null, signal: 'SIGKILL', killedFor: 'memory' })), { status: 'SG', message: 'Memory limit exceeded (caught fatal signal 9)', signal: 'SIGKILL' });
  // A runtime that exits on its own out-of-memory error (the JVM) keeps its exit status.
  t.deepEqual(endingOf(measured({ exitCode: 1, killedFor: 'memory' })), { status: 'RE', message: 'Memory limit exceeded (exited with error status 1)', signal: null });
  t.deepEqual(endingOf(measured({ exitCode: null, signal: 'SIGKILL', killedFor: 'processes' })).message, 'Process limit exceeded (caught fatal signal 9)');
});

test('the output cap is said: OL for stdout, EL when stderr took it; the output before the kill is kept', (t) => {
  const flood = stageOf(test_({ exitCode: null, signal: 'SIGKILL', killedFor: 'output', stdout: Buffer.from('y\n'.repeat(1000)) }));
  t.is(flood.status, 'OL');
  t.is(flood.message, 'stdout length exceeded');
  t.is(flood.signal, 'SIGKILL');
  t.is(flood.stdout.length, 2000);
  const errFlood = stageOf(test_({ exitCode: null, signal: 'SIGKILL', killedFor: 'output', stderr: Buffer.from('e'.repeat(100)) }));
  t.is(errFlood.status, 'EL');
  t.is(errFlood.message, 'stderr length exceeded');
});

test('a timeout keeps what was printed before it', (t) => {
  const stage = stageOf(test_({ exitCode: null, signal: 'SIGKILL', killedFor: 'wall-time', stdout: Buffer.from('before\n') }));
  t.is(stage.stdout, 'before\n');
  t.is(stage.output, 'before\n');
  t.is(stage.status, 'TO');
  t.is(stage.code, null);
});

test('an internal error is XX', (t) => {
  const stage = stageOf(test_({ verdict: 'internal_error', message: 'sandbox lost', exitCode: null }));
  t.is(stage.status, 'XX');
  t.is(stage.message, 'sandbox lost');
});

test('signal names and numbers are Linux\'s', (t) => {
  t.is(signalNumber('SIGKILL'), 9);
  t.is(signalNumber('SIGXFSZ'), 25);
  t.true(isSignalName('SIGINT'));
  t.true(isSignalName('SIGTERM'));
  t.false(isSignalName('KILL'));
  t.false(isSignalName('SIGNOPE'));
  t.false(isSignalName(9));
  t.false(isSignalName('__proto__'));
});

test('after a failed compile the compile stage is also the run stage (Piston\'s backward compatibility); an interpreted run has no compile', (t) => {
  const compile: CompileResult = { ok: false, ...measured({ exitCode: 1, stderr: Buffer.from('main.c:1: error') }) };
  const failed = resultOf({ language: 'c', version: '12.2.0' }, { compile, tests: [] });
  t.is(failed.compile?.code, 1);
  t.is(failed.compile?.status, 'RE');
  t.deepEqual(failed.run, failed.compile);
  t.deepEqual(Object.keys(failed), ['compile', 'run', 'language', 'version']);
  const interpreted = resultOf({ language: 'python', version: '3.11.2' }, { tests: [test_({ stdout: Buffer.from('1\n') })] });
  t.false('compile' in interpreted);
  t.is(interpreted.run.stdout, '1\n');
});

/**
 * The kernel state machine: every (current, next) pair against a table written out here, so a change to
 * the rules in kernel-record.ts has to be made on purpose in both places.
 */
import test from 'ava';
import { transition, type KernelState } from '../../src/kernels/kernel-record.js';

const STATES: readonly KernelState[] = ['starting', 'idle', 'busy', 'restarting', 'dead'];

/** Row: current state; column: the state a status message (or the service) asks for; cell: the result. */
const EXPECTED: Record<KernelState, Record<KernelState, KernelState>> = {
  starting: { starting: 'starting', idle: 'idle', busy: 'busy', restarting: 'restarting', dead: 'dead' },
  idle: { starting: 'idle', idle: 'idle', busy: 'busy', restarting: 'restarting', dead: 'dead' },
  busy: { starting: 'busy', idle: 'idle', busy: 'busy', restarting: 'restarting', dead: 'dead' },
  restarting: { starting: 'starting', idle: 'idle', busy: 'busy', restarting: 'restarting', dead: 'dead' },
  dead: { starting: 'dead', idle: 'dead', busy: 'dead', restarting: 'dead', dead: 'dead' },
};

test('every (current, next) pair gives the state of the table', (t) => {
  for (const current of STATES) {
    for (const next of STATES) t.is(transition(current, next), EXPECTED[current][next], `${current} -> ${next}`);
  }
});

test('dead is terminal: a late status from a dead kernel does not revive it', (t) => {
  for (const next of STATES) t.is(transition('dead', next), 'dead', next);
});

test('a running kernel alternates between idle and busy, and any state can die', (t) => {
  t.is(transition('idle', 'busy'), 'busy');
  t.is(transition('busy', 'idle'), 'idle');
  for (const current of STATES) t.is(transition(current, 'dead'), 'dead', current);
});

test('"starting" is reached only from restarting (or kept); a started kernel does not go back to it', (t) => {
  t.is(transition('restarting', 'starting'), 'starting');
  t.is(transition('idle', 'starting'), 'idle');
  t.is(transition('busy', 'starting'), 'busy');
});

test('a status sequence of a real execution ends where the kernel is', (t) => {
  const sequence: KernelState[] = ['busy', 'idle', 'busy', 'idle', 'restarting', 'starting', 'idle', 'dead', 'idle', 'busy'];
  const states = sequence.reduce<KernelState[]>((seen, next) => [...seen, transition(seen.at(-1)!, next)], ['starting']);
  t.deepEqual(states, ['starting', 'busy', 'idle', 'busy', 'idle', 'restarting', 'starting', 'idle', 'dead', 'dead', 'dead']);
});

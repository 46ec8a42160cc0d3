/**
 * Output comparison: Judge0's default rule (its `strip`: each line right-trimmed as Ruby's rstrip does,
 * trailing blank lines dropped, nothing else), exact and token-wise comparison, on bytes that need not be
 * text, and in linear time on megabytes.
 */
import test from 'ava';
import { outputsMatch, sameLines, sameTokens } from '../../src/judge/compare.js';

const b = (text: string) => Buffer.from(text, 'latin1');

/** Judge0's strip, written out the way its Ruby reads, as the reference for random cases. */
function judge0Strip(text: string): string {
  const rstrip = (line: string) => line.replace(/[\0\t\n\v\f\r ]+$/, '');
  const lines = text.split('\n');
  // Ruby's split drops trailing empty fields.
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  return rstrip(lines.map(rstrip).join('\n'));
}

test('lines: trailing spaces, tabs, CR and NUL of each line and trailing blank lines are ignored', (t) => {
  t.true(sameLines(b('3\n'), b('3')));
  t.true(sameLines(b('1 2 \t\n3\r\n\n\n  \n'), b('1 2\n3')));
  t.true(sameLines(b('a\r\nb\r\n'), b('a\nb\n')));
  t.true(sameLines(b('a\0\n'), b('a')));
  t.true(sameLines(b(''), b('\n\n  \n')));
  t.true(sameLines(b(''), b('')));
});

test('lines: leading white space, blank lines before or between lines and inner spaces count', (t) => {
  t.false(sameLines(b(' 3'), b('3')));
  t.false(sameLines(b('\n3'), b('3')));
  t.false(sameLines(b('1\n\n2'), b('1\n2')));
  t.false(sameLines(b('1  2'), b('1 2')));
  t.false(sameLines(b('1\n2'), b('1')));
  t.false(sameLines(b('1'), b('1\n2')));
  t.false(sameLines(b('x'), b('')));
  t.false(sameLines(b('abc'), b('abd')));
});

test('lines agrees with Judge0\'s strip on random outputs made of the characters that matter', (t) => {
  const alphabet = ['a', 'b', ' ', '\t', '\n', '\r', '\0', '\v'];
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const make = () => Array.from({ length: Math.floor(random() * 12) }, () => alphabet[Math.floor(random() * alphabet.length)]).join('');
  let equalCases = 0;
  for (let i = 0; i < 20000; i++) {
    const x = make();
    // Half the pairs are made equal under the rule by appending white space, so both answers are exercised.
    const y = i % 2 ? make() : x + [' ', '\n', '\r\n', '\t\n\n'][i % 4];
    const expected = judge0Strip(x) === judge0Strip(y);
    if (expected) equalCases += 1;
    if (sameLines(b(x), b(y)) !== expected) {
      t.fail(`${JSON.stringify(x)} vs ${JSON.stringify(y)}: Judge0 says ${expected}`);
      return;
    }
  }
  t.true(equalCases > 5000);
});

test('exact: byte for byte, a trailing newline counts', (t) => {
  t.true(outputsMatch('exact', b('3\n'), b('3\n')));
  t.false(outputsMatch('exact', b('3\n'), b('3')));
  t.false(outputsMatch('exact', b('3 '), b('3')));
});

test('tokens: any white space between tokens, none of it counts; the tokens must be equal', (t) => {
  t.true(sameTokens(b('1 2\n3'), b('  1\n\n2\t3 \r\n')));
  t.true(sameTokens(b(''), b(' \n\t')));
  t.false(sameTokens(b('1 2'), b('12')));
  t.false(sameTokens(b('1 2'), b('1 2 3')));
  t.false(sameTokens(b('1 2 3'), b('1 2')));
  t.false(sameTokens(b('abc'), b('abd')));
  t.is(outputsMatch('tokens', b('a  b'), b('a b')), true);
});

test('every mode is binary-safe: bytes that are not UTF-8 compare as bytes', (t) => {
  const invalid = Buffer.from([0xff, 0xfe, 0x41, 0x0a]);
  const same = Buffer.from([0xff, 0xfe, 0x41]);
  const other = Buffer.from([0xff, 0xfd, 0x41]);
  t.true(sameLines(invalid, same));
  t.false(sameLines(invalid, other));
  t.true(sameTokens(invalid, same));
  t.false(sameTokens(invalid, other));
  // Two different invalid sequences decode to the same replacement characters as text: as bytes they differ.
  t.false(outputsMatch('exact', Buffer.from([0xff]), Buffer.from([0xfe])));
});

test('megabytes compare in linear time: 8 MB of short lines, one long line, white space only', (t) => {
  const lines = Buffer.from('12345 67890\n'.repeat(700_000));
  const linesWithSpaces = Buffer.from('12345 67890   \r\n'.repeat(700_000));
  const long = Buffer.alloc(8 * 1024 * 1024, 0x61);
  const spaces = Buffer.alloc(8 * 1024 * 1024, 0x20);
  const started = process.hrtime.bigint();
  t.true(sameLines(lines, linesWithSpaces));
  t.true(sameTokens(lines, linesWithSpaces));
  t.true(sameLines(long, Buffer.concat([long, spaces])));
  t.true(sameTokens(spaces, Buffer.alloc(0)));
  t.true(sameLines(spaces, Buffer.from('\n')));
  // A difference at the very end is found after the whole walk.
  const changed = Buffer.from(lines);
  changed[changed.length - 2] = 0x31;
  t.false(sameLines(lines, changed));
  t.false(sameTokens(lines, changed));
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  // Quadratic work on these sizes would take hours; linear takes well under a second even on a busy machine.
  t.true(ms < 10_000, `${ms} ms`);
  t.log(`comparisons of ~8 MB inputs: ${ms.toFixed(0)} ms`);
});

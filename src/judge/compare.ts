/**
 * Output comparison: pure functions over bytes. A program's output is whatever bytes it wrote (not
 * necessarily UTF-8), and both sides may be megabytes, so every mode walks the two buffers once, side by
 * side, and compares slices natively: linear time, no copies, no decoding.
 */
import type { Comparison } from './model.js';

const NEWLINE = 0x0a;

/**
 * What Ruby's String#rstrip removes, which Judge0 applies to each line and to the whole text (see
 * `strip` in judge0's app/jobs/isolate_job.rb: split("\n"), rstrip each line, join, rstrip): NUL, tab,
 * line feed, vertical tab, form feed, carriage return, space. A CRLF line therefore equals an LF one.
 */
function isTrailingSpace(byte: number): boolean {
  return byte === 0x20 || (byte >= 0x09 && byte <= 0x0d) || byte === 0x00;
}

/** What separates tokens: ASCII white space (as scanf's %s and testlib's readToken see it). */
function isTokenSpace(byte: number): boolean {
  return byte === 0x20 || (byte >= 0x09 && byte <= 0x0d);
}

/** The end of `buffer[start, end)` with trailing white space removed. */
function trimEnd(buffer: Buffer, start: number, end: number): number {
  while (end > start && isTrailingSpace(buffer[end - 1])) end -= 1;
  return end;
}

function sameSlice(a: Buffer, aStart: number, aEnd: number, b: Buffer, bStart: number, bEnd: number): boolean {
  if (aEnd - aStart !== bEnd - bStart) return false;
  return a.compare(b, bStart, bEnd, aStart, aEnd) === 0;
}

/**
 * Judge0's default: equal once trailing white space of every line and trailing blank lines are dropped.
 * Leading white space and blank lines before or between lines still count, as in Judge0. (Judge0 falls
 * back to an exact comparison when the text is not valid UTF-8, because Ruby's split raises on it; this
 * works on bytes and applies the same rule to any output.)
 */
export function sameLines(actual: Buffer, expected: Buffer): boolean {
  // Trailing blank lines are trailing white space of the whole text: drop them first, so that what is
  // left ends in a line with something on it and both sides must have the same number of lines.
  const aEnd = trimEnd(actual, 0, actual.length);
  const bEnd = trimEnd(expected, 0, expected.length);
  let a = 0;
  let b = 0;
  for (;;) {
    const aNewline = aEnd > a ? actual.indexOf(NEWLINE, a) : -1;
    const bNewline = bEnd > b ? expected.indexOf(NEWLINE, b) : -1;
    const aLineEnd = aNewline < 0 || aNewline >= aEnd ? aEnd : aNewline;
    const bLineEnd = bNewline < 0 || bNewline >= bEnd ? bEnd : bNewline;
    if (!sameSlice(actual, a, trimEnd(actual, a, aLineEnd), expected, b, trimEnd(expected, b, bLineEnd))) return false;
    const aLast = aLineEnd === aEnd;
    const bLast = bLineEnd === bEnd;
    if (aLast || bLast) return aLast && bLast;
    a = aLineEnd + 1;
    b = bLineEnd + 1;
  }
}

/** Equal sequences of white-space-separated tokens: any amount and kind of white space between them. */
export function sameTokens(actual: Buffer, expected: Buffer): boolean {
  let a = 0;
  let b = 0;
  for (;;) {
    while (a < actual.length && isTokenSpace(actual[a])) a += 1;
    while (b < expected.length && isTokenSpace(expected[b])) b += 1;
    if (a === actual.length || b === expected.length) return a === actual.length && b === expected.length;
    let aEnd = a;
    while (aEnd < actual.length && !isTokenSpace(actual[aEnd])) aEnd += 1;
    let bEnd = b;
    while (bEnd < expected.length && !isTokenSpace(expected[bEnd])) bEnd += 1;
    if (!sameSlice(actual, a, aEnd, expected, b, bEnd)) return false;
    a = aEnd;
    b = bEnd;
  }
}

export function outputsMatch(comparison: Comparison, actual: Buffer, expected: Buffer): boolean {
  switch (comparison) {
    case 'exact':
      return actual.equals(expected);
    case 'tokens':
      return sameTokens(actual, expected);
    case 'lines':
      return sameLines(actual, expected);
  }
}

/**
 * End-of-cell markers in a persistent child's output: found whatever the chunking, never confused with
 * output, and output is never held back for longer than a possible marker needs.
 */
import test from 'ava';
import { marker, markerPrefix, SentinelScanner, type ScanEvent } from '../../src/runner/sentinel.js';

const TOKEN = 'abc123';

function scanInChunks(input: Buffer, size: number): { output: string; markers: string[] } {
  const scanner = new SentinelScanner(markerPrefix(TOKEN));
  const events: ScanEvent[] = [];
  for (let at = 0; at < input.length; at += size) events.push(...scanner.push(input.subarray(at, at + size)));
  const output = Buffer.concat([...events.flatMap((e) => (e.kind === 'data' ? [e.data] : [])), scanner.flush()]).toString('utf8');
  return { output, markers: events.flatMap((e) => (e.kind === 'marker' ? [e.payload] : [])) };
}

test('markers are taken out of the stream and their payloads returned, at every chunk size', (t) => {
  const input = Buffer.from(`one\ntwo ${marker(TOKEN, '0')}three${marker(TOKEN, '{"status":"ok"}')}tail\u00e9`);
  for (const size of [1, 2, 3, 7, 16, input.length]) {
    const { output, markers } = scanInChunks(input, size);
    t.is(output, 'one\ntwo threetail\u00e9', `chunk size ${size}`);
    t.deepEqual(markers, ['0', '{"status":"ok"}'], `chunk size ${size}`);
  }
});

test('a NUL byte or another token in the output is output, not a marker', (t) => {
  const input = Buffer.from(`a\0b ${marker('other', '1')} \0PK`);
  const { output, markers } = scanInChunks(input, 4);
  t.is(output, input.toString('utf8'));
  t.deepEqual(markers, []);
});

test('output that cannot start a marker is passed on at once', (t) => {
  const scanner = new SentinelScanner(markerPrefix(TOKEN));
  const events = scanner.push(Buffer.from('hello'));
  t.deepEqual(events.map((e) => (e.kind === 'data' ? e.data.toString() : e.payload)), ['hello']);
  // Only the bytes that could begin a marker wait for the next chunk.
  const held = scanner.push(Buffer.from('x\0PKab'));
  t.deepEqual(held.map((e) => (e.kind === 'data' ? e.data.toString() : '')), ['x']);
  t.is(scanner.flush().toString(), '\0PKab');
});

/**
 * The output of a `docker exec` without a TTY, split into stdout and stderr with backpressure. The engine
 * multiplexes both on one connection in frames: an 8-byte header (stream type, 3 zero bytes, payload length
 * as a big-endian uint32) and the payload (https://docs.docker.com/reference/api/engine/version/v1.43/#tag/Container/operation/ContainerAttach).
 * docker-modem's demuxStream reads with 'data' events and ignores its sinks' backpressure; this one reads
 * the connection only as fast as `deliver` takes the chunks, so a slow consumer (a download to a slow
 * client) holds the command's output back in the pipes instead of in the service's memory.
 */
import type { Readable } from 'node:stream';

const HEADER_BYTES = 8;
const STREAMS: Record<number, 'stdout' | 'stderr'> = { 1: 'stdout', 2: 'stderr' };

/** Resolves at the end of the connection; rejects when it fails. */
export async function demuxExecOutput(
  connection: Readable,
  deliver: (stream: 'stdout' | 'stderr', chunk: Buffer) => void | Promise<void>,
): Promise<void> {
  let header = Buffer.alloc(0);
  let stream: 'stdout' | 'stderr' | undefined;
  let left = 0;
  for await (const chunk of connection as AsyncIterable<Buffer>) {
    let offset = 0;
    while (offset < chunk.length) {
      if (left === 0 && header.length < HEADER_BYTES) {
        const take = Math.min(HEADER_BYTES - header.length, chunk.length - offset);
        header = Buffer.concat([header, chunk.subarray(offset, offset + take)]);
        offset += take;
        if (header.length < HEADER_BYTES) break;
        stream = STREAMS[header[0]!];
        left = header.readUInt32BE(4);
        header = Buffer.alloc(0);
        continue;
      }
      const take = Math.min(left, chunk.length - offset);
      const payload = chunk.subarray(offset, offset + take);
      offset += take;
      left -= take;
      // Frames of stdin (type 0) or of an unknown type carry nothing of the command's output.
      if (stream) {
        const pending = deliver(stream, payload);
        if (pending) await pending;
      }
    }
  }
}

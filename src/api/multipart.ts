/**
 * A streaming reader of multipart/form-data request bodies (RFC 7578 on RFC 2046's multipart syntax),
 * for uploads: parts come one after the other, each part's body as chunks while the request arrives, so
 * memory stays within a chunk and a delimiter whatever the size of the upload. A part's headers are
 * bounded (MAX_PART_HEADER_BYTES); what the part's body may hold is the caller's to bound.
 */
import { invalidInput, unsupportedMediaType } from '../errors.js';

export const MAX_PART_HEADER_BYTES = 8192;

export interface PartHeaders {
  /** The form field's name (Content-Disposition's `name`). */
  field: string | undefined;
  /** The file name the client gave (Content-Disposition's `filename*` or `filename`), unaltered. */
  filename: string | undefined;
  contentType: string | undefined;
}

/** The boundary of a multipart/form-data Content-Type, or a 415 that says what is expected. */
export function multipartBoundary(contentType: string | undefined): string {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'multipart/form-data') {
    throw unsupportedMediaType(`an upload is a multipart/form-data body (curl -F 'file=@local.txt;filename=dir/name.txt'), not ${JSON.stringify((contentType ?? 'none').slice(0, 100))}`);
  }
  const params = parseParams((contentType ?? '').slice((contentType ?? '').indexOf(';') + 1));
  const boundary = params.get('boundary');
  // RFC 2046: 1 to 70 characters.
  if (!boundary || boundary.length > 70) throw invalidInput('the multipart/form-data Content-Type has no boundary (or one longer than 70 characters)');
  return boundary;
}

/** `; a=b; c="d \" e"` parameters, names lower-cased. */
function parseParams(text: string): Map<string, string> {
  const params = new Map<string, string>();
  const re = /;?\s*([^\s=;]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))/gy;
  let match: RegExpExecArray | null;
  let rest = text.trim();
  if (!rest.startsWith(';')) rest = `;${rest}`;
  while ((match = re.exec(rest)) !== null) {
    const value = match[2] !== undefined ? match[2].replace(/\\(.)/g, '$1') : (match[3] ?? '').trim();
    params.set(match[1]!.toLowerCase(), value);
  }
  return params;
}

function partHeaders(block: string): PartHeaders {
  const headers = new Map<string, string>();
  for (const line of block.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw invalidInput('a multipart part has a malformed header line');
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  const disposition = headers.get('content-disposition');
  if (!disposition || !/^form-data\s*(;|$)/i.test(disposition)) throw invalidInput('every multipart part needs Content-Disposition: form-data');
  const params = parseParams(disposition.slice(disposition.indexOf(';') + 1 || disposition.length));
  let filename = params.get('filename');
  const extended = params.get('filename*');
  if (extended !== undefined) {
    // RFC 5987: charset'language'percent-encoded.
    const match = /^utf-8'[^']*'(.*)$/i.exec(extended);
    if (!match) throw invalidInput("a part's filename* must be UTF-8''<percent-encoded name>");
    try {
      filename = decodeURIComponent(match[1]!);
    } catch {
      throw invalidInput("a part's filename* is not valid percent-encoded UTF-8");
    }
  }
  return { field: params.get('name'), filename, contentType: headers.get('content-type') };
}

/**
 * Reads a multipart body part by part. `next()` gives the next part's headers (undefined after the last);
 * `body()` then yields that part's data, and must be read to its end before `next()` is called again.
 */
export class MultipartReader {
  private readonly source: AsyncIterator<Buffer>;
  private buffer: Buffer = Buffer.alloc(0);
  private ended = false;
  private state: 'preamble' | 'headers' | 'body' | 'done' = 'preamble';
  /** CRLF + "--" + boundary: what ends a part's data. */
  private readonly delimiter: Buffer;

  constructor(body: AsyncIterable<Buffer>, boundary: string) {
    this.source = body[Symbol.asyncIterator]();
    this.delimiter = Buffer.from(`\r\n--${boundary}`);
  }

  private async fill(): Promise<boolean> {
    if (this.ended) return false;
    const { value, done } = await this.source.next();
    if (done) {
      this.ended = true;
      return false;
    }
    this.buffer = this.buffer.length === 0 ? value : Buffer.concat([this.buffer, value]);
    return true;
  }

  private truncated(): never {
    throw invalidInput('the multipart body ends before its closing boundary');
  }

  async next(): Promise<PartHeaders | undefined> {
    if (this.state === 'done') return undefined;
    if (this.state === 'body') throw new Error('MultipartReader.next() called before the part body was read');
    if (this.state === 'preamble') {
      // The first delimiter may open the body without the CRLF before it.
      const first = this.delimiter.subarray(2);
      for (;;) {
        if (this.buffer.length >= first.length && this.buffer.subarray(0, first.length).equals(first)) {
          this.buffer = this.buffer.subarray(first.length);
          break;
        }
        const at = this.buffer.indexOf(this.delimiter);
        if (at >= 0) {
          this.buffer = this.buffer.subarray(at + this.delimiter.length);
          break;
        }
        if (this.buffer.length > MAX_PART_HEADER_BYTES) throw invalidInput('the multipart body does not start with its boundary');
        if (!(await this.fill())) this.truncated();
      }
      this.state = 'headers';
    }
    // After a delimiter: "--" ends the body, else optional whitespace and CRLF open a part.
    while (this.buffer.length < 2) if (!(await this.fill())) this.truncated();
    if (this.buffer[0] === 0x2d && this.buffer[1] === 0x2d) {
      this.state = 'done';
      return undefined;
    }
    for (;;) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end >= 0) {
        const lineEnd = this.buffer.indexOf('\r\n');
        if (this.buffer.subarray(0, lineEnd).toString('latin1').trim() !== '') throw invalidInput('a multipart boundary line has trailing characters');
        const block = this.buffer.subarray(lineEnd + 2, end).toString('utf8');
        this.buffer = this.buffer.subarray(end + 4);
        this.state = 'body';
        return partHeaders(block);
      }
      if (this.buffer.length > MAX_PART_HEADER_BYTES) throw invalidInput(`a multipart part's headers are longer than ${MAX_PART_HEADER_BYTES} bytes`);
      if (!(await this.fill())) this.truncated();
    }
  }

  /** The current part's data, in chunks as they arrive. */
  async *body(): AsyncGenerator<Buffer> {
    if (this.state !== 'body') throw new Error('MultipartReader.body() called without a current part');
    const keep = this.delimiter.length - 1;
    for (;;) {
      const at = this.buffer.indexOf(this.delimiter);
      if (at >= 0) {
        if (at > 0) yield this.buffer.subarray(0, at);
        this.buffer = this.buffer.subarray(at + this.delimiter.length);
        this.state = 'headers';
        return;
      }
      // Everything but a tail that could be the start of the delimiter is the part's data.
      if (this.buffer.length > keep) {
        const data = this.buffer.subarray(0, this.buffer.length - keep);
        this.buffer = Buffer.from(this.buffer.subarray(this.buffer.length - keep));
        yield data;
      }
      if (!(await this.fill())) this.truncated();
    }
  }
}

/**
 * The ZMQ wire format against the real jupyter_client (Debian's python3-jupyter-client, run through
 * test/fixtures/jupyter_client_golden.py): its frames deserialize to the same message here, our frames pass
 * its `Session.deserialize`, and tampering, a wrong key and an empty key behave as they do there.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { newMessage, type JupyterMessage } from '../../src/protocol/messages.js';
import { DELIMITER, deserialize, MessageSigner, serialize, WireFormatError } from '../../src/protocol/wire.js';

const PYTHON = '/usr/bin/python3';
const SCRIPT = fileURLToPath(new URL('../../../test/fixtures/jupyter_client_golden.py', import.meta.url));

interface GoldenCase {
  name: string;
  key: string;
  frames: string[];
  identities: string[];
  header: Record<string, unknown>;
  parent_header: Record<string, unknown>;
  metadata: Record<string, unknown>;
  content: Record<string, unknown>;
  buffers: string[];
}

type Verdict =
  | { ok: true; identities: string[]; signature: string; header: Record<string, unknown>; parent_header: Record<string, unknown>; metadata: Record<string, unknown>; content: Record<string, unknown>; buffers: string[] }
  | { ok: false; error: string };

/** Runs the fixture script; a missing jupyter_client is a test failure that says how to fix it. */
function python<T>(mode: 'generate' | 'verify', input?: unknown): T {
  let stdout: string;
  try {
    stdout = execFileSync(PYTHON, [SCRIPT, mode], {
      input: input === undefined ? '' : JSON.stringify(input),
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: 30_000,
    });
  } catch (error) {
    const detail = (error as { stderr?: string }).stderr?.trim() || (error as Error).message;
    throw new Error(
      `the wire golden tests need Debian's python3-jupyter-client under ${PYTHON} ` +
        `(apt-get install python3-jupyter-client, or run scripts/host-setup.sh): ${detail}`,
    );
  }
  return JSON.parse(stdout) as T;
}

const b64 = (data: Buffer | string) => Buffer.from(data).toString('base64');
const unb64 = (text: string) => Buffer.from(text, 'base64');

/** What jupyter_client makes of our frames, one verdict per message. */
function jupyterDeserialize(key: string, messages: Buffer[][]): Verdict[] {
  return python<{ results: Verdict[] }>('verify', { key, messages: messages.map((frames) => frames.map(b64)) }).results;
}

let golden: GoldenCase[] = [];
const KEY = 'golden-key-\u00e9';

test.before(() => {
  golden = python<{ cases: GoldenCase[] }>('generate').cases;
});

function goldenCase(name: string): GoldenCase {
  const found = golden.find((c) => c.name === name);
  if (!found) throw new Error(`the fixture produced no case "${name}"`);
  return found;
}

const framesOf = (c: GoldenCase) => c.frames.map(unb64);

function assertWireError(t: import('ava').ExecutionContext, fn: () => unknown, message: RegExp): void {
  const error = t.throws(fn, { instanceOf: WireFormatError });
  t.regex(error?.message ?? '', message);
}

test('the fixture produced every golden case from jupyter_client', (t) => {
  t.deepEqual(golden.map((c) => c.name), ['plain', 'identities', 'parent', 'buffers', 'unicode', 'unsigned']);
});

test('deserialize reads every jupyter_client frame set into the same header, parent, metadata, content, buffers and identities', (t) => {
  for (const c of golden) {
    const msg = deserialize(framesOf(c), new MessageSigner(c.key));
    t.deepEqual(msg.header, c.header, c.name);
    t.deepEqual(msg.parent_header, c.parent_header, c.name);
    t.deepEqual(msg.metadata, c.metadata, c.name);
    t.deepEqual(msg.content, c.content, c.name);
    t.deepEqual(msg.buffers.map(b64), c.buffers, c.name);
    t.deepEqual((msg.identities ?? []).map(b64), c.identities, c.name);
  }
});

test('routing identities before the delimiter come back byte-exact, including binary ones', (t) => {
  const msg = deserialize(framesOf(goldenCase('identities')), new MessageSigner(KEY));
  t.deepEqual(msg.identities, [Buffer.from('router-id-1'), Buffer.from([0x00, 0x01, ...Buffer.from('binary-id')])]);
  t.is(msg.header.msg_type, 'execute_request');
});

test('a parent header is read as the parent message header', (t) => {
  const msg = deserialize(framesOf(goldenCase('parent')), new MessageSigner(KEY));
  t.is(msg.parent_header.msg_id, 'golden-request');
  t.is(msg.parent_header.msg_type, 'execute_request');
  t.deepEqual(msg.metadata, { tag: [1, 2.5, null, true] });
});

test('binary buffers after the content frame are kept as buffers, empty ones included', (t) => {
  const msg = deserialize(framesOf(goldenCase('buffers')), new MessageSigner(KEY));
  t.deepEqual(msg.buffers, [Buffer.from([0, 1, 2, 0xff, 0xfe]), Buffer.alloc(0), Buffer.from('plain bytes')]);
});

test('unicode content (raw UTF-8 as jupyter_client packs it) decodes to the same text', (t) => {
  const msg = deserialize(framesOf(goldenCase('unicode')), new MessageSigner(KEY));
  t.is(msg.content.text, 'h\u00e9llo w\u00f6rld \u2713 \u{1F40D} \u4e2d\u6587');
});

test('sign computes the same HMAC-SHA256 hex digest as jupyter_client over its frames', (t) => {
  for (const c of golden.filter((g) => g.key !== '')) {
    const frames = framesOf(c);
    const at = frames.findIndex((f) => f.equals(DELIMITER));
    t.is(new MessageSigner(c.key).sign(frames.slice(at + 2, at + 6)), frames[at + 1]!.toString('ascii'), c.name);
  }
});

test('serialize of each golden message produces frames that jupyter_client Session.deserialize accepts unchanged', (t) => {
  for (const key of [KEY, '']) {
    const cases = golden.filter((c) => c.key === key);
    const ours = cases.map((c) => serialize(deserialize(framesOf(c), new MessageSigner(key)), new MessageSigner(key)));
    const verdicts = jupyterDeserialize(key, ours);
    t.is(verdicts.length, cases.length);
    verdicts.forEach((verdict, i) => {
      const c = cases[i]!;
      if (!verdict.ok) return t.fail(`${c.name}: jupyter_client rejected our frames: ${verdict.error}`);
      t.deepEqual(verdict.header, c.header, c.name);
      t.deepEqual(verdict.parent_header, c.parent_header, c.name);
      t.deepEqual(verdict.metadata, c.metadata, c.name);
      t.deepEqual(verdict.content, c.content, c.name);
      t.deepEqual(verdict.buffers, c.buffers, c.name);
      t.deepEqual(verdict.identities, c.identities, c.name);
    });
  }
});

test('a message built here (parent, identities, buffers, unicode) passes jupyter_client with its fields intact', (t) => {
  const parent = newMessage('execute_request', { code: 'input()' }, { session: 's-parent' });
  const msg: JupyterMessage = {
    ...newMessage('stream', { name: 'stdout', text: '\u00fcnic\u00f6de \u{1F600}' }, {
      session: 's-1',
      parent,
      metadata: { nested: { list: [] } },
      buffers: [Buffer.from([0xde, 0xad, 0xbe, 0xef])],
    }),
    identities: [Buffer.from('client-7')],
  };
  const [verdict] = jupyterDeserialize(KEY, [serialize(msg, new MessageSigner(KEY))]);
  if (!verdict?.ok) return t.fail(`jupyter_client rejected our frames: ${verdict?.error}`);
  t.is(verdict.header.msg_id, msg.header.msg_id);
  t.is(verdict.header.session, 's-1');
  // jupyter_client parses dates and prints microseconds; the instant must be the same.
  t.is(Date.parse(verdict.header.date as string), Date.parse(msg.header.date));
  t.is(verdict.parent_header.msg_id, parent.header.msg_id);
  t.deepEqual(verdict.content, msg.content);
  t.deepEqual(verdict.metadata, { nested: { list: [] } });
  t.deepEqual(verdict.buffers, [b64(Buffer.from([0xde, 0xad, 0xbe, 0xef]))]);
  t.deepEqual(verdict.identities, [b64('client-7')]);
});

test('a tampered header, parent, metadata or content frame is rejected with WireFormatError', (t) => {
  const frames = framesOf(goldenCase('parent'));
  const at = frames.findIndex((f) => f.equals(DELIMITER));
  for (let signed = at + 2; signed < at + 6; signed++) {
    const tampered = frames.map((f) => Buffer.from(f));
    tampered[signed]![tampered[signed]!.length - 2] ^= 0x01;
    assertWireError(t, () => deserialize(tampered, new MessageSigner(KEY)), /invalid message signature/);
  }
  const sigTampered = frames.map((f) => Buffer.from(f));
  sigTampered[at + 1]![0] = sigTampered[at + 1]![0] === 0x61 ? 0x62 : 0x61;
  assertWireError(t, () => deserialize(sigTampered, new MessageSigner(KEY)), /invalid message signature/);
});

test('buffers are not covered by the signature, exactly as in jupyter_client', (t) => {
  const frames = framesOf(goldenCase('buffers'));
  frames[frames.length - 1] = Buffer.from('changed');
  t.deepEqual(deserialize(frames, new MessageSigner(KEY)).buffers.at(-1), Buffer.from('changed'));
  const [verdict] = jupyterDeserialize(KEY, [frames]);
  t.true(verdict?.ok);
});

test('a wrong key is rejected both ways: by deserialize here and by jupyter_client', (t) => {
  assertWireError(t, () => deserialize(framesOf(goldenCase('plain')), new MessageSigner('another-key')), /invalid message signature/);
  const msg = newMessage('kernel_info_request', {}, { session: 's' });
  const [verdict] = jupyterDeserialize(KEY, [serialize(msg, new MessageSigner('another-key'))]);
  t.false(verdict?.ok);
  t.regex(verdict && !verdict.ok ? verdict.error : '', /Invalid Signature/);
});

test('an empty key means no signing: empty signature frame, nothing checked, as jupyter_client does', (t) => {
  const unsigned = framesOf(goldenCase('unsigned'));
  const at = unsigned.findIndex((f) => f.equals(DELIMITER));
  t.is(unsigned[at + 1]!.length, 0, 'jupyter_client sends an empty signature frame without a key');
  t.is(deserialize(unsigned, new MessageSigner('')).content.execution_state, 'idle');

  const ours = serialize(newMessage('status', { execution_state: 'busy' }, { session: 's' }), new MessageSigner(''));
  t.is(ours[ours.findIndex((f) => f.equals(DELIMITER)) + 1]!.length, 0);
  const [verdict] = jupyterDeserialize('', [ours]);
  t.true(verdict?.ok, verdict && !verdict.ok ? verdict.error : '');

  // Without a key any signature frame is accepted (jupyter_client ignores it when auth is None).
  const garbage = unsigned.map((f) => Buffer.from(f));
  garbage[at + 1] = Buffer.from('not-a-signature');
  t.notThrows(() => deserialize(garbage, new MessageSigner('')));
});

test('with a key, an unsigned message is rejected (jupyter_client: "Unsigned Message")', (t) => {
  assertWireError(t, () => deserialize(framesOf(goldenCase('unsigned')), new MessageSigner(KEY)), /invalid message signature/);
  const [verdict] = jupyterDeserialize(KEY, [framesOf(goldenCase('unsigned'))]);
  t.false(verdict?.ok);
});

test('signature comparison is over the full digest: near misses, case changes and wrong lengths all fail cleanly', (t) => {
  const frames = framesOf(goldenCase('plain'));
  const at = frames.findIndex((f) => f.equals(DELIMITER));
  const signed = frames.slice(at + 2, at + 6);
  const good = frames[at + 1]!.toString('ascii');
  const signer = new MessageSigner(KEY);
  t.true(signer.verify(good, signed));
  const flipLast = good.slice(0, -1) + (good.endsWith('0') ? '1' : '0');
  const flipFirst = (good.startsWith('0') ? '1' : '0') + good.slice(1);
  // timingSafeEqual throws a RangeError on unequal lengths; verify must answer false instead.
  for (const bad of [flipLast, flipFirst, good.toUpperCase(), good.slice(0, -1), `${good}0`, '', good.slice(0, 32)]) {
    if (bad === good) continue;
    t.false(signer.verify(bad, signed), bad);
    t.false(signer.verify(Buffer.from(bad), signed), bad);
    const tampered = frames.map((f) => Buffer.from(f));
    tampered[at + 1] = Buffer.from(bad);
    assertWireError(t, () => deserialize(tampered, signer), /invalid message signature/);
  }
});

test('malformed frame sets are rejected with WireFormatError naming the problem', (t) => {
  const signer = new MessageSigner('');
  const frames = framesOf(goldenCase('unsigned'));
  assertWireError(t, () => deserialize(frames.filter((f) => !f.equals(DELIMITER)), signer), /delimiter/);
  assertWireError(t, () => deserialize(frames.slice(0, -1), signer), /too few frames/);
  const at = frames.findIndex((f) => f.equals(DELIMITER));
  const notJson = frames.map((f, i) => (i === at + 5 ? Buffer.from('{oops') : f));
  assertWireError(t, () => deserialize(notJson, signer), /content frame is not valid JSON/);
  const notObject = frames.map((f, i) => (i === at + 4 ? Buffer.from('[1]') : f));
  assertWireError(t, () => deserialize(notObject, signer), /metadata frame is not a JSON object/);
  const noType = frames.map((f, i) => (i === at + 2 ? Buffer.from('{"msg_id":"x"}') : f));
  assertWireError(t, () => deserialize(noType, signer), /msg_id or msg_type/);
});

test('an unsupported signature scheme is refused up front', (t) => {
  t.throws(() => new MessageSigner(KEY, 'hmac-md5'), { instanceOf: WireFormatError, message: /hmac-md5/ });
});

/**
 * The edge validator: every rule of the schema language, and messages that name the field and say what
 * is expected. Failures are DomainError invalid_input (400), never anything else.
 */
import test, { type ExecutionContext } from 'ava';
import { DomainError } from '../../src/errors.js';
import { assertKernelId, UUID_PATTERN, validateObject, type ObjectSchema } from '../../src/api/validate.js';

function rejects(t: ExecutionContext, schema: ObjectSchema, value: unknown, message: RegExp, allowExtra = false): void {
  const error = t.throws(() => validateObject(schema, value, 'body', allowExtra), { instanceOf: DomainError }, JSON.stringify(value));
  t.is((error as DomainError | undefined)?.code, 'invalid_input');
  t.regex(error?.message ?? '', message);
}

const SCHEMA: ObjectSchema = {
  lang: { type: 'string', required: true, maxLength: 20, minLength: 1 },
  mode: { type: 'string', enum: ['query', 'batch'] },
  token: { type: 'string', pattern: /^[a-z0-9-]+$/ },
  maxMem: { type: 'integer', min: 16384, max: 1_000_000 },
  verbose: { type: 'boolean' },
};

test('a body that is not a JSON object is rejected, saying what it was', (t) => {
  rejects(t, SCHEMA, null, /body must be a JSON object, got null/);
  rejects(t, SCHEMA, [], /got an array/);
  rejects(t, SCHEMA, 'python3', /got string "python3"/);
  rejects(t, SCHEMA, 42, /got number 42/);
});

test('valid input comes back with exactly the known fields; absent optional fields stay absent', (t) => {
  t.deepEqual(validateObject(SCHEMA, { lang: 'python3', maxMem: 16384, verbose: false }), { lang: 'python3', maxMem: 16384, verbose: false });
  t.false('mode' in validateObject<Record<string, unknown>>(SCHEMA, { lang: 'r' }));
});

test('a missing or null required field is named', (t) => {
  rejects(t, SCHEMA, {}, /^lang is required$/);
  rejects(t, SCHEMA, { lang: null }, /^lang is required$/);
});

test('a null optional field counts as absent', (t) => {
  t.deepEqual(validateObject(SCHEMA, { lang: 'r', mode: null }), { lang: 'r' });
});

test('unknown fields are rejected, listing them and the expected fields', (t) => {
  rejects(t, SCHEMA, { lang: 'r', colour: 'red' }, /unknown field "colour" in body; expected: lang, mode, token, maxMem, verbose/);
});

test('unknown fields named like Object.prototype members are rejected too', (t) => {
  for (const name of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
    rejects(t, SCHEMA, JSON.parse(`{"lang": "r", "${name}": 1}`), new RegExp(`unknown field "${name}"`));
  }
});

test('allowExtra keeps unknown fields as they are while still checking the known ones', (t) => {
  t.deepEqual(validateObject(SCHEMA, { lang: 'r', extra: { a: 1 } }, 'body', true), { lang: 'r', extra: { a: 1 } });
  rejects(t, SCHEMA, { lang: 5, extra: 1 }, /lang must be a string/, true);
});

test('allowExtra keeps a "__proto__" field as a plain field, never as the prototype of the result', (t) => {
  const out = validateObject<Record<string, unknown>>(SCHEMA, JSON.parse('{"lang": "r", "__proto__": {"polluted": true}}'), 'body', true);
  t.is(Object.getPrototypeOf(out), Object.prototype);
  t.is(out.polluted, undefined);
  t.true(Object.hasOwn(out, '__proto__'));
  t.deepEqual(Object.getOwnPropertyDescriptor(out, '__proto__')?.value, { polluted: true });
});

test('strings: type, length bounds, enum and pattern each give their own message', (t) => {
  rejects(t, SCHEMA, { lang: 3 }, /lang must be a string, got number 3/);
  rejects(t, SCHEMA, { lang: 'x'.repeat(21) }, /lang is too long \(21 characters; at most 20\)/);
  rejects(t, SCHEMA, { lang: '' }, /lang must have at least 1 character/);
  rejects(t, SCHEMA, { lang: 'r', mode: 'interactive' }, /mode must be one of "query", "batch", got "interactive"/);
  rejects(t, SCHEMA, { lang: 'r', token: 'Has Space' }, /token has an invalid format/);
  t.is(validateObject<{ token: string }>(SCHEMA, { lang: 'r', token: 'ok-1' }).token, 'ok-1');
});

test('strings without maxLength are still capped at one million characters', (t) => {
  const schema: ObjectSchema = { code: { type: 'string' } };
  t.notThrows(() => validateObject(schema, { code: 'x'.repeat(1_000_000) }));
  rejects(t, schema, { code: 'x'.repeat(1_000_001) }, /code is too long \(1000001 characters; at most 1000000\)/);
});

test('integers: fractions, numeric strings and out-of-range values are rejected', (t) => {
  rejects(t, SCHEMA, { lang: 'r', maxMem: 16384.5 }, /maxMem must be a whole number, got number 16384.5/);
  rejects(t, SCHEMA, { lang: 'r', maxMem: '16384' }, /maxMem must be a whole number, got string "16384"/);
  rejects(t, SCHEMA, { lang: 'r', maxMem: 16383 }, /maxMem must be at least 16384/);
  rejects(t, SCHEMA, { lang: 'r', maxMem: 1_000_001 }, /maxMem must be at most 1000000/);
});

test('booleans must be JSON booleans, not strings or numbers', (t) => {
  rejects(t, SCHEMA, { lang: 'r', verbose: 'true' }, /verbose must be true or false, got string "true"/);
  rejects(t, SCHEMA, { lang: 'r', verbose: 1 }, /verbose must be true or false/);
});

test('nested objects, records and arrays report the full path of the bad value', (t) => {
  const schema: ObjectSchema = {
    limits: { type: 'object', fields: { maxMem: { type: 'integer', required: true, min: 1 } } },
    env: { type: 'record', values: { type: 'string' }, maxKeys: 2 },
    args: { type: 'array', items: { type: 'string' }, maxItems: 2 },
  };
  rejects(t, schema, { limits: {} }, /^limits\.maxMem is required$/);
  rejects(t, schema, { limits: { maxMem: 0 } }, /limits\.maxMem must be at least 1/);
  rejects(t, schema, { limits: { maxMem: 1, other: 1 } }, /unknown field "other" in limits/);
  rejects(t, schema, { limits: [] }, /limits must be a JSON object, got an array/);
  rejects(t, schema, { env: { HOME: 1 } }, /env\.HOME must be a string/);
  rejects(t, schema, { env: { A: 'a', B: 'b', C: 'c' } }, /env has too many entries \(at most 2\)/);
  rejects(t, schema, { env: ['a'] }, /env must be an object, got an array/);
  rejects(t, schema, { args: ['a', 2] }, /args\[1\] must be a string/);
  rejects(t, schema, { args: ['a', 'b', 'c'] }, /args has too many items \(at most 2\)/);
  rejects(t, schema, { args: 'a' }, /args must be an array/);
  t.deepEqual(
    validateObject(schema, { limits: { maxMem: 5 }, env: { A: 'x' }, args: [] }),
    { limits: { maxMem: 5 }, env: { A: 'x' }, args: [] },
  );
});

test('assertKernelId accepts a UUID (lower-casing it) and rejects anything else with invalid_input', (t) => {
  t.is(assertKernelId('0F8FAD5B-D9CB-469F-A165-70867728950E'), '0f8fad5b-d9cb-469f-a165-70867728950e');
  for (const id of ['', 'python3', '0f8fad5b-d9cb-469f-a165-70867728950', '../../etc/passwd', '0f8fad5b-d9cb-469f-a165-70867728950e/x']) {
    const error = t.throws(() => assertKernelId(id), { instanceOf: DomainError }, id);
    t.is((error as DomainError | undefined)?.code, 'invalid_input');
    t.regex(error?.message ?? '', /is not a kernel id \(expected a UUID\)/);
  }
  const long = t.throws(() => assertKernelId('z'.repeat(500)));
  t.true((long?.message.length ?? Infinity) < 120, 'a long id is cut in the message');
  t.false(UUID_PATTERN.test('0f8fad5b-d9cb-469f-a165-70867728950e\n'));
});

/**
 * Untrusted input is checked once, at the edge, against a small declarative schema; after that the
 * handlers work with typed values. Every failure names the field and says what is expected.
 */
import { invalidInput } from '../errors.js';

export type FieldSchema =
  | { type: 'string'; required?: boolean; maxLength?: number; minLength?: number; pattern?: RegExp; enum?: readonly string[] }
  | { type: 'integer'; required?: boolean; min?: number; max?: number }
  | { type: 'boolean'; required?: boolean }
  | { type: 'object'; required?: boolean; fields: ObjectSchema; allowExtra?: boolean }
  | { type: 'record'; required?: boolean; values: FieldSchema; maxKeys?: number }
  | { type: 'array'; required?: boolean; items: FieldSchema; maxItems?: number };

export type ObjectSchema = Record<string, FieldSchema>;

const MAX_STRING = 1_000_000;

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)?.slice(0, 40)}`;
}

function check(schema: FieldSchema, value: unknown, where: string): unknown {
  switch (schema.type) {
    case 'string': {
      if (typeof value !== 'string') throw invalidInput(`${where} must be a string, got ${describe(value)}`);
      const max = schema.maxLength ?? MAX_STRING;
      if (value.length > max) throw invalidInput(`${where} is too long (${value.length} characters; at most ${max})`);
      if (schema.minLength !== undefined && value.length < schema.minLength) {
        throw invalidInput(`${where} must have at least ${schema.minLength} character(s)`);
      }
      if (schema.enum && !schema.enum.includes(value)) {
        throw invalidInput(`${where} must be one of ${schema.enum.map((v) => `"${v}"`).join(', ')}, got "${value.slice(0, 40)}"`);
      }
      if (schema.pattern && !schema.pattern.test(value)) throw invalidInput(`${where} has an invalid format`);
      return value;
    }
    case 'integer': {
      if (typeof value !== 'number' || !Number.isInteger(value)) {
        throw invalidInput(`${where} must be a whole number, got ${describe(value)}`);
      }
      if (schema.min !== undefined && value < schema.min) throw invalidInput(`${where} must be at least ${schema.min}`);
      if (schema.max !== undefined && value > schema.max) throw invalidInput(`${where} must be at most ${schema.max}`);
      return value;
    }
    case 'boolean':
      if (typeof value !== 'boolean') throw invalidInput(`${where} must be true or false, got ${describe(value)}`);
      return value;
    case 'object':
      return validateObject(schema.fields, value, where, schema.allowExtra);
    case 'record': {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        throw invalidInput(`${where} must be an object, got ${describe(value)}`);
      }
      const entries = Object.entries(value);
      if (schema.maxKeys !== undefined && entries.length > schema.maxKeys) {
        throw invalidInput(`${where} has too many entries (at most ${schema.maxKeys})`);
      }
      return Object.fromEntries(entries.map(([k, v]) => [k, check(schema.values, v, `${where}.${k}`)]));
    }
    case 'array': {
      if (!Array.isArray(value)) throw invalidInput(`${where} must be an array, got ${describe(value)}`);
      if (schema.maxItems !== undefined && value.length > schema.maxItems) {
        throw invalidInput(`${where} has too many items (at most ${schema.maxItems})`);
      }
      return value.map((item, i) => check(schema.items, item, `${where}[${i}]`));
    }
  }
}

/** Checks `value` against an object schema; unknown fields are an error unless `allowExtra`. */
export function validateObject<T>(schema: ObjectSchema, value: unknown, where = 'body', allowExtra = false): T {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidInput(`${where} must be a JSON object, got ${describe(value)}`);
  }
  const input = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [name, field] of Object.entries(schema)) {
    const fieldValue = input[name];
    if (fieldValue === undefined || fieldValue === null) {
      if (field.required) throw invalidInput(`${where === 'body' ? '' : `${where}.`}${name} is required`);
      continue;
    }
    out[name] = check(field, fieldValue, where === 'body' ? name : `${where}.${name}`);
  }
  if (!allowExtra) {
    // Own keys only: `name in schema` would take "constructor" or "__proto__" for declared fields.
    const unknown = Object.keys(input).filter((name) => !Object.hasOwn(schema, name));
    if (unknown.length > 0) {
      const known = Object.keys(schema).join(', ');
      throw invalidInput(`unknown field ${unknown.map((n) => `"${n.slice(0, 40)}"`).join(', ')} in ${where}; expected: ${known}`);
    }
  } else {
    for (const [name, fieldValue] of Object.entries(input)) {
      // defineProperty: assigning out.__proto__ would replace the prototype instead of keeping the field.
      if (!Object.hasOwn(schema, name)) Object.defineProperty(out, name, { value: fieldValue, enumerable: true, writable: true, configurable: true });
    }
  }
  return out as T;
}

export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Kernel ids are UUIDs; anything else cannot name a kernel. */
export function assertKernelId(id: string): string {
  if (!UUID_PATTERN.test(id)) throw invalidInput(`"${id.slice(0, 60)}" is not a kernel id (expected a UUID)`);
  return id.toLowerCase();
}

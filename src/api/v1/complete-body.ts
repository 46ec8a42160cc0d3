/**
 * The body of v1's complete call, as Backend.AI documents it: `code` up to the cursor, and in `options`
 * the code after it (`post`), the cursor's line (`line`) and its 0-based `row` and `col`.
 */
import { invalidInput } from '../../errors.js';
import { MAX_COMPLETE_CODE_CHARS, type CompleteRequest } from '../../runs/completion.js';
import { validateObject, type ObjectSchema } from '../validate.js';

const COMPLETE_SCHEMA: ObjectSchema = {
  code: { type: 'string', required: true, maxLength: MAX_COMPLETE_CODE_CHARS },
  options: {
    type: 'object',
    fields: {
      post: { type: 'string', maxLength: MAX_COMPLETE_CODE_CHARS },
      line: { type: 'string', maxLength: MAX_COMPLETE_CODE_CHARS },
      row: { type: 'integer', min: 0 },
      col: { type: 'integer', min: 0 },
    },
  },
};

interface CompleteBody {
  code: string;
  options?: { post?: string; line?: string; row?: number; col?: number };
}

export function parseCompleteBody(value: unknown): CompleteRequest {
  const body = validateObject<CompleteBody>(COMPLETE_SCHEMA, value);
  const post = body.options?.post ?? '';
  if (body.code.length + post.length > MAX_COMPLETE_CODE_CHARS) {
    throw invalidInput(`code and options.post together are too long (${body.code.length + post.length} characters; at most ${MAX_COMPLETE_CODE_CHARS}): send the cell being edited, not more`);
  }
  return { code: body.code, post };
}

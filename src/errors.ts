/**
 * Domain errors with stable codes. Domain code throws these; only the API layer maps them to HTTP
 * (see `httpStatusOf`), and each API surface renders its own body (src/api/error-bodies.ts). Messages are
 * written for the client: they say what to fix. Anything that is not a DomainError is an internal fault
 * and is never shown.
 */
export type ErrorCode =
  | 'invalid_input'
  /** Well-formed, but some fields are wrong (Judge0's 422 with messages per field). */
  | 'unprocessable'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'limit_exceeded'
  | 'too_many_kernels'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'rate_limited'
  | 'unavailable'
  | 'not_implemented'
  | 'kernel_failed';

export interface DomainErrorDetails {
  /** A few words beside the message, rendered as the Jupyter APIs' `short_message` (jupyter_server's 501). */
  shortMessage?: string;
  /** What is wrong, field by field (Judge0 renders these as its 422 body). */
  fields?: Record<string, string[]>;
}

export class DomainError extends Error {
  readonly shortMessage?: string;
  readonly fields?: Record<string, string[]>;

  constructor(
    readonly code: ErrorCode,
    message: string,
    details: DomainErrorDetails = {},
  ) {
    super(message);
    this.name = 'DomainError';
    this.shortMessage = details.shortMessage;
    this.fields = details.fields;
  }
}

export const invalidInput = (message: string) => new DomainError('invalid_input', message);
/** Field by field: `{"language_id": ["can't be blank"]}`; the message joins them for dialects without fields. */
export const unprocessable = (fields: Record<string, string[]>) =>
  new DomainError(
    'unprocessable',
    Object.entries(fields).map(([name, messages]) => `${name} ${messages.join(', ')}`).join('; '),
    { fields },
  );
export const unauthorized = (message: string) => new DomainError('unauthorized', message);
export const forbidden = (message: string) => new DomainError('forbidden', message);
export const notFound = (message: string) => new DomainError('not_found', message);
/** The one way every surface says a kernel id names no kernel (with why it went, when it went recently). */
export const unknownKernel = (id: string, goneBecause?: string) =>
  notFound(goneBecause ? `kernel ${id} is gone (${goneBecause})` : `no kernel with id ${id}`);
export const conflict = (message: string) => new DomainError('conflict', message);
export const limitExceeded = (message: string) => new DomainError('limit_exceeded', message);
export const tooManyKernels = (message: string) => new DomainError('too_many_kernels', message);
export const payloadTooLarge = (limit: number) => new DomainError('payload_too_large', `request body is larger than ${limit} bytes`);
export const unsupportedMediaType = (message: string) => new DomainError('unsupported_media_type', message);
export const rateLimited = (message: string) => new DomainError('rate_limited', message);
export const unavailable = (message: string) => new DomainError('unavailable', message);
export const notImplemented = (message: string, details?: DomainErrorDetails) => new DomainError('not_implemented', message, details);
export const kernelFailed = (message: string) => new DomainError('kernel_failed', message);

const STATUS: Record<ErrorCode, number> = {
  invalid_input: 400,
  unauthorized: 401,
  // Kernel Gateway answers 402 when KG_MAX_KERNELS is reached.
  too_many_kernels: 402,
  forbidden: 403,
  not_found: 404,
  limit_exceeded: 406,
  unprocessable: 422,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  kernel_failed: 500,
  not_implemented: 501,
  unavailable: 503,
};

export function httpStatusOf(error: DomainError): number {
  return STATUS[error.code];
}

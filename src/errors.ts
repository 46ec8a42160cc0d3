/**
 * Domain errors with stable codes. Domain code throws these; only the API layer maps them to HTTP
 * (see `httpStatusOf`), and each API surface renders its own body. Messages are written for the client:
 * they say what to fix. Anything that is not a DomainError is an internal fault and is never shown.
 */
export type ErrorCode =
  | 'invalid_input'
  | 'unauthorized'
  | 'not_found'
  | 'conflict'
  | 'limit_exceeded'
  | 'too_many_kernels'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'unavailable'
  | 'kernel_failed';

export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Short machine-readable reason, rendered as Jupyter's `reason`. */
    readonly reason?: string,
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

export const invalidInput = (message: string) => new DomainError('invalid_input', message, 'Bad Request');
export const notFound = (message: string) => new DomainError('not_found', message, 'Not Found');
/** The one way every surface says a kernel id names no kernel (with why it went, when it went recently). */
export const unknownKernel = (id: string, goneBecause?: string) =>
  notFound(goneBecause ? `kernel ${id} is gone (${goneBecause})` : `no kernel with id ${id}`);
export const conflict = (message: string) => new DomainError('conflict', message, 'Conflict');
export const limitExceeded = (message: string) => new DomainError('limit_exceeded', message, 'Not Acceptable');
export const tooManyKernels = (message: string) => new DomainError('too_many_kernels', message, 'Payment Required');
export const unavailable = (message: string) => new DomainError('unavailable', message, 'Service Unavailable');
export const kernelFailed = (message: string) => new DomainError('kernel_failed', message, 'Kernel Failed');

const STATUS: Record<ErrorCode, number> = {
  invalid_input: 400,
  unauthorized: 401,
  // Kernel Gateway answers 402 when KG_MAX_KERNELS is reached.
  too_many_kernels: 402,
  not_found: 404,
  limit_exceeded: 406,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  kernel_failed: 500,
  unavailable: 503,
};

export function httpStatusOf(error: DomainError): number {
  return STATUS[error.code];
}

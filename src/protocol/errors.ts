/** Typed errors with stable codes: every carrier maps these once (see docs/protocol.md). */

export const ErrorCodes = [
  'PROTOCOL_ERROR',
  'VALIDATION_ERROR',
  'ROUTE_NOT_FOUND',
  'BAD_REQUEST',
  'INTERNAL_ERROR',
  'BACKEND_ERROR',
  'IO_ERROR',
  'JSON_ERROR',
  'RATE_LIMIT_EXCEEDED',
  'AUTH_ERROR',
  'UNAUTHORIZED',
  'FORBIDDEN',
  'CANCELLED',
  'BUSY',
  'TIMEOUT',
  'NOT_FOUND',
  'MODEL_NOT_FOUND',
  'MODEL_NOT_LOADED',
  'PAYLOAD_TOO_LARGE',
  'METHOD_NOT_ALLOWED',
  'CONFLICT',
  'UNAVAILABLE',
  'INSUFFICIENT_MEMORY',
] as const;

export type ErrorCode = (typeof ErrorCodes)[number];

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details?: unknown;
}

export class TabAgentError extends Error {
  readonly code: ErrorCode;
  readonly details?: unknown;

  constructor(code: ErrorCode, message: string, details?: unknown) {
    super(message);
    this.name = 'TabAgentError';
    this.code = code;
    if (details !== undefined) this.details = details;
  }

  toBody(): ErrorBody {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/** Any thrown value becomes a typed error; unknown failures are INTERNAL_ERROR without leaking stacks. */
export function toTabAgentError(err: unknown): TabAgentError {
  if (err instanceof TabAgentError) return err;
  if (isErrorBody(err)) return new TabAgentError(err.code, err.message, err.details);
  if (err instanceof Error && err.name === 'AbortError') return new TabAgentError('CANCELLED', 'the request was cancelled');
  const message = err instanceof Error ? err.message : String(err);
  return new TabAgentError('INTERNAL_ERROR', message);
}

export function isErrorBody(value: unknown): value is ErrorBody {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as ErrorBody).code === 'string' &&
    (ErrorCodes as readonly string[]).includes((value as ErrorBody).code) &&
    typeof (value as ErrorBody).message === 'string'
  );
}

/** HTTP status for each code: used by the HTTP carrier and by anything that reports a status. */
export const httpStatusFor: Record<ErrorCode, number> = {
  PROTOCOL_ERROR: 400,
  VALIDATION_ERROR: 400,
  ROUTE_NOT_FOUND: 404,
  BAD_REQUEST: 400,
  INTERNAL_ERROR: 500,
  BACKEND_ERROR: 502,
  IO_ERROR: 500,
  JSON_ERROR: 400,
  RATE_LIMIT_EXCEEDED: 429,
  AUTH_ERROR: 401,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  CANCELLED: 499,
  BUSY: 503,
  TIMEOUT: 504,
  NOT_FOUND: 404,
  MODEL_NOT_FOUND: 404,
  MODEL_NOT_LOADED: 503,
  PAYLOAD_TOO_LARGE: 413,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  UNAVAILABLE: 503,
  INSUFFICIENT_MEMORY: 507,
};

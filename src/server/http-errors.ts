// HTTP errors: every failure leaves the API as a stable, machine-readable code with the field
// it is about. Typed store errors map to 4xx/5xx here; anything unexpected is a 500 with the
// request id and no internals.
import { CofferError, type ErrorCode } from '../db/errors.js';

export type HttpErrorCode =
  ErrorCode | 'unauthorized' | 'rate_limited' | 'payload_too_large' | 'route_not_found' | 'shutting_down' | 'internal';

export class HttpError extends Error {
  readonly status: number;
  readonly code: HttpErrorCode;
  readonly field: string | undefined;
  constructor(status: number, code: HttpErrorCode, message: string, field?: string) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

const STATUS: Record<ErrorCode, number> = {
  validation: 400,
  not_null_violation: 400,
  not_found: 404,
  unique_violation: 409,
  conflict: 409,
  invalid_state_transition: 422,
  check_violation: 422,
  foreign_key_violation: 422,
  read_only: 403,
  busy: 503,
  connection: 503,
  storage_full: 507,
  migration: 503,
  config: 500,
  append_only: 409,
  decryption: 500,
  unauthenticated: 401,
  forbidden: 403,
};

export interface ErrorBody {
  error: { code: HttpErrorCode; message: string; field?: string; requestId: string };
}

/** The status and body for any thrown value; unexpected errors never leak their message. */
export function toHttpError(e: unknown, requestId: string): { status: number; body: ErrorBody; unexpected: boolean } {
  if (e instanceof HttpError) {
    return {
      status: e.status,
      body: { error: { code: e.code, message: e.message, ...(e.field ? { field: e.field } : {}), requestId } },
      unexpected: false,
    };
  }
  if (e instanceof CofferError) {
    const status = STATUS[e.code] ?? 500;
    // Driver-level details (constraint names) are safe; driver messages are not passed through.
    const field = typeof e.details.field === 'string' ? e.details.field : undefined;
    const message =
      status >= 500 && e.code !== 'busy' && e.code !== 'connection' && e.code !== 'storage_full' ? 'internal error' : e.message;
    return { status, body: { error: { code: e.code, message, ...(field ? { field } : {}), requestId } }, unexpected: status === 500 };
  }
  const fastifyError = e as { statusCode?: number; code?: string; message?: string };
  // Refused by the router before any route ran; fixed messages (Fastify's echo the whole path).
  if (fastifyError.code === 'FST_ERR_BAD_URL') {
    return {
      status: 400,
      body: { error: { code: 'validation', message: 'the URL path is not valid (malformed percent-encoding)', requestId } },
      unexpected: false,
    };
  }
  if (fastifyError.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    return {
      status: 414,
      body: { error: { code: 'validation', message: 'a URL path segment is too long', requestId } },
      unexpected: false,
    };
  }
  if (fastifyError.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return { status: 413, body: { error: { code: 'payload_too_large', message: 'request body too large', requestId } }, unexpected: false };
  }
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    return {
      status: fastifyError.statusCode,
      body: { error: { code: 'validation', message: fastifyError.message ?? 'bad request', requestId } },
      unexpected: false,
    };
  }
  return { status: 500, body: { error: { code: 'internal', message: 'internal error', requestId } }, unexpected: true };
}

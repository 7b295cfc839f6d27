/** The one place where errors become HTTP responses: RFC 7807 problem+json, and OpenAI's error shape on the OpenAI routes. */
import { STATUS_CODES } from 'node:http';
import { httpStatusFor, type TabAgentError } from '../../protocol/errors.js';

/** Status line text, including the non-standard 499 a cancelled request gets. */
export function statusLine(status: number): string {
  return `${status} ${STATUS_CODES[status] ?? (status === 499 ? 'Client Closed Request' : 'Unknown')}`;
}

export function statusOf(err: TabAgentError): number {
  return httpStatusFor[err.code] ?? 500;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  request_id: string;
  instance?: string;
  errors?: unknown;
  retry_after_ms?: number;
}

const TYPE_BASE = 'https://tabagent.dev/problems/';

/** RFC 7807 body: `type` names the error code, `errors` carries the machine-readable details (which field, what is allowed). */
export function problemBody(err: TabAgentError, requestId: string, instance?: string): Problem {
  const status = statusOf(err);
  const body: Problem = {
    type: `${TYPE_BASE}${err.code.toLowerCase().replaceAll('_', '-')}`,
    title: STATUS_CODES[status] ?? (status === 499 ? 'Client Closed Request' : 'Error'),
    status,
    detail: err.message,
    code: err.code,
    request_id: requestId,
  };
  if (instance !== undefined) body.instance = instance;
  if (err.details !== undefined) body.errors = err.details;
  const retry = retryAfterMs(err);
  if (retry !== undefined) body.retry_after_ms = retry;
  return body;
}

export function retryAfterMs(err: TabAgentError): number | undefined {
  const d = err.details as { retry_after_ms?: unknown } | undefined;
  return d && typeof d.retry_after_ms === 'number' ? d.retry_after_ms : undefined;
}

/** OpenAI's `error.type` by status, as its clients classify errors. */
function openAiType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'invalid_request_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** The field an error is about, as OpenAI's `param` (the first one when several are wrong). */
function paramOf(err: TabAgentError): string | null {
  const details = err.details;
  const first = Array.isArray(details) ? details[0] : details;
  const field = typeof first === 'object' && first !== null ? (first as { field?: unknown }).field : undefined;
  return typeof field === 'string' ? field : null;
}

/** `{error: {message, type, code, param}}`: what the official OpenAI clients parse into their APIError. */
export function openAiErrorBody(err: TabAgentError, requestId: string): { error: Record<string, unknown> } {
  const error: Record<string, unknown> = {
    message: err.message,
    type: openAiType(statusOf(err)),
    code: err.code.toLowerCase(),
    param: paramOf(err),
    request_id: requestId,
  };
  if (err.details !== undefined) error['details'] = err.details;
  return { error };
}

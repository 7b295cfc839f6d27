/** The request contract every carrier speaks: request, reply, error and chunk frames (docs/protocol.md). */
import * as v from 'valibot';
import { TabAgentError, type ErrorBody } from './errors.js';

export const PrioritySchema = v.picklist(['interactive', 'normal', 'background']);

export const RequestIdSchema = v.pipe(v.string(), v.minLength(1, 'request_id must not be empty'), v.maxLength(128, 'request_id is at most 128 characters'));

export const ContractRequestSchema = v.object({
  request_id: RequestIdSchema,
  route: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{1,64}$/, 'route must match [A-Za-z0-9_-]{1,64}')),
  payload: v.optional(v.unknown()),
  priority: v.optional(PrioritySchema),
});

export type ContractRequest = v.InferOutput<typeof ContractRequestSchema>;

export interface SuccessFrame {
  request_id: string;
  success: true;
  data: unknown;
}
export interface ErrorFrame {
  request_id: string | null;
  success: false;
  error: ErrorBody;
}
export interface ChunkFrame {
  request_id: string;
  event: 'chunk';
  data: unknown;
}
/** Something the server pushes that answers no request (progress of a model load, a session state change). */
export interface EventFrame {
  event: string;
  data: unknown;
}
export type ReplyFrame = SuccessFrame | ErrorFrame;
export type OutboundFrame = ReplyFrame | ChunkFrame;

/** Turns valibot issues into one message that names every bad field, plus a details list for machines. */
export function validationError(issues: readonly v.BaseIssue<unknown>[], what: string): TabAgentError {
  const details = issues.map((issue) => ({ field: v.getDotPath(issue) ?? what, message: issue.message }));
  const summary = details.map((d) => `${d.field}: ${d.message}`).join('; ');
  return new TabAgentError('VALIDATION_ERROR', `invalid ${what}: ${summary}`, details);
}

/** Parses anything decoded from a carrier into a request, or throws a typed error naming what was wrong. */
export function parseRequest(raw: unknown): ContractRequest {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new TabAgentError('PROTOCOL_ERROR', 'a request must be an object {request_id, route, payload, priority?}');
  }
  const result = v.safeParse(ContractRequestSchema, raw);
  if (!result.success) {
    const err = validationError(result.issues, 'request');
    throw new TabAgentError('PROTOCOL_ERROR', err.message, err.details);
  }
  return result.output;
}

/** The request id of a frame that failed to parse, when it has a usable one, so the error can still be matched. */
export function salvageRequestId(raw: unknown): string | null {
  const id = typeof raw === 'object' && raw !== null ? (raw as { request_id?: unknown }).request_id : undefined;
  return typeof id === 'string' && id.length > 0 && id.length <= 128 ? id : null;
}

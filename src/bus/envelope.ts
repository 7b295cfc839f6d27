/** The envelope: the one message shape between actors, and its msgpack codec for crossing threads and sockets. */
import { Packr } from 'msgpackr';
import { randomUUID } from 'node:crypto';
import type { ErrorBody } from '../protocol/errors.js';

export type EnvelopeKind = 'request' | 'reply' | 'chunk' | 'error' | 'cancel' | 'event';
export type Priority = 'interactive' | 'normal' | 'background';
export const Priorities: readonly Priority[] = ['interactive', 'normal', 'background'];

export interface Envelope<B = unknown> {
  id: string;
  kind: EnvelopeKind;
  from: string;
  to: string;
  /** For replies, chunks, errors and cancels: the id of the request they belong to. */
  correlationId?: string;
  priority: Priority;
  /** Absolute deadline in epoch milliseconds; past it the request ends with TIMEOUT. */
  deadline?: number;
  traceId: string;
  body: B;
}

/** A request's body: the route and its payload, as the contract names them. */
export interface RequestBody {
  route: string;
  payload: unknown;
  /** The client's own request id (request_id on the wire); also the trace id. */
  requestId: string;
}

export type ErrorEnvelope = Envelope<ErrorBody>;

let seq = 0;
const prefix = randomUUID().slice(0, 8);
/** Cheap unique ids: a per-process prefix and a counter (no crypto call per message on the hot path). */
export function nextId(): string {
  seq = (seq + 1) % Number.MAX_SAFE_INTEGER;
  return `${prefix}-${seq.toString(36)}`;
}

/** Field order of the envelope record: fixed, so every thread and socket shares one structure definition. */
const ENVELOPE_KEYS = ['id', 'kind', 'from', 'to', 'correlationId', 'priority', 'deadline', 'traceId', 'body'];

/**
 * One Packr with a shared structure for the envelope record, declared up front on both sides of every
 * boundary: each message then carries a one-byte structure id instead of nine key names. The shared
 * list is frozen at that one entry (maxSharedStructures: 1), so threads never have to agree on
 * structures learnt at run time; body records carry their own definitions inside the message.
 */
const packr = new Packr({ structures: [ENVELOPE_KEYS], maxSharedStructures: 1, useRecords: true, moreTypes: false });

export function encodeEnvelope(env: Envelope): Buffer {
  return packr.pack({
    id: env.id,
    kind: env.kind,
    from: env.from,
    to: env.to,
    correlationId: env.correlationId ?? null,
    priority: env.priority,
    deadline: env.deadline ?? null,
    traceId: env.traceId,
    body: env.body,
  });
}

export function decodeEnvelope(buf: Uint8Array): Envelope {
  const raw = packr.unpack(buf) as Envelope & { correlationId: string | null; deadline: number | null };
  const env: Envelope = { id: raw.id, kind: raw.kind, from: raw.from, to: raw.to, priority: raw.priority, traceId: raw.traceId, body: raw.body };
  if (raw.correlationId !== null) env.correlationId = raw.correlationId;
  if (raw.deadline !== null) env.deadline = raw.deadline;
  return env;
}

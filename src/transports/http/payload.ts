/** Turning an HTTP request into a route's payload: path fields, typed query parameters, the JSON body, and the carrier-set `_remote_address`. */
import type * as v from 'valibot';
import { TabAgentError } from '../../protocol/errors.js';
import type { RouteDef } from '../../protocol/route.js';
import { parseJsonBody } from './json.js';

type AnySchema = v.GenericSchema & { type: string; entries?: Record<string, AnySchema>; wrapped?: AnySchema; options?: AnySchema[]; item?: AnySchema };

/** The object entries a payload schema accepts (through optional/nullable wrappers and unions of objects). */
export function objectEntries(schema: v.GenericSchema): Record<string, v.GenericSchema> | undefined {
  const s = schema as AnySchema;
  if (s.entries) return s.entries;
  if (s.wrapped) return objectEntries(s.wrapped);
  if (s.options) {
    let merged: Record<string, v.GenericSchema> | undefined;
    for (const o of s.options) {
      const e = typeof o === 'object' ? objectEntries(o) : undefined;
      if (e) merged = { ...(merged ?? {}), ...e };
    }
    return merged;
  }
  return undefined;
}

/** The scalar kinds a schema accepts, so query strings can be turned into numbers and booleans where the schema wants them. */
function kinds(schema: v.GenericSchema, out = new Set<string>()): Set<string> {
  const s = schema as AnySchema;
  if (s.wrapped) return kinds(s.wrapped, out);
  if (s.options && s.type === 'union') {
    for (const o of s.options) kinds(o, out);
    return out;
  }
  out.add(s.type === 'picklist' || s.type === 'literal' || s.type === 'enum' ? 'string' : s.type);
  return out;
}

function coerce(raw: string, schema: v.GenericSchema | undefined): unknown {
  if (!schema) return raw;
  const k = kinds(schema);
  if (k.has('string') || k.has('unknown') || k.has('any')) return raw;
  if (k.has('number') && /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(raw)) return Number(raw);
  if (k.has('boolean') && /^(true|false|1|0)$/.test(raw)) return raw === 'true' || raw === '1';
  return raw;
}

function decode(part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new TabAgentError('BAD_REQUEST', `${what} is not valid percent-encoding: '${part}'`);
  }
}

/** Percent-decodes path fields. */
export function decodeParams(params: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(params)) out[k] = decode(val, `path segment '${k}'`);
  return out;
}

export function parseQuery(query: string, entries: Record<string, v.GenericSchema> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!query) return out;
  for (const [key, raw] of new URLSearchParams(query)) {
    const schema = entries?.[key];
    const isArray = (schema as AnySchema | undefined) && kinds(schema!).has('array');
    const value = isArray ? raw : coerce(raw, schema);
    if (isArray) {
      const prev = out[key];
      out[key] = Array.isArray(prev) ? [...prev, value] : [value];
    } else if (key in out) throw new TabAgentError('VALIDATION_ERROR', `query parameter '${key}' is given more than once`, [{ field: key, message: 'given more than once' }]);
    else out[key] = value;
  }
  return out;
}

/** The body of a POST/PUT/PATCH as a JSON object (an empty body is no payload). */
export function parseObjectBody(body: Buffer | undefined): Record<string, unknown> | undefined {
  if (!body || body.length === 0) return undefined;
  const value = parseJsonBody(body.toString('utf8'));
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TabAgentError('BAD_REQUEST', `the request body must be a JSON object, not ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`);
  }
  return value as Record<string, unknown>;
}

export interface PayloadParts {
  method: string;
  params: Readonly<Record<string, string>>;
  query: string;
  body: Buffer | undefined;
  remoteAddress: () => string;
}

/**
 * Path fields and (for GET/DELETE) query parameters go into the payload; a body is the payload. A
 * path field the body contradicts is an error rather than a silent pick. `_remote_address` is the
 * carrier's to set: a client's own value is dropped, and the real one is added where the schema asks.
 * What the route's schema says is worked out once, when the route is bound, not on every request.
 */
export function payloadBuilder(route: RouteDef): (parts: PayloadParts) => unknown {
  const entries = objectEntries(route.input);
  const wantsRemote = entries !== undefined && '_remote_address' in entries;
  return (parts) => {
    if (!parts.query && !parts.body?.length && !hasKeys(parts.params)) return wantsRemote ? { _remote_address: parts.remoteAddress() } : undefined;
    const fromQuery = parts.method === 'GET' || parts.method === 'DELETE' ? parseQuery(parts.query, entries) : {};
    const body = parseObjectBody(parts.body);
    const params = decodeParams(parts.params);
    for (const [k, val] of Object.entries(params)) {
      if (body && k in body && body[k] !== val) {
        throw new TabAgentError('VALIDATION_ERROR', `'${k}' is '${val}' in the path but '${String(body[k])}' in the body`, [{ field: k, message: 'path and body disagree' }]);
      }
    }
    const hasAny = body !== undefined || Object.keys(fromQuery).length > 0 || Object.keys(params).length > 0;
    if (!hasAny && !wantsRemote) return undefined;
    const payload: Record<string, unknown> = { ...fromQuery, ...(body ?? {}), ...params };
    delete payload['_remote_address'];
    if (wantsRemote) payload['_remote_address'] = parts.remoteAddress();
    return payload;
  };
}

function hasKeys(o: object): boolean {
  for (const _ in o) return true;
  return false;
}
